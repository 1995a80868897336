"""The architecture holds (ARCHITECTURE.md): imports point one way, and each external system is reached
through its one adaptor. These tests read the source (every import, lazy ones included); they fail with
the module and line that breaks a rule."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "cluster", "trainables")
# The local test cluster's bring-up (cluster/testcluster) runs SLURM's and the system's tools itself:
# it is test infrastructure on this machine, not a way our product reaches a cluster.
EXEMPT = ("cluster.testcluster",)

SLURM_COMMANDS = {
    "sbatch",
    "squeue",
    "sacct",
    "scancel",
    "scontrol",
    "sinfo",
    "srun",
    "salloc",
    "sacctmgr",
    "sstat",
    "sprio",
    "sshare",
    "sreport",
    "strigger",
}
# system -> (the one module allowed, how a use is recognised)
ADAPTORS: dict[str, tuple[str, set[str], set[str]]] = {
    #  system          owner module                       argv[0] it runs          modules it imports
    "SLURM commands": ("cluster.adaptors.slurm", SLURM_COMMANDS, set()),
    "ssh": ("cluster.adaptors.ssh", {"ssh", "scp", "sftp", "rsync"}, set()),
    "git": ("cluster.adaptors.git", {"git"}, set()),
    "container tools": ("cluster.adaptors.containers", {"docker", "podman", "apptainer", "singularity", "enroot"}, set()),
    "slurmrestd": ("cluster.adaptors.slurmrest", set(), {"urllib.request"}),
    "MLflow": ("orchestrator.tracking.client", set(), {"mlflow"}),
    "S3": ("orchestrator.tracking.s3", set(), {"boto3", "botocore"}),
    "the queue store": ("orchestrator.login.queue.store", set(), {"sqlalchemy", "psycopg2"}),
}
# Processes of MLflow's own (the UI, a team server) are started, not spoken to; its HTTP health check is not slurmrestd.
# The profile model names the container runtimes (a Literal), and the job script's `apptainer exec` line is written by
# cluster/slurm/container.py for the nodes to run, as job scripts name `scontrol`: neither runs a tool from Python.
ALLOWED = {
    ("orchestrator.laptop.tracking_server", "slurmrestd"),
    ("orchestrator.kernel.config.models", "container tools"),
    ("cluster.slurm.container", "container tools"),
}


def _modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            if not name.startswith(EXEMPT):
                yield name, path, ast.parse(path.read_text(), str(path))


def _imports(tree: ast.Module) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            yield from ((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)


def _argv_heads(tree: ast.Module) -> Iterator[tuple[str, int]]:
    """The first element of every literal list or tuple of strings: the program an argument list runs."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            head = node.elts[0]
            if isinstance(head, ast.Constant) and isinstance(head.value, str):
                yield head.value, node.lineno


def test_each_external_system_is_reached_only_through_its_adaptor() -> None:
    """In the orchestrator and the cluster code. Trainables are research code like a lab's own: they read
    their data (local or s3://, trainables/data/storage.py) and download datasets without the orchestrator."""
    problems = []
    for name, path, tree in _modules():
        if name.startswith("trainables"):
            continue
        imported = list(_imports(tree))
        heads = list(_argv_heads(tree))
        for system, (owner, programs, modules) in ADAPTORS.items():
            if name == owner or (name, system) in ALLOWED:
                continue
            for module, line in imported:
                if any(module == m or module.startswith(f"{m}.") for m in modules):
                    problems.append(f"{path.relative_to(REPO)}:{line}: imports {module}: {system} goes through {owner}")
            for program, line in heads:
                if program in programs:
                    problems.append(f"{path.relative_to(REPO)}:{line}: runs {program}: {system} goes through {owner}")
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_modules() -> None:
    known = {name for name, _, _ in _modules()}
    edges: dict[str, set[str]] = {}
    for name, _, tree in _modules():
        for module, _ in _imports(tree):
            target = module
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.setdefault(name, set()).add(target)
    cycles = _cycles(edges)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join([*c, c[0]]) for c in cycles)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_layers_import_only_downward() -> None:
    """The layers contract in pyproject.toml ([tool.importlinter]): laptop > login > cluster.slurm >
    cluster.node > tracking | adaptors > kernel > trainables."""
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "broken" in done.stdout and "0 broken" in done.stdout, done.stdout[-2000:]


def test_trainables_run_without_the_orchestrator() -> None:
    offending = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for name, path, tree in _modules()
        if name.startswith("trainables")
        for module, line in _imports(tree)
        if module.split(".")[0] in ("orchestrator", "cluster")
    ]
    assert not offending, "\n".join(offending)


def test_the_command_line_starts_without_ray_torch_or_mlflow() -> None:
    code = (
        "import sys; from orchestrator.laptop import cli; "
        "heavy = sorted(m for m in ('ray', 'torch', 'mlflow', 'submitit') if m in sys.modules); print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
