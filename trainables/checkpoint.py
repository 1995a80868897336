"""The checkpoint format shared by all trainables: one ``state.pt`` per checkpoint dir.

Layout of ``<checkpoint_dir>``::

    state.pt          everything needed to resume bit-exactly (written atomically)
    pictures/*.png    figures for people (logged as MLflow artifacts)

``state.pt`` is a dict (loadable with ``torch.load(weights_only=True)``)::

    format_version  int, FORMAT_VERSION
    config          the validated config, as JSON-able data
    epoch, global_step
    model, optimizer, scheduler, scaler   state dicts (scheduler/scaler may be None)
    data_order      state of the torch.Generator behind shuffling and augmentation
    rng             python random, numpy, torch CPU and (if present) CUDA RNG states
    extra           trainable-specific data (e.g. the last evaluation metrics)
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHECKSUM_FILE",
    "CheckpointCorruptError",
    "CheckpointFormatError",
    "fallback_candidates",
    "verify_state",
    "FORMAT_VERSION",
    "PICTURES_DIR",
    "STATE_FILE",
    "capture_rng_state",
    "pictures_dir",
    "read_state",
    "restore_rng_state",
    "write_state",
]

FORMAT_VERSION = 1
STATE_FILE = "state.pt"
PICTURES_DIR = "pictures"

_REQUIRED_KEYS = (
    "format_version",
    "config",
    "epoch",
    "global_step",
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "data_order",
    "rng",
    "extra",
)


class CheckpointFormatError(ValueError):
    """A ``state.pt`` that is missing keys or has another format version."""


class CheckpointCorruptError(CheckpointFormatError):
    """A ``state.pt`` whose bytes do not match its recorded SHA-256, or that cannot be read at all."""


CHECKSUM_FILE = "state.pt.sha256"


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pictures_dir(checkpoint_dir: str | os.PathLike) -> Path:
    """``<checkpoint_dir>/pictures``, created if needed."""
    path = Path(checkpoint_dir) / PICTURES_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def capture_rng_state() -> dict[str, Any]:
    """Global RNG states as weights_only-loadable data (tensors, ints, tuples, lists)."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only where CUDA is present)."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state.get("torch_cuda") is not None and torch.cuda.is_available():
        cuda_states = state["torch_cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:  # resumed on a different number of visible GPUs
            torch.cuda.set_rng_state(cuda_states[0])


def write_state(checkpoint_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state.pt`` atomically (temp file in the same dir + ``os.replace``)."""
    missing = [key for key in _REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointFormatError(f"checkpoint state is missing keys {missing}")
    directory = Path(checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / STATE_FILE
    fd, tmp_name = tempfile.mkstemp(prefix=f".{STATE_FILE}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; checkpoints are shared artifacts
        checksum = _sha256(Path(tmp_name))
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    # The checksum goes last (atomically too): a state.pt is trusted only with a matching one.
    fd, tmp_sum = tempfile.mkstemp(prefix=f".{CHECKSUM_FILE}.", suffix=".tmp", dir=directory)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{checksum}  {STATE_FILE}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp_sum, 0o644)
    os.replace(tmp_sum, directory / CHECKSUM_FILE)
    return target


def verify_state(checkpoint_dir: str | os.PathLike) -> None:
    """Raise `CheckpointCorruptError` unless ``state.pt`` matches its recorded SHA-256."""
    directory = Path(checkpoint_dir)
    path, recorded_file = directory / STATE_FILE, directory / CHECKSUM_FILE
    if not path.exists():
        raise CheckpointCorruptError(f"{path}: missing")
    if not recorded_file.exists():
        # Written before checksums existed, or the process died between the two renames: state.pt itself
        # was renamed into place whole, so it is loaded (torch.load still catches a garbled one).
        return
    recorded = recorded_file.read_text().split()[0] if recorded_file.read_text().strip() else ""
    actual = _sha256(path)
    if actual != recorded:
        raise CheckpointCorruptError(f"{path}: SHA-256 {actual[:12]}... does not match the recorded {recorded[:12]}...")


def read_state(checkpoint_dir: str | os.PathLike) -> dict[str, Any]:
    """Verify ``state.pt`` against its checksum, load it onto the CPU and check its format version."""
    path = Path(checkpoint_dir) / STATE_FILE
    verify_state(checkpoint_dir)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or garbled despite a checksum: still corrupt, never a crash here
        raise CheckpointCorruptError(f"{path}: cannot be read ({exc})") from None
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointFormatError(f"{path}: checkpoint format version {version}, this code reads {FORMAT_VERSION}")
    missing = [key for key in _REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointFormatError(f"{path}: missing keys {missing}")
    return state


def fallback_candidates(checkpoint_dir: str | os.PathLike, also_in: str | os.PathLike | None = None) -> list[Path]:
    """Older checkpoints of the same trial, newest first: the sibling ``checkpoint_NNNNNN`` folders
    (Ray Tune keeps the last K) of `checkpoint_dir`, and of `also_in` (the trial's storage folder)."""
    given = Path(checkpoint_dir).resolve()
    number = _checkpoint_number(given)
    folders = {given.parent}
    if also_in is not None:
        folders.add(Path(also_in).resolve())
    found = set()
    for folder in folders:
        if folder.is_dir():
            for sibling in folder.glob("checkpoint_*"):
                index = _checkpoint_number(sibling)
                if sibling.resolve() != given and index >= 0 and (number < 0 or index < number):
                    found.add(sibling.resolve())
    return sorted(found, key=_checkpoint_number, reverse=True)


def _checkpoint_number(path: Path) -> int:
    digits = path.name.removeprefix("checkpoint_")
    return int(digits) if digits.isdigit() else -1
