"""Start each daemon of the test cluster and wait (bounded) until it answers.

Every function takes the Layout and the environment to run in, and returns the Daemon record
(pid + start time) so `down` can stop it by PID later.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from . import config
from .layout import (
    ACCOUNT,
    ALL_NODES,
    CLUSTER_NAME,
    GPU_CHAR_MAJOR,
    GPUS_PER_NODE,
    NODES,
    PARTITIONS,
    POWER_NODE,
    POWER_PARTITION,
    Layout,
    Node,
)
from .network import netns_path
from .procs import ClusterError, Daemon, is_alive, run, spawn, tail, wait_for

READY_TIMEOUT_S = 20.0
Record = Callable[[Daemon], None]  # called right after a spawn, so `down` can stop it even if it never gets ready


def base_env(lay: Layout) -> dict[str, str]:
    """The caller's environment without stray SLURM_* variables, plus this cluster's SLURM_CONF."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    path = env.get("PATH", "")
    for sbin in ("/usr/sbin", "/sbin"):
        if sbin not in path.split(":"):
            path = f"{path}:{sbin}" if path else sbin
    env["PATH"] = path
    env["SLURM_CONF"] = str(lay.slurm_conf)
    return env


def _await(daemon: Daemon, ready, what: str, log: Path | str | None = None) -> None:
    """Wait until `ready()`; fail at once if the daemon died, with the tail of its log."""
    ok = wait_for(lambda: ready() or not is_alive(daemon.pid, daemon.start_ticks), READY_TIMEOUT_S, 0.05)
    if ok and is_alive(daemon.pid, daemon.start_ticks):
        return
    status = "exited" if not is_alive(daemon.pid, daemon.start_ticks) else f"not {what} after {READY_TIMEOUT_S:.0f} s"
    logs = [daemon.log] + ([str(log)] if log else [])
    detail = "\n".join(f"--- {p}\n{tail(p)}" for p in logs)
    raise ClusterError(f"{daemon.name} {status}\n{detail}")


def _ok(argv: list[str], env: Mapping[str, str], timeout_s: float = 5.0) -> bool:
    try:
        return run(argv, env=env, check=False, timeout_s=timeout_s).returncode == 0
    except ClusterError:
        return False


# -- munge ---------------------------------------------------------------------
def start_munge(lay: Layout, env: Mapping[str, str], record: Record) -> Daemon:
    """A private munged: own key and socket under the state directory (--force: /tmp is shared)."""
    run(["mungekey", "--create", "--keyfile", str(lay.munge_key)])
    os.chmod(lay.munge_key, 0o600)
    d = lay.munge_dir
    argv = [
        "munged",
        "--foreground",
        "--force",
        f"--socket={lay.munge_socket}",
        f"--key-file={lay.munge_key}",
        f"--pid-file={d / 'munged.pid'}",
        f"--log-file={lay.log / 'munged.log'}",
        f"--seed-file={d / 'munged.seed'}",
    ]
    daemon = spawn("munged", argv, lay.daemon_log("munged"), env, lay.root)
    record(daemon)
    sock = ["-S", str(lay.munge_socket)]

    def ready() -> bool:
        if not lay.munge_socket.exists():
            return False
        cred = run(["munge", *sock, "-n"], env=env, check=False, timeout_s=5)
        return cred.returncode == 0 and _ok_input(["unmunge", *sock], cred.stdout, env)

    _await(daemon, ready, "answering")
    return daemon


def _ok_input(argv: list[str], text: str, env: Mapping[str, str]) -> bool:
    return run(argv, env=env, check=False, timeout_s=5, input_text=text).returncode == 0


# -- mariadb -------------------------------------------------------------------
def start_mariadb(lay: Layout, env: Mapping[str, str], record: Record, db_password: str) -> Daemon:
    """A private MariaDB: datadir and socket under the state directory, TCP on 127.0.0.1 only."""
    run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={lay.mysql_data}",
            "--user=root",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ],
        env=env,
        timeout_s=120,
    )
    m = lay.mysql_dir
    argv = [
        "mariadbd",
        "--no-defaults",
        f"--datadir={lay.mysql_data}",
        "--user=root",
        "--bind-address=127.0.0.1",
        f"--port={lay.ports.mysql}",
        f"--socket={lay.mysql_socket}",
        f"--pid-file={m / 'mariadbd.pid'}",
        f"--log-error={lay.log / 'mariadb.err'}",
        "--skip-name-resolve",
        "--skip-log-bin",
        "--innodb-buffer-pool-size=64M",
    ]
    daemon = spawn("mariadbd", argv, lay.daemon_log("mariadbd"), env, lay.root)
    record(daemon)
    ping = ["mariadb-admin", "--no-defaults", f"--socket={lay.mysql_socket}", "ping"]
    _await(daemon, lambda: _ok(ping, env), "answering", lay.log / "mariadb.err")
    sql = (
        f"CREATE DATABASE {config.DB_NAME};"
        f"CREATE USER '{config.DB_USER}'@'127.0.0.1' IDENTIFIED BY '{db_password}';"
        f"GRANT ALL ON {config.DB_NAME}.* TO '{config.DB_USER}'@'127.0.0.1';"
        "FLUSH PRIVILEGES;"
    )
    run(["mariadb", "--no-defaults", f"--socket={lay.mysql_socket}", "-u", "root", "-e", sql], env=env)
    return daemon


