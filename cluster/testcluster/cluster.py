"""Bring the whole test cluster up from an empty directory, report on it, and stop it by PID."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import shutil
import socket
import sys
import time
from pathlib import Path

from . import config, daemons, network
from .layout import (
    ACCOUNT,
    ALL_NODES,
    CLUSTER_NAME,
    GPUS_PER_NODE,
    MARKER,
    NODE_CPUS,
    NODE_MEMORY_MB,
    NODES,
    PARTITIONS,
    POWER_NODE,
    POWER_PARTITION,
    RESUME_DELAY_S,
    SSH_HOST_ALIAS,
    Layout,
    Ports,
)
from .procs import ClusterError, Daemon, is_alive, run, stop, stop_tree, wait_for

# Stop order: entry points first, the database last.
STOP_ORDER = ("slurmrestd", "sshd", *(f"slurmd-{n.name}" for n in ALL_NODES), "slurmctld", "slurmdbd", "mariadbd", "munged")
JOBS_GONE_TIMEOUT_S = 30.0


def load_state(root: Path) -> dict | None:
    path = Layout(root).cluster_json
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _save(lay: Layout, state: dict) -> None:
    tmp = lay.cluster_json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, lay.cluster_json)  # readers never see half a file


def _describe(lay: Layout, user: str) -> dict:
    """The machine-readable description of the cluster (cluster.json), without pids yet."""
    p = lay.ports
    return {
        "dir": str(lay.root),
        "cluster_name": CLUSTER_NAME,
        "slurm_conf": str(lay.slurm_conf),
        "env_file": str(lay.env_sh),
        "controller": {"hostname": lay.controller_hostname, "address": lay.controller_address, "port": p.slurmctld},
        "ports": {
            "slurmctld": p.slurmctld,
            "slurmd": p.slurmd,
            "slurmdbd": p.slurmdbd,
            "mysql": p.mysql,
            "ssh": p.ssh,
            "slurmrestd": p.slurmrestd,
        },
        "rest": {"url": lay.rest_url, "user": user, "token_file": str(lay.jwt_token)},
        "nodes": [
            {
                "name": n.name,
                "address": n.address,
                "host_address": n.host_address,
                "netns": n.netns,
                "veth": n.veth_host,
                "cpus": NODE_CPUS,
                "memory_mb": NODE_MEMORY_MB,
                "gpus": GPUS_PER_NODE,
                "gpu_devices": [str(lay.gpu_dir(n.name) / f"fakegpu{i}") for i in range(GPUS_PER_NODE)],
            }
            for n in NODES
        ],
        "partitions": [
            {
                "name": q.name,
                "priority_tier": q.priority_tier,
                "preempt_mode": q.preempt_mode,
                "default": q.default,
                "grace_time_s": q.grace_time_s,
            }
            for q in PARTITIONS
        ],
        "power_saving": {
            "node": POWER_NODE.name,
            "partition": POWER_PARTITION.name,
            "resume_delay_s": RESUME_DELAY_S,
            "log": str(lay.power_log),
        },
        "gpus_per_node": GPUS_PER_NODE,
        "account": ACCOUNT,
        "user": user,
        "ssh": {
            "host": SSH_HOST_ALIAS,
            "hostname": "127.0.0.1",
            "port": p.ssh,
            "user": "root",
            "key": str(lay.ssh_key),
            "config": str(lay.ssh_config),
            "known_hosts": str(lay.known_hosts),
        },
        "munge_socket": str(lay.munge_socket),
        "mysql_socket": str(lay.mysql_socket),
        "netns": [],
        "ip_forward_before": None,
        "daemons": {},
        "ready": False,
        "up_seconds": None,
    }


# -- up ------------------------------------------------------------------------
def _prepare_dir(root: Path) -> None:
    """Stop whatever a previous run left there, then start from an empty directory."""
    if load_state(root) is not None:
        down(root, quiet=True)
    if root.exists():
        entries = list(root.iterdir())
        if entries and not (root / MARKER).exists():
            raise ClusterError(f"{root} is not empty and was not made by the test cluster: refusing to wipe it")
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("state directory of cluster.testcluster; wiped by `up`\n")


def _check_free(lay: Layout) -> None:
    p = lay.ports
    for name, port in (
        ("slurmctld", p.slurmctld),
        ("slurmdbd", p.slurmdbd),
        ("mysql", p.mysql),
        ("ssh", p.ssh),
        ("slurmrestd", p.slurmrestd),
    ):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the daemons do: TIME_WAIT is no clash
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                raise ClusterError(
                    f"port {port} ({name}) is in use: is another test cluster up? Only one runs per machine "
                    "(fixed namespaces and subnets); stop it with `python -m cluster.testcluster down --dir ITS_DIR`, "
                    "or, if something else owns the port, pick --port-base/--ssh-port"
                ) from None
    for node in ALL_NODES:
        if network.netns_exists(node):
            pids = network.netns_pids(node)
            if pids:
                raise ClusterError(f"network namespace {node.netns} is in use by pids {pids}: another test cluster is up")
            network.delete(node)  # left by a run that died: nothing lives in it
        elif network.link_exists(node.veth_host):
            network.delete(node)


def job_python() -> str:
    """The Python that jobs run: the repository's venv when there is one (what `make` builds)."""
    venv = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _write_configs(lay: Layout, db_password: str) -> None:
    lay.slurm_conf.write_text(config.slurm_conf(lay))
    lay.gres_conf.write_text(config.gres_conf(lay))
    lay.slurmdbd_conf.write_text(config.slurmdbd_conf(lay, db_password))
    os.chmod(lay.slurmdbd_conf, 0o600)  # slurmdbd refuses a readable file holding a password
    lay.sshd_config.write_text(config.sshd_config(lay))
    lay.ssh_config.write_text(config.ssh_config(lay))
    lay.env_sh.write_text(config.env_sh(lay, job_python()))
    lay.prolog.write_text(config.prolog(lay))
    os.chmod(lay.prolog, 0o755)
    repo = str(Path(__file__).resolve().parents[2])
    for action in ("suspend", "resume"):
        lay.power_program(action).write_text(config.power_program(lay, action, job_python(), repo))
        os.chmod(lay.power_program(action), 0o755)


