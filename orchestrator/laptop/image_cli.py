"""`orch image build|sif|sqsh`: the one image for login and GPU nodes, built here and converted for the
cluster's runtime (Apptainer's .sif, enroot's .sqsh for Pyxis). The tools run through
cluster/adaptors/containers.py; a missing one is one line saying how to get it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, help="The container image: build it, convert it for Apptainer or Pyxis.")
console = Console(soft_wrap=True)

if TYPE_CHECKING:
    from cluster.adaptors.containers import EngineChoice, ImageTools

EngineOption = typer.Option("auto", "--engine", help="auto (docker with a running daemon, else podman), docker or podman")


def _tools(engine: str) -> tuple[ImageTools, EngineChoice]:
    """The tools (imported here: `orch --help` stays instant) and the engine asked for."""
    from cluster.adaptors.containers import ImageTools
    from orchestrator.kernel.errors import UsageError

    if engine not in ("auto", "docker", "podman"):
        raise UsageError(f"--engine {engine!r}; fix: use auto, docker or podman")
    return ImageTools(), cast("EngineChoice", engine)


def _tag(tag: str | None, variant: str) -> str:
    return tag or f"orch:{variant}"


@app.command()
def build(
    variant: str = typer.Option("cpu", "--variant", help="cpu (Debian base, CPU torch) or cuda (CUDA runtime base)"),
    tag: str | None = typer.Option(None, "--tag", help="image tag (default: orch:VARIANT)"),
    context: Path = typer.Option(Path("."), "--context", help="build context: this repository"),
    dockerfile: Path | None = typer.Option(None, "--file", help="default: CONTEXT/Dockerfile"),
    build_arg: list[str] | None = typer.Option(None, "--build-arg", help="KEY=VALUE for the Dockerfile (repeat)"),
    volume: list[str] | None = typer.Option(
        None, "--volume", help="HOST:CONTAINER[:ro] bound into the build's RUN steps, in no layer (podman; repeat)"
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="run every step again (no cached layers)"),
    engine: str = EngineOption,
) -> None:
    """Build the image with docker, or podman (--isolation=chroot)."""
    from cluster.adaptors.containers import VARIANTS
    from orchestrator.kernel.errors import UsageError

    if variant not in VARIANTS:
        raise UsageError(f"--variant {variant!r}; fix: use one of: {', '.join(VARIANTS)}")
    tools, choice = _tools(engine)
    chosen = tools.engine(choice)
    file = dockerfile or context / "Dockerfile"
    tools.build(chosen, _tag(tag, variant), variant, file, context, list(build_arg or []), list(volume or []), not no_cache)
    console.print(f"built {_tag(tag, variant)} with {chosen}", highlight=False)


@app.command()
def sif(
    tag: str = typer.Argument("orch:cpu", help="the image, as the engine names it"),
    output: Path = typer.Option(Path("orch.sif"), "--output", "-o", help="the .sif to write"),
    engine: str = EngineOption,
) -> None:
    """Convert the image to an Apptainer .sif (copy it to the cluster's shared filesystem)."""
    tools, choice = _tools(engine)
    tools.to_sif(choice, tag, output.resolve())
    console.print(f"wrote {output}: set remote.container to {{runtime: apptainer, image: /shared/path/{output.name}}}")


@app.command()
def sqsh(
    tag: str = typer.Argument("orch:cpu", help="the image, as the engine names it"),
    output: Path = typer.Option(Path("orch.sqsh"), "--output", "-o", help="the .sqsh to write"),
    engine: str = EngineOption,
) -> None:
    """Convert the image to an enroot .sqsh for Pyxis (copy it to the cluster's shared filesystem)."""
    tools, choice = _tools(engine)
    tools.to_sqsh(choice, tag, output.resolve())
    console.print(f"wrote {output}: set remote.container to {{runtime: pyxis, image: /shared/path/{output.name}}}")