# -- slurmdbd ------------------------------------------------------------------
def start_slurmdbd(lay: Layout, env: Mapping[str, str], record: Record) -> Daemon:
    # slurmdbd finds slurmdbd.conf next to $SLURM_CONF
    daemon = spawn("slurmdbd", ["slurmdbd", "-D"], lay.daemon_log("slurmdbd"), env, lay.root)
    record(daemon)
    probe = ["sacctmgr", "-n", "-P", "show", "cluster"]
    _await(daemon, lambda: _ok(probe, env), "answering", lay.slurmdbd_log)
    return daemon


def add_associations(lay: Layout, env: Mapping[str, str], user: str) -> None:
    """Cluster, account and user in the accounting database, as on a real site."""
    run(["sacctmgr", "-i", "add", "cluster", CLUSTER_NAME], env=env)
    run(
        [
            "sacctmgr",
            "-i",
            "add",
            "account",
            ACCOUNT,
            f"Cluster={CLUSTER_NAME}",
            "Description=orchestrator tests",
            "Organization=orch",
        ],
        env=env,
    )
    run(
        ["sacctmgr", "-i", "add", "user", user, f"Account={ACCOUNT}", f"DefaultAccount={ACCOUNT}", f"Cluster={CLUSTER_NAME}"],
        env=env,
    )


# -- slurmctld / slurmd --------------------------------------------------------
def start_slurmctld(lay: Layout, env: Mapping[str, str], record: Record) -> Daemon:
    argv = ["slurmctld", "-D", "-f", str(lay.slurm_conf)]
    daemon = spawn("slurmctld", argv, lay.daemon_log("slurmctld"), env, lay.root)
    record(daemon)
    _await(daemon, lambda: "UP" in _out(["scontrol", "ping"], env), "UP in `scontrol ping`", lay.slurmctld_log)
    return daemon


def make_fake_gpus(lay: Layout, node: Node) -> None:
    """Character devices (regular files are rejected by SLURM's gres/gpu)."""
    for i in range(GPUS_PER_NODE):
        path = lay.gpu_dir(node.name) / f"fakegpu{i}"
        if not path.exists():
            os.mknod(path, 0o666 | 0o020000, os.makedev(GPU_CHAR_MAJOR, i))


def start_slurmd(lay: Layout, env: Mapping[str, str], record: Record, node: Node, booted: bool = False) -> Daemon:
    # nsenter (not `ip netns exec`, which remounts /sys and breaks slurmd) execs slurmd in place,
    # so the recorded pid is slurmd's own.
    argv = ["nsenter", f"--net={netns_path(node)}", "slurmd", "-D", "-N", node.name, "-f", str(lay.slurm_conf)]
    if booted:
        # A node powered up by SLURM must come back with a new boot time, or slurmctld keeps it POWERING_UP
        # until ResumeTimeout: the slurmd runs in a time namespace whose uptime starts at 0 (a fresh boot).
        # unshare forks it and is what is recorded; stopping unshare stops it (--kill-child) and stop_tree
        # stops the rest.
        uptime_s = int(float(Path("/proc/uptime").read_text().split()[0]))
        argv[2:2] = ["unshare", "--time", f"--boottime=-{uptime_s}", "--kill-child=SIGTERM"]
    daemon = spawn(f"slurmd-{node.name}", argv, lay.daemon_log(f"slurmd-{node.name}"), env, lay.root)
    record(daemon)
    return daemon


def _out(argv: list[str], env: Mapping[str, str]) -> str:
    try:
        return run(argv, env=env, check=False, timeout_s=5).stdout
    except ClusterError:
        return ""


def nodes_idle(env: Mapping[str, str]) -> bool:
    """Every node idle in each of its partitions."""
    lines = _out(["sinfo", "-h", "-N", "-o", "%N %P %t"], env).split()
    states = {(lines[i], lines[i + 1].rstrip("*")): lines[i + 2] for i in range(0, len(lines) - 2, 3)}
    want = {(n.name, p.name) for n in NODES for p in PARTITIONS} | {(POWER_NODE.name, POWER_PARTITION.name)}
    return want <= set(states) and all(states[k] == "idle" for k in want)