def up(root: Path, ports: Ports | None = None, log=print) -> dict:
    """Start everything; returns the content of cluster.json. On failure, stops what it started."""
    t0 = time.monotonic()
    root = root.resolve()
    lay = Layout(root, ports or Ports())
    _prepare_dir(root)
    for d in lay.all_dirs():
        d.mkdir(parents=True, exist_ok=True)
    _check_free(lay)
    user = getpass.getuser()
    state = _describe(lay, user)
    _save(lay, state)
    env = daemons.base_env(lay)

    def record(daemon: Daemon) -> None:
        state["daemons"][daemon.name] = daemon.to_json()
        _save(lay, state)
        log(f"  {daemon.name:<10} pid {daemon.pid:<7} started at {time.monotonic() - t0:5.2f} s")

    try:
        db_password = secrets.token_hex(16)
        _write_configs(lay, db_password)
        daemons.write_jwt_key(lay)
        daemons.start_munge(lay, env, record)
        daemons.start_mariadb(lay, env, record, db_password)
        daemons.start_slurmdbd(lay, env, record)
        daemons.add_associations(lay, env, user)
        state["ip_forward_before"] = network.read_ip_forward()
        _save(lay, state)
        network.set_ip_forward("1")
        for node in ALL_NODES:
            state["netns"].append(node.netns)
            _save(lay, state)
            network.create(node)
            daemons.make_fake_gpus(lay, node)
        daemons.start_slurmctld(lay, env, record)
        slurmds = [daemons.start_slurmd(lay, env, record, node) for node in ALL_NODES]
        daemons.start_sshd(lay, env, record)
        daemons.make_jwt_token(lay, env, user)
        daemons.start_slurmrestd(lay, env, record)
        daemons.await_cluster(lay, env, slurmds)
    except BaseException:
        down(root, quiet=True)
        raise
    state["ready"] = True
    state["up_seconds"] = round(time.monotonic() - t0, 2)
    _save(lay, state)
    # The power-saving node goes to sleep (its SuspendProgram stops its slurmd and drops its record);
    # a job in its partition wakes it. Not waited for: `power.power_down` waits when a test needs it asleep.
    run(["scontrol", "update", f"NodeName={POWER_NODE.name}", "State=POWER_DOWN_FORCE"], env=env, check=False, timeout_s=15)
    log(f"cluster {CLUSTER_NAME} up in {state['up_seconds']} s; to use it: . {lay.env_sh}")
    log(lay.env_sh.read_text().split("\n", 1)[1].rstrip())
    return state


