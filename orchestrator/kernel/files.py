"""Files that readers on any machine (the login node, a compute node, the laptop) see whole or not at
all: the one atomic-write helper of the orchestrator and the cluster code."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, *, durable: bool = True, mode: int | None = None) -> None:
    """Write `data` so readers see the old or the new content, never half of it (a temporary file in the
    same folder, then a rename). `durable`: also fsync the file before the rename and the folder after
    it, so a crash or a lost node keeps one of the two versions; `mode`: the new file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    # Permissions as open() gives them (0666 less the umask), or exactly `mode` (e.g. 0600 for secrets).
    handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        with os.fdopen(handle, "wb") as out:
            if mode is not None:
                os.fchmod(out.fileno(), mode)  # not narrowed or widened by the umask
            out.write(data.encode() if isinstance(data, str) else data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        with contextlib.suppress(OSError):  # some network filesystems refuse to fsync a folder
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
