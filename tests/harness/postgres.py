"""A real PostgreSQL server for tests: Debian's binaries, a throw-away cluster, stopped by PID.

    python -m tests.harness.postgres install        apt-get install postgresql (a no-op when installed)
    python -m tests.harness.postgres missing        list what is not installed (exit 1 if anything)
    python -m tests.harness.postgres start --dir D  start a server in D, print its URL
    python -m tests.harness.postgres stop --dir D   stop the server recorded in D/postgres.pid.json

`PostgresServer.start(root)` runs initdb into root/data and spawns `postgres` in the foreground (in
its own session, not daemonised by pg_ctl) as the unprivileged `postgres` system user: PostgreSQL
refuses to run as root. It listens on 127.0.0.1 only, with scram-sha-256 password auth for one role
and database, `orch_queue`; the superuser is reachable only through the Unix socket in a directory
that only the `postgres` user (and root) can enter. The pid and its start time (from /proc) go to
root/postgres.pid.json, so a later run can stop a leftover server by PID without ever signalling a
recycled pid. Nothing here looks processes up by name.

Standard library only (plus the PID helpers of cluster.testcluster.procs).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cluster.testcluster.procs import is_alive, start_ticks, tail, wait_for

DEFAULT_PORT = 6930
DB_NAME = "orch_queue"
DB_USER = "orch_queue"
SYSTEM_USER = "postgres"
PID_FILE = "postgres.pid.json"
LOG_FILE = "postgres.log"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
BIN_GLOB = "/usr/lib/postgresql/*/bin"
PROGRAMS = ("initdb", "postgres", "psql", "pg_isready")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; the socket file name adds up to ~20


class PostgresError(RuntimeError):
    """Installing, starting or stopping the test server failed; the message says which and why."""


# --- what is installed ------------------------------------------------------------------------------


def _bin_dirs() -> list[Path]:
    """Debian's per-version binary directories, newest version first."""

    def version(d: str) -> tuple:
        name = Path(d).parent.name
        return tuple(int(p) if p.isdigit() else 0 for p in name.split("."))

    return [Path(d) for d in sorted(glob.glob(BIN_GLOB), key=version, reverse=True)]


def bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/VERSION/bin that holds every program the harness runs."""
    for d in _bin_dirs():
        if all(os.access(d / p, os.X_OK) for p in PROGRAMS):
            return d
    return None


def missing() -> list[str]:
    """What is not installed: the programs absent from every /usr/lib/postgresql/*/bin ([] when fine)."""
    if bin_dir() is not None:
        return []
    dirs = _bin_dirs()
    if not dirs:
        return list(PROGRAMS)
    best = dirs[0]
    return [p for p in PROGRAMS if not os.access(best / p, os.X_OK)]


def _default_clusters() -> set[Path]:
    return {Path(p) for p in glob.glob("/etc/postgresql/*/main")}


def install() -> None:
    """apt-get install postgresql when missing, without letting Debian start its packaged cluster.

    A policy-rc.d that exits 101 tells invoke-rc.d (which the package scripts use) not to start any
    service during the install; the one that was there before, if any, is put back afterwards. The
    default cluster Debian creates (/etc/postgresql/VERSION/main) is left stopped and set to
    `manual` so that a later boot does not start it either: the harness never uses it.
    """
    absent = missing()
    if not absent:
        print(f"PostgreSQL already installed ({bin_dir()})")
        return
    if os.geteuid() != 0:
        raise PostgresError(f"missing {', '.join(absent)}; installing needs root (apt-get)")
    clusters_before = _default_clusters()
    previous = None
    if POLICY_RC_D.exists() or POLICY_RC_D.is_symlink():
        previous = (POLICY_RC_D.read_bytes(), POLICY_RC_D.stat().st_mode & 0o7777)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        POLICY_RC_D.write_text(
            "#!/bin/sh\n# written by tests/harness/postgres.py for the duration of an apt-get install\nexit 101\n"
        )
        POLICY_RC_D.chmod(0o755)
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
            print("+", " ".join(argv), flush=True)
            if subprocess.run(argv, env=env, timeout=900, stdin=subprocess.DEVNULL).returncode != 0:
                raise PostgresError(f"{' '.join(argv)} failed")
    finally:
        if previous is None:
            POLICY_RC_D.unlink(missing_ok=True)
        else:
            POLICY_RC_D.write_bytes(previous[0])
            POLICY_RC_D.chmod(previous[1])
    for conf in sorted(_default_clusters() - clusters_before):
        start_conf = conf / "start.conf"
        if start_conf.exists():
            start_conf.write_text("# set by tests/harness/postgres.py: the test harness runs its own server\nmanual\n")
        print(f"Debian created its default cluster {conf}: left stopped, start.conf set to manual")
    still = missing()
    if still:
        raise PostgresError(f"still missing after apt-get install postgresql: {', '.join(still)}")
    print(f"PostgreSQL installed ({bin_dir()})")