# -- down ----------------------------------------------------------------------
def _cancel_jobs(state: dict, env: dict[str, str]) -> None:
    ctld = state["daemons"].get("slurmctld")
    if not ctld or not is_alive(ctld["pid"], ctld["start_ticks"]):
        return

    def job_ids() -> list[str]:
        try:
            done = run(["squeue", "-h", "-o", "%A"], env=env, check=False, timeout_s=10)
        except ClusterError:
            return []
        return done.stdout.split() if done.returncode == 0 else []

    ids = job_ids()
    if ids:
        run(["scancel", *ids], env=env, check=False, timeout_s=15)
        wait_for(lambda: not job_ids(), JOBS_GONE_TIMEOUT_S, 0.2)


def down(root: Path, quiet: bool = False, log=print) -> list[str]:
    """Cancel every job, stop every recorded daemon by PID, remove the namespaces. Idempotent."""
    root = root.resolve()
    lay = Layout(root)
    state = load_state(root)
    say = (lambda *_: None) if quiet else log
    if state is None:
        say(f"nothing recorded in {lay.cluster_json}: nothing to stop")
        return []
    env = daemons.base_env(lay)
    state["ready"] = False  # a node "booting" now (power.resume) starts no slurmd any more
    _save(lay, state)
    _cancel_jobs(state, env)
    report = []
    recorded = state["daemons"]
    for name in [*STOP_ORDER, *(n for n in recorded if n not in STOP_ORDER)]:
        d = recorded.get(name)
        if d:
            outcome = stop_tree(d["pid"], d["start_ticks"])
            report.append(f"{name} (pid {d['pid']}): {outcome}")
    nodes = [n for n in ALL_NODES if n.netns in state.get("netns", [])]
    for node in nodes:
        # job steps (slurmstepd and their children) started by our slurmd live on in the namespace
        for pid in network.netns_pids(node):
            report.append(f"leftover pid {pid} in {node.netns}: {stop(pid, None, term_timeout_s=5)}")
        network.delete(node)
    shutil.rmtree(daemons.restd_conf_dir(lay), ignore_errors=True)  # slurmrestd's readable copy of slurm.conf
    if state.get("ip_forward_before") not in (None, "1"):
        network.set_ip_forward(state["ip_forward_before"])
    state["ready"] = False
    state["netns"] = []
    state["ip_forward_before"] = None
    _save(lay, state)
    for line in report:
        say(f"  {line}")
    say(f"cluster in {root} is down")
    return report


# -- status --------------------------------------------------------------------
def status(root: Path, log=print) -> bool:
    """Print whether each recorded daemon is alive; True if all are."""
    state = load_state(root.resolve())
    if state is None:
        log(f"no cluster recorded in {root}")
        return False
    all_alive = bool(state["daemons"])
    for name, d in state["daemons"].items():
        alive = is_alive(d["pid"], d["start_ticks"])
        all_alive &= alive
        log(f"{name:<10} pid {d['pid']:<7} {'alive' if alive else 'DEAD'}")
    for node in ALL_NODES:
        log(f"netns {node.netns:<8} {'present' if network.netns_exists(node) else 'absent'}")
    log(f"ready: {state['ready'] and all_alive}")
    return all_alive
