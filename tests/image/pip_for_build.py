"""This machine's pip configuration, handed to an image build without entering the image.

`python tests/image/pip_for_build.py FOLDER` writes FOLDER/pip.conf (the index, find-links and CA certificate
settings `pip config list` shows here, local paths kept) and prints the `orch image build` options that
bind it and every local path it names into the build's RUN steps, read-only: `--volume` mounts (podman build
mounts them for each RUN step and commits none of their contents to a layer) and `--build-arg PIP_CONFIG_FILE=...`
(an ARG of the Dockerfile's builder stage only, which the final image does not keep). Everything is bound under
one folder, MOUNT, and the configuration names the paths there: podman 4.3 leaves each mount point behind, empty,
in the image (one empty folder, /orch-build, with empty files, and no host path). The CA bundle is bound there
too, not at the usual path: the image's ca-certificates package writes its own bundle there. When the
find-links hold torch's CPU wheel, `--build-arg TORCH_INDEX=` names this machine's index instead of PyTorch's."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

MOUNT = "/orch-build"  # where the build's RUN steps see the configuration and the CA bundle
KEYS = ("index-url", "extra-index-url", "find-links", "cert")


def host_settings(pip: list[str]) -> dict[str, str]:
    """`pip config list` as {key: value} for KEYS (environment variables over config files, as pip reads them)."""
    listed = subprocess.run([*pip, "config", "list"], capture_output=True, text=True, check=True).stdout
    found: dict[str, tuple[int, str]] = {}
    for line in listed.splitlines():
        name, _, value = line.partition("=")
        scope, _, key = name.rpartition(".")
        if key in KEYS:
            rank = 1 if scope == ":env:" else 0
            if key not in found or rank >= found[key][0]:
                found[key] = (rank, value.strip().strip("'\""))
    return {key: value for key, (_, value) in found.items()}


def local_path(value: str) -> str | None:
    """The folder to bind for a local setting: a file or folder itself, or a local index's root (`file:///R/simple`
    links its files as `../../files/...`: R is bound whole)."""
    path = value.removeprefix("file://").rstrip("/")
    if not path.startswith("/") or not Path(path).exists():
        return None
    return str(Path(path).parent) if value.startswith("file://") and Path(path).name == "simple" else path


def main(folder: Path) -> list[str]:
    settings = host_settings([sys.executable, "-m", "pip"])
    volumes: dict[str, str] = {}  # host path -> where the build sees it

    def bound(path: str, name: str) -> str:
        return volumes.setdefault(path, f"{MOUNT}/{len(volumes)}-{name}")

    lines = ["[global]"]
    for key, value in settings.items():
        items = []
        for item in value.split():
            path = local_path(item)
            if path is None:
                items.append(item)
            elif key == "cert":
                items.append(bound(path, "ca-certificates.crt"))
            else:
                inside = bound(path, Path(path).name)
                items.append(
                    ("file://" if item.startswith("file://") else "") + item.removeprefix("file://").replace(path, inside, 1)
                )
        if key != "cert" or local_path(value) is not None:  # a CA bundle this machine lacks is left to the image's
            lines.append(f"{key} = {' '.join(items)}")
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "pip.conf"
    conf.write_text("\n".join(lines) + "\n")
    mounts = [(str(conf.resolve()), f"{MOUNT}/pip.conf"), *volumes.items()]
    options = [option for host, inside in mounts for option in ("--volume", f"{host}:{inside}:ro")]
    options += ["--build-arg", f"PIP_CONFIG_FILE={MOUNT}/pip.conf"]
    # torch's CPU wheel among the find-links here: torch comes from them and this machine's index, not from
    # PyTorch's own index (the Dockerfile's default, which this machine may not reach).
    wheels = [Path(p) for p in settings.get("find-links", "").split() if local_path(p) is not None]
    if any(folder.is_dir() and any(folder.glob("torch-*+cpu-*.whl")) for folder in wheels):
        options += ["--build-arg", f"TORCH_INDEX={settings.get('index-url', 'https://pypi.org/simple')}"]
    return options


if __name__ == "__main__":
    print(shlex.join(main(Path(sys.argv[1]))))
