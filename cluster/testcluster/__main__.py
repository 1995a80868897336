"""python -m cluster.testcluster install | up | down | status --dir DIR | power suspend|resume --dir DIR HOSTLIST"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cluster import down, status, up
from .install import install
from .layout import Ports
from .procs import ClusterError

DEFAULT_DIR = "/tmp/orch-slurm"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.testcluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="apt-get install the SLURM, MariaDB, munge and sshd packages (idempotent)")
    for name, text in (
        ("up", "start a fresh cluster (wipes DIR)"),
        ("down", "stop it by PID"),
        ("status", "show which recorded daemons are alive"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--dir", default=DEFAULT_DIR, type=Path, help=f"state directory (default {DEFAULT_DIR})")
        if name == "up":
            p.add_argument(
                "--port-base",
                type=int,
                default=Ports.slurmctld,
                help="slurmctld port; slurmd, slurmdbd, mysql use the next three",
            )
            p.add_argument("--ssh-port", type=int, default=Ports.ssh, help="port of the sshd login node")
    power = sub.add_parser("power", help="what slurmctld's SuspendProgram/ResumeProgram run (power saving)")
    power.add_argument("action", choices=("suspend", "resume"))
    power.add_argument("--dir", default=DEFAULT_DIR, type=Path)
    power.add_argument("hostlist")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install()
        elif args.command == "power":
            from .power import resume, suspend

            (suspend if args.action == "suspend" else resume)(args.dir, args.hostlist)
        elif args.command == "up":
            up(args.dir, Ports.from_base(args.port_base, args.ssh_port))
        elif args.command == "down":
            down(args.dir)
        else:
            return 0 if status(args.dir) else 1
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
