"""The one adaptor that runs container tools on this machine: an image engine (docker, or podman) to build
and export the image, `apptainer` (or `singularity`) and `enroot` to convert it for a cluster.

Argument lists, never a shell; each tool's own output goes to the terminal (a build prints its progress). A
tool that is not here is an `ImageToolError` naming it and how to get it; one that fails, the command and its
exit code. The job scripts' `apptainer exec` lines are written by cluster/slurm/container.py and run on the
nodes, not from here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from orchestrator.kernel.errors import Problem

Engine = Literal["docker", "podman"]
EngineChoice = Literal["auto", "docker", "podman"]
VARIANTS = ("cpu", "cuda")

_GET = {
    "engine": "install podman (Debian: apt-get install podman) or Docker Engine with its daemon running",
    "apptainer": "install Apptainer (https://apptainer.org/docs/admin/main/installation.html; Debian 12 does not "
    "package it), or convert on the cluster: save the image (podman save -o orch.tar TAG), copy it there and "
    "run apptainer build orch.sif docker-archive:orch.tar",
    "enroot": "install enroot (https://github.com/NVIDIA/enroot/releases), or convert on the cluster: "
    "enroot import -o orch.sqsh docker-archive://orch.tar",
}


class ImageToolError(Problem):
    """A container tool is missing here (`key` names it) or failed."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(key, problem, fix, exit_code=1)


@dataclass(frozen=True)
class ImageTools:
    """The container tools on `path` (default: this process's PATH)."""

    path: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def _which(self, name: str) -> str | None:
        return shutil.which(name, path=self.path if self.path is not None else os.environ.get("PATH", ""))

    def _run(self, argv: list[str]) -> None:
        tool = self._which(argv[0])
        if tool is None:
            raise ImageToolError(argv[0], "not found on PATH", _GET.get(argv[0], _GET["engine"]))
        done = subprocess.run([tool, *argv[1:]], env={**os.environ, **self.env}, check=False)
        if done.returncode != 0:
            raise ImageToolError(argv[0], f"`{' '.join(argv)}` failed with exit code {done.returncode}", "see its output above")

    def engine(self, choice: EngineChoice = "auto") -> Engine:
        """The engine that builds (and holds) images: the one asked for, or docker where its daemon answers,
        else podman (a docker client without a daemon, as on many workstations, cannot build)."""
        if choice != "auto":
            if self._which(choice) is None:
                raise ImageToolError(choice, "not found on PATH", _GET["engine"])
            return choice
        if self._which("docker") is not None and self._docker_daemon_answers():
            return "docker"
        if self._which("podman") is not None:
            return "podman"
        raise ImageToolError("docker, podman", "no image engine here (podman, or docker with a running daemon)", _GET["engine"])

    def _docker_daemon_answers(self) -> bool:
        docker = self._which("docker") or "docker"
        try:
            probe = ["docker", "version", "--format", "{{.Server.Version}}"]
            done = subprocess.run([docker, *probe[1:]], capture_output=True, timeout=15, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def build(
        self,
        engine: Engine,
        tag: str,
        variant: str,
        dockerfile: Path,
        context: Path,
        build_args: list[str],
        volumes: list[str] | None = None,
        cache: bool = True,
    ) -> None:
        """Build the image: `docker build`, or `podman build --isolation=chroot` (podman's default OCI runtime
        needs cgroups many machines do not give a build). `volumes` (HOST:CONTAINER[:ro]) are bound into every
        RUN step and committed to no layer: a site's pip mirror, its configuration and CA bundle; podman only
        (`docker build` has no such option). `cache=False`: every step runs again (`--no-cache`)."""
        if volumes and engine != "podman":
            raise ImageToolError("--volume", f"{engine} build cannot bind folders into the build", "build with --engine podman")
        isolation = ["--isolation=chroot"] if engine == "podman" else []
        args = [arg for value in [f"VARIANT={variant}", *build_args] for arg in ("--build-arg", value)]
        mounts = [arg for volume in volumes or [] for arg in ("--volume", volume)]
        no_cache = [] if cache else ["--no-cache"]
        self._run([engine, "build", *isolation, *no_cache, *args, *mounts, "--tag", tag, "--file", str(dockerfile), str(context)])

    def to_sif(self, choice: EngineChoice, tag: str, output: Path) -> Engine:
        """An Apptainer image file from the engine's image (`choice` as for `engine`): straight from docker's
        daemon, through an archive from podman. The engine it took."""
        apptainer = next((name for name in ("apptainer", "singularity") if self._which(name)), None)
        if apptainer is None:
            raise ImageToolError("apptainer", "not found on PATH (nor singularity)", _GET["apptainer"])
        engine = self.engine(choice)
        if engine == "docker":
            self._run([apptainer, "build", str(output), f"docker-daemon:{tag}"])
            return engine
        output.parent.mkdir(parents=True, exist_ok=True)  # the archive is made beside the image, not in a small /tmp
        with tempfile.TemporaryDirectory(prefix="orch-image-", dir=output.parent) as folder:
            archive = Path(folder) / "image.tar"
            self._run(["podman", "save", "--format", "docker-archive", "--output", str(archive), tag])
            self._run([apptainer, "build", str(output), f"docker-archive:{archive}"])
        return engine

    def to_sqsh(self, choice: EngineChoice, tag: str, output: Path) -> Engine:
        """An enroot squashfs image (what Pyxis runs) from the engine's image; the engine it took."""
        if self._which("enroot") is None:
            raise ImageToolError("enroot", "not found on PATH", _GET["enroot"])
        engine = self.engine(choice)
        source = f"dockerd://{tag}" if engine == "docker" else f"podman://{tag}"
        self._run(["enroot", "import", "--output", str(output), source])
        return engine