# --- the server ---------------------------------------------------------------------------------------


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresError(
            f"there is no `{SYSTEM_USER}` system user to run the server as (PostgreSQL refuses to run as "
            "root); Debian's postgresql package creates it: run `make postgres-deps`"
        ) from None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PostgresServer:
    """One throw-away PostgreSQL cluster and its postmaster; build it with `PostgresServer.start`."""

    def __init__(
        self, root: Path, port: int, pid: int, ticks: int, data: Path, socket_dir: Path, scratch: Path | None, password: str
    ) -> None:
        self.root = root
        self.port = port
        self.pid = pid
        self.start_ticks = ticks
        self.data = data
        self.socket_dir = socket_dir
        self.scratch = scratch  # a directory of ours outside root (see _layout), removed on stop
        self.password = password
        self.url = f"postgresql+psycopg2://{DB_USER}:{password}@127.0.0.1:{port}/{DB_NAME}"
        self.log = root / LOG_FILE
        self.start_seconds = 0.0

    # ---- start

    @classmethod
    def start(
        cls, root: Path, port: int = DEFAULT_PORT, listen: tuple[str, ...] = (), allow_networks: tuple[str, ...] = ()
    ) -> PostgresServer:
        """`listen`: addresses besides 127.0.0.1 (e.g. the test cluster's host-side veth addresses, so
        jobs in node namespaces reach it); `allow_networks`: CIDRs allowed to log in as the test role."""
        began = time.monotonic()
        root = Path(root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        stop_leftover(root)
        absent = missing()
        if absent:
            raise PostgresError(f"PostgreSQL is not installed (missing {', '.join(absent)}): run `make postgres-deps`")
        if os.geteuid() != 0:
            raise PostgresError("the harness starts postgres as the `postgres` user, which needs root")
        user = _system_user()
        if not _port_free(port):
            raise PostgresError(
                f"port {port} on 127.0.0.1 is already in use; stop whatever holds it "
                f"(`ss -ltnp 'sport = :{port}'`) or pass another port"
            )
        bindir = bin_dir()
        assert bindir is not None
        data, socket_dir, scratch = _layout(root, user)
        log = root / LOG_FILE
        password = secrets.token_urlsafe(18)
        pwfile = socket_dir / "pwfile"  # the superuser's password, never used (its auth is the socket)
        pwfile.write_text(secrets.token_urlsafe(18) + "\n")
        os.chown(pwfile, user.pw_uid, user.pw_gid)
        pwfile.chmod(0o600)
        try:
            _as_postgres(
                user,
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SYSTEM_USER,
                    "--pwfile",
                    str(pwfile),
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ],
                log,
                timeout_s=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        (data / "pg_hba.conf").write_text(
            "# written by tests/harness/postgres.py: loopback only\n"
            "# TYPE  DATABASE    USER        ADDRESS        METHOD\n"
            f"local   all         {SYSTEM_USER}                  trust\n"
            f"host    {DB_NAME:<11} {DB_USER:<11} 127.0.0.1/32   scram-sha-256\n"
            + "".join(f"host    {DB_NAME:<11} {DB_USER:<11} {net:<14} scram-sha-256\n" for net in allow_networks)
        )
        argv = [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-h",
            ",".join(("127.0.0.1", *listen)),
            "-k",
            str(socket_dir),
            "-c",
            "fsync=off",
            "-c",
            "unix_socket_permissions=0700",
        ]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(data),
                env=_env(user),
                start_new_session=True,
                close_fds=True,
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=os.getgrouplist(user.pw_name, user.pw_gid),
            )
        proc.returncode = 0  # reaped through is_alive/waitpid, never wait()ed: silence Popen's warning
        ticks = None
        for _ in range(200):  # bound on the wait (200 polls), not a verdict
            ticks = start_ticks(proc.pid)
            if ticks is not None:
                break
            time.sleep(0.01)  # poll interval
        server = cls(root, port, proc.pid, ticks or 0, data, socket_dir, scratch, password)
        (root / PID_FILE).write_text(
            json.dumps(
                {
                    "pid": server.pid,
                    "start_ticks": server.start_ticks,
                    "port": port,
                    "data": str(data),
                    "socket_dir": str(socket_dir),
                    "scratch": str(scratch) if scratch else None,
                    "argv": argv,
                    "log": str(log),
                },
                indent=2,
            )
            + "\n"
        )
        try:
            server._wait_ready(bindir)
            server._create_database(bindir, user)
        except BaseException:
            server.stop()
            raise
        server.start_seconds = time.monotonic() - began
        return server

    def _wait_ready(self, bindir: Path) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if not is_alive(self.pid, self.start_ticks):
                raise PostgresError(f"postgres exited during start-up; end of {self.log}:\n{tail(self.log)}")
            # through the socket, as the superuser pg_hba.conf lets in there: no "no pg_hba.conf entry" noise in the log
            done = subprocess.run(
                [
                    str(bindir / "pg_isready"),
                    "-q",
                    "-h",
                    str(self.socket_dir),
                    "-p",
                    str(self.port),
                    "-U",
                    SYSTEM_USER,
                    "-d",
                    "postgres",
                    "-t",
                    "1",
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
            )
            if done.returncode == 0:
                return
            if time.monotonic() >= deadline:
                raise PostgresError(f"postgres was not ready after {READY_TIMEOUT_S:.0f} s; end of {self.log}:\n{tail(self.log)}")
            time.sleep(0.05)

    def _create_database(self, bindir: Path, user: pwd.struct_passwd) -> None:
        # the password goes in on stdin, never on a command line other users could read in /proc
        sql = (
            f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{self.password}';\n"
            f"CREATE DATABASE {DB_NAME} OWNER {DB_USER};\n"
            f"\\connect {DB_NAME}\n"
            f"ALTER SCHEMA public OWNER TO {DB_USER};\n"
        )
        _as_postgres(
            user,
            [
                str(bindir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SYSTEM_USER,
                "-d",
                "postgres",
            ],
            self.log,
            input_text=sql,
        )

    # ---- stop

    def stop(self) -> str:
        """Fast shutdown (SIGINT) by PID, SIGKILL if it lingers; removes our scratch dir. Returns what happened."""
        return _stop(self.root, self.pid, self.start_ticks, self.scratch)

    def is_running(self) -> bool:
        return is_alive(self.pid, self.start_ticks)


def _stop(root: Path, pid: int, ticks: int | None, scratch: Path | None, timeout_s: float = STOP_TIMEOUT_S) -> str:
    outcome = "not running"
    if is_alive(pid, ticks):
        try:
            os.kill(pid, signal.SIGINT)  # the postmaster's "fast shutdown": roll back, disconnect, exit
            outcome = "stopped"
        except ProcessLookupError:
            pass
        if outcome == "stopped" and not wait_for(lambda: not is_alive(pid, ticks), timeout_s, interval_s=0.05):
            try:
                os.kill(pid, signal.SIGKILL)  # its backends notice the postmaster is gone and exit
            except ProcessLookupError:
                pass
            wait_for(lambda: not is_alive(pid, ticks), 5.0, interval_s=0.05)
            outcome = "killed"
    if is_alive(pid, ticks):
        raise PostgresError(f"postgres (pid {pid}) is still running after SIGKILL")
    if scratch is not None and scratch.name.startswith("orch-pg-"):
        shutil.rmtree(scratch, ignore_errors=True)
    (root / PID_FILE).unlink(missing_ok=True)
    return outcome


def stop_leftover(root: Path) -> str:
    """Stop the server recorded in root/postgres.pid.json, if it still runs (checked by pid + start time)."""
    record = Path(root) / PID_FILE
    try:
        info = json.loads(record.read_text())
    except FileNotFoundError:
        return "nothing recorded"
    except ValueError:
        record.unlink()
        return "unreadable record removed"
    scratch = Path(info["scratch"]) if info.get("scratch") else None
    return _stop(Path(root), int(info["pid"]), info.get("start_ticks"), scratch)


def _env(user: pwd.struct_passwd) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "LC_ALL": "C",
        "LANG": "C",
    }


def _as_postgres(
    user: pwd.struct_passwd, argv: list[str], log: Path, timeout_s: float = 60, input_text: str | None = None
) -> None:
    try:
        done = subprocess.run(
            argv,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd="/",
            env=_env(user),
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=os.getgrouplist(user.pw_name, user.pw_gid),
        )
    except subprocess.TimeoutExpired as exc:
        raise PostgresError(f"{Path(argv[0]).name} did not finish in {timeout_s:.0f} s") from exc
    with open(log, "a") as out:
        out.write(f"+ {' '.join(argv)}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        raise PostgresError(f"{Path(argv[0]).name} exited {done.returncode}:\n{(done.stderr or done.stdout).strip()[-2000:]}")


def _reachable(user: pwd.struct_passwd, path: Path) -> bool:
    """Can `user` reach inside `path` (search permission on it and every parent)? Asked as that user."""
    done = subprocess.run(
        ["/usr/bin/test", "-x", str(path)],
        cwd="/",
        env=_env(user),
        user=user.pw_uid,
        group=user.pw_gid,
        stdin=subprocess.DEVNULL,
        timeout=10,
        extra_groups=os.getgrouplist(user.pw_name, user.pw_gid),
    )
    return done.returncode == 0


def _layout(root: Path, user: pwd.struct_passwd) -> tuple[Path, Path, Path | None]:
    """(data dir, socket dir, scratch dir or None), each owned by the postgres user, mode 0700.

    root/data and root/socket when the postgres user can reach root (root itself keeps its owner:
    the postgres user writes only below it; the log and pid record are written by us). pytest's tmp_path lives below
    /tmp/pytest-of-root, which is 0700 root: there the cluster goes to a scratch dir of ours,
    /tmp/orch-pg-XXXX, and root/data is a symlink to it (the log and pid record stay in root).
    The socket dir follows the same rule, and also moves out when its path is too long for a socket.
    """
    socket_dir = root / "socket"
    if _reachable(user, root) and len(str(socket_dir)) <= SOCKET_PATH_MAX:
        data, scratch = root / "data", None
    else:
        scratch = Path(tempfile.mkdtemp(prefix="orch-pg-", dir="/tmp"))
        os.chown(scratch, user.pw_uid, user.pw_gid)
        data, socket_dir = scratch / "data", scratch / "socket"
        link = root / "data"
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)
        link.symlink_to(data)
    for d in (data, socket_dir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(mode=0o700)
        os.chown(d, user.pw_uid, user.pw_gid)
    return data, socket_dir, scratch


# --- command line -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.postgres", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="apt-get install postgresql without starting Debian's cluster (idempotent)")
    sub.add_parser("missing", help="list the PostgreSQL programs that are not installed")
    for name in ("start", "stop"):
        p = sub.add_parser(name, help=f"{name} a test server whose state lives in --dir")
        p.add_argument("--dir", required=True, type=Path)
        if name == "start":
            p.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install()
        elif args.command == "missing":
            absent = missing()
            print("\n".join(absent) if absent else f"nothing missing ({bin_dir()})")
            return 1 if absent else 0
        elif args.command == "start":
            server = PostgresServer.start(args.dir, args.port)
            print(f"pid {server.pid}, ready in {server.start_seconds:.1f} s\n{server.url}")
        else:
            print(stop_leftover(args.dir))
    except PostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
