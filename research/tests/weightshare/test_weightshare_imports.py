"""The project is a lab's own: it imports torch, numpy, Ray, scikit-learn, pydantic and the standard
library, and from orch only the shared data readers, never the orchestrator, the cluster code or another
trainable."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "weightshare"
THIRD_PARTY = {"torch", "numpy", "ray", "sklearn", "pydantic"}
ORCH_READERS = {"trainables.data.mnist", "trainables.data.cifar", "trainables.data.digits"}


def test_weightshare_imports_only_what_a_lab_project_may() -> None:
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name, set()).add(path.name)
    allowed = THIRD_PARTY | {"weightshare", "__future__"} | set(sys.stdlib_module_names)
    bad = {name: files for name, files in found.items() if name.split(".")[0] not in allowed and name not in ORCH_READERS}
    assert not bad, bad
    assert "torch" in found and "trainables.data.mnist" in found  # the walk saw the real imports
