"""Install the Debian packages the test cluster needs; a no-op when they are all there."""

from __future__ import annotations

import os
import shutil
import subprocess

from .procs import ClusterError

PACKAGES = (
    "slurm-wlm",
    "slurmdbd",
    "slurmrestd",
    "slurm-wlm-jwt-plugin",
    "mariadb-server",
    "munge",
    "openssh-server",
    "iproute2",
)
# one program per package, to tell cheaply whether it is installed
PROGRAMS = ("slurmctld", "slurmd", "slurmdbd", "slurmrestd", "mariadbd", "munged", "sshd", "ip", "nsenter")


# plugins without a program of their own
PLUGINS = {"slurm-wlm-jwt-plugin": "auth_jwt.so"}
PLUGIN_DIRS = ("/usr/lib/x86_64-linux-gnu/slurm-wlm", "/usr/lib/aarch64-linux-gnu/slurm-wlm", "/usr/lib/slurm-wlm")


def missing_programs() -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [p for p in PROGRAMS if shutil.which(p, path=path) is None]
    for package, plugin in PLUGINS.items():
        if not any(os.path.exists(os.path.join(d, plugin)) for d in PLUGIN_DIRS):
            missing.append(package)
    return missing


def install() -> None:
    missing = missing_programs()
    if not missing:
        print("SLURM test-cluster packages already installed")
        return
    if os.geteuid() != 0:
        raise ClusterError(f"missing {', '.join(missing)}; installing needs root (apt-get)")
    # (on a machine with systemd, apt starts the packaged services too; the test cluster never uses them)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        print("+", " ".join(argv), flush=True)
        if subprocess.run(argv, env=env, timeout=900).returncode != 0:
            raise ClusterError(f"{' '.join(argv)} failed")
    still = missing_programs()
    if still:
        raise ClusterError(f"still missing after apt-get install: {', '.join(still)}")
