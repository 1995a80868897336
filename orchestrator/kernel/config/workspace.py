"""A workspace: the folder that holds `conf/` (projects/, sweeps/, clusters/) next to the code its
projects run; a lab's own repository, or a folder in it. `orch init` makes one.

Commands that take a config file find the workspace from the file (conf/sweeps/NAME.yaml); the others
look for `conf/` from the current directory upward, as git looks for `.git`, unless given `--conf`.
Project modules import relative to the workspace root (the folder holding `conf/`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from orchestrator.kernel.errors import ConfigError
from trainables.runtime import WORKSPACE_ENV

CONF_DIRNAME = "conf"
KINDS = ("projects", "sweeps", "clusters")


def is_conf_root(folder: Path) -> bool:
    return folder.is_dir() and any((folder / kind).is_dir() for kind in KINDS)


def conf_root_of(path: Path) -> Path:
    """The conf/ root of a config file at <conf>/<kind>/<name>.yaml; one line saying where it looked otherwise."""
    resolved = path.resolve()
    if resolved.parent.name in KINDS and is_conf_root(resolved.parent.parent):
        return resolved.parent.parent
    raise ConfigError(
        path,
        "",
        f"not in a workspace: a {'/'.join(KINDS)} file lives in <conf>/<kind>/ (looked for "
        f"{resolved.parent.parent}/{{{','.join(KINDS)}}}/)",
        "move it under conf/sweeps/ (or conf/projects/, conf/clusters/) of your workspace; `orch init` makes one",
    )


def find_conf_root(start: Path | None = None) -> Path | None:
    """The nearest `conf/` workspace folder at or above `start` (default: the current directory)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if folder.name == CONF_DIRNAME and is_conf_root(folder):
            return folder
        if is_conf_root(folder / CONF_DIRNAME):
            return folder / CONF_DIRNAME
    return None


def conf_root(given: Path | None) -> Path:
    """`--conf` when given, else the nearest workspace above the current directory; one line when there is none."""
    if given is not None:
        if not is_conf_root(given):
            raise ConfigError(
                given,
                "",
                f"not a conf folder (it has none of {', '.join(KINDS)}/)",
                "point --conf at your workspace's conf/ folder, or run `orch init`",
            )
        return given.resolve()
    found = find_conf_root()
    if found is None:
        raise ConfigError(
            Path.cwd(),
            "",
            f"no conf/ workspace here or above (looked from {Path.cwd()} up to /)",
            "run from inside your workspace, pass --conf PATH, or make one with `orch init`",
        )
    return found


def workspace_of(conf: Path) -> Path:
    """The workspace root: the folder holding conf/, where project modules import from and commands run."""
    return conf.resolve().parent


def make_importable(workspace: Path) -> None:
    """Project modules (`mylab.models:Net`) import from the workspace root, here and in the processes Ray starts."""
    root = str(workspace)
    if root not in sys.path:
        sys.path.insert(0, root)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
    os.environ.setdefault(WORKSPACE_ENV, root)