def await_cluster(lay: Layout, env: Mapping[str, str], slurmds: list[Daemon]) -> None:
    def ready() -> bool:
        return nodes_idle(env) and _ok(["sacct", "-n", "-X", "--parsable2"], env)

    def any_dead() -> bool:
        return any(not is_alive(d.pid, d.start_ticks) for d in slurmds)

    if wait_for(lambda: ready() or any_dead(), READY_TIMEOUT_S, 0.1) and not any_dead():
        return
    logs = [lay.slurmctld_log] + [lay.slurmd_log(n.name) for n in ALL_NODES] + [d.log for d in slurmds]
    detail = "\n".join(f"--- {p}\n{tail(p, 15)}" for p in logs)
    sinfo = _out(["sinfo", "-N", "-o", "%N %P %t %E"], env)
    raise ClusterError(f"nodes not idle after {READY_TIMEOUT_S:.0f} s (or a slurmd died)\nsinfo:\n{sinfo}\n{detail}")


# -- ssh login node ------------------------------------------------------------
def start_sshd(lay: Layout, env: Mapping[str, str], record: Record) -> Daemon:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "orch-testcluster", "-f", str(lay.ssh_key)])
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "orch-testcluster-host", "-f", str(lay.ssh_host_key)])
    shutil.copyfile(lay.ssh_key.with_suffix(".pub"), lay.authorized_keys)
    host_pub = lay.ssh_host_key.with_name(lay.ssh_host_key.name + ".pub").read_text().split()
    lay.known_hosts.write_text(f"[127.0.0.1]:{lay.ports.ssh} {host_pub[0]} {host_pub[1]}\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    sshd = shutil.which("sshd", path="/usr/sbin:/usr/local/sbin") or "/usr/sbin/sshd"
    argv = [sshd, "-D", "-f", str(lay.sshd_config), "-E", str(lay.sshd_log)]
    daemon = spawn("sshd", argv, lay.daemon_log("sshd"), env, lay.root)
    record(daemon)
    probe = ["ssh", "-F", str(lay.ssh_config), "orch-login", "true"]
    _await(daemon, lambda: _ok(probe, env, timeout_s=10), "accepting the key", lay.sshd_log)
    return daemon


# -- slurmrestd (REST API, JWT) --------------------------------------------------
def write_jwt_key(lay: Layout) -> None:
    """The shared HS256 secret; slurmctld and slurmdbd read it, slurmrestd never does."""
    lay.jwt_key.write_bytes(os.urandom(32))
    os.chmod(lay.jwt_key, 0o600)


def make_jwt_token(lay: Layout, env: Mapping[str, str], user: str, lifespan_s: int = 7 * 24 * 3600) -> str:
    """`scontrol token` for `user`, kept in a 0600 file as a site admin would hand it out."""
    out = run(["scontrol", "token", f"username={user}", f"lifespan={lifespan_s}"], env=env).stdout.strip()
    token = out.partition("SLURM_JWT=")[2].strip()
    if not token:
        raise ClusterError(f"scontrol token printed no token: {out[:200]!r}")
    lay.jwt_token.write_text(token + "\n")
    os.chmod(lay.jwt_token, 0o600)
    return token


def restd_conf_dir(lay: Layout) -> Path:
    """Where slurmrestd reads its slurm.conf: a world-traversable folder of its own under /tmp, since it
    runs as `nobody` and the state directory may sit under a private (0700) folder such as pytest's."""
    import hashlib

    return Path("/tmp") / f"orch-slurmrestd-{hashlib.sha256(str(lay.root).encode()).hexdigest()[:12]}"


def start_slurmrestd(lay: Layout, env: Mapping[str, str], record: Record) -> Daemon:
    """slurmrestd on 127.0.0.1, accepting JWTs only; it refuses to run as root, so it drops to nobody
    after opening its socket, and reads a copy of slurm.conf it can reach."""
    folder = restd_conf_dir(lay)
    folder.mkdir(mode=0o755, exist_ok=True)
    os.chmod(folder, 0o755)
    conf = folder / "slurm.conf"
    shutil.copyfile(lay.slurm_conf, conf)
    os.chmod(conf, 0o644)
    restd = shutil.which("slurmrestd", path="/usr/sbin:/usr/local/sbin:/usr/bin") or "/usr/sbin/slurmrestd"
    argv = [restd, "-f", str(conf), "-a", "rest_auth/jwt", "-u", "nobody", "-g", "nogroup", f"127.0.0.1:{lay.ports.slurmrestd}"]
    daemon = spawn(
        "slurmrestd", argv, lay.daemon_log("slurmrestd"), {**env, "SLURM_JWT": "daemon", "SLURM_CONF": str(conf)}, lay.root
    )
    record(daemon)

    def ready() -> bool:
        import socket

        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", lay.ports.slurmrestd)) == 0

    _await(daemon, ready, "listening")
    return daemon
