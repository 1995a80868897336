"""The command form reads the script's checkpoint folder while the script keeps writing to it: a temp file it
renames between orch's listing and its stat or copy must be skipped, not fail the trial (CI saw
`FileNotFoundError: .../command_checkpoint/state.json.tmp` fail a trial of `orch run`)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from trainables.command import copy_present_files, folder_fingerprint


def _vanishing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """`name` is listed, then gone when orch looks at it: the script renamed it in between."""
    real_stat = Path.stat

    def stat(self: Path, *args: object, **kwargs: object) -> os.stat_result:
        if self.name == name:
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return real_stat(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", stat)


def test_a_file_renamed_while_listed_is_skipped_by_fingerprint_and_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "command_checkpoint"
    (folder / "sub").mkdir(parents=True)
    (folder / "state.json").write_text('{"epoch": 2}')
    (folder / "sub" / "weights.bin").write_bytes(b"\x01" * 10)
    (folder / "state.json.tmp").write_text('{"epoch": 3}')
    (folder / ".orch_steps").write_text("2")
    _vanishing(monkeypatch, "state.json.tmp")

    names = [entry[0] for entry in folder_fingerprint(folder)]
    assert names == ["state.json", os.path.join("sub", "weights.bin")]

    copy = tmp_path / "copy"
    copy.mkdir()
    monkeypatch.setattr("shutil.copy2", _copy_unless(folder / "state.json.tmp"))
    copy_present_files(folder, copy)
    assert (copy / "state.json").read_text() == '{"epoch": 2}'
    assert (copy / "sub" / "weights.bin").read_bytes() == b"\x01" * 10
    assert not (copy / "state.json.tmp").exists()


def _copy_unless(gone: Path):  # type: ignore[no-untyped-def]
    import shutil

    real = shutil.copy2

    def copy2(source: Path, target: Path) -> object:
        if Path(source) == gone:
            raise FileNotFoundError(2, "No such file or directory", str(source))
        return real(source, target)

    return copy2


def test_fingerprint_and_copy_keep_up_with_a_script_renaming_temp_files(tmp_path: Path) -> None:
    """The real race, unpatched: a writer renames temp files as fast as it can while orch fingerprints and copies."""
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    stop = threading.Event()

    def writer() -> None:
        epoch = 0
        while not stop.is_set():
            epoch += 1
            (folder / "state.json.tmp").write_text(str(epoch))
            os.replace(folder / "state.json.tmp", folder / "state.json")

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        for i in range(300):
            assert all(name in ("state.json", "state.json.tmp") for name, _, _ in folder_fingerprint(folder))
            target = tmp_path / f"copy{i}"
            target.mkdir()
            copy_present_files(folder, target)
            assert {p.name for p in target.iterdir()} <= {"state.json", "state.json.tmp"}
    finally:
        stop.set()
        thread.join(timeout=10)
