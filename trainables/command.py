"""The command form of a trainable: an existing script (`python train.py --lr {lr}`), run once per trial
as a Ray Tune function trainable. The contract, in full, is docs/trainables.md; in short:

What the script gets:
- its argument list with `{hyperparameter}` placeholders filled (no shell: each value is one argument;
  `{optimizer.lr}` names a nested key); a command that starts with `python` or `python3` runs with the
  Python that runs the trials (the profile's remote.python on a cluster, orch's own on this machine);
- environment: ORCH_CONFIG_FILE (the trial's whole config as a JSON file), ORCH_CONFIG_JSON (the same,
  inline), ORCH_CHECKPOINT_DIR (a folder to save to; it holds the trial's last checkpoint when the
  trial is resumed), ORCH_TRIAL_ID, and, when the trial has an MLflow run, MLFLOW_RUN_ID and
  MLFLOW_TRACKING_URI (the script's own `mlflow` logging lands in the trial's run);
- SIGUSR1 when the job asks every trial for a checkpoint (SLURM is about to preempt it or its time is
  up): save to ORCH_CHECKPOINT_DIR, then print a metrics line. A script that does not handle SIGUSR1 is
  stopped by it; its trial then resumes, after the requeue, from its last checkpoint (or from scratch).

What it gives back:
- metrics: JSON objects on stdout, one per line (`{"epoch": 3, "val_loss": 0.41}`); any other line is
  the trial's log. A line with "epoch" numbers its step; otherwise lines are numbered in order;
- a checkpoint: whatever it wrote to ORCH_CHECKPOINT_DIR before printing a metrics line: that line's
  result carries a copy of the folder;
- its exit code: 0 finishes the trial; anything else fails it, with its last stderr lines as the error.

Runs wherever Ray Tune runs; imports nothing of the orchestrator.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from trainables import runtime

CHECKPOINT_SIGNAL = signal.SIGUSR1
RUN_ID_WAIT_S = 30.0  # how long to wait for the tracker to name the trial's MLflow run
STOP_GRACE_S = 10.0
REQUEUE_WAIT_S = 600.0  # a script stopped by the checkpoint signal: how long its trial waits for the job to requeue


def folder_fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """(relative path, size, mtime) of every file in `folder` but orch's `.orch_steps`. The script keeps writing
    while this runs (its next checkpoint, a temp file it renames): a file gone between listing and stat is skipped."""
    entries = []
    for path in folder.rglob("*"):
        try:
            if path.is_file() and path.name != ".orch_steps":
                stat = path.stat()
                entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
        except FileNotFoundError:
            continue
    return tuple(sorted(entries))


def copy_present_files(source: Path, destination: Path) -> None:
    """Copy `source`'s files into `destination`, skipping any the script removed meanwhile (a renamed temp file)."""
    for path in source.rglob("*"):
        target = destination / path.relative_to(source)
        try:
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif path.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        except FileNotFoundError:
            continue


class CommandFailed(RuntimeError):
    """The script exited with an error: its exit code and the last lines it wrote to stderr."""


def fill(argv: Sequence[str], config: Mapping[str, Any]) -> list[str]:
    """The argument list with `{name}` / `{a.b}` placeholders replaced by the trial's values."""
    flat = _flatten(config)
    filled: list[str] = []
    for part in argv:
        try:
            filled.append(_Fill().vformat(part, (), flat))
        except (KeyError, IndexError, ValueError) as exc:
            raise CommandFailed(f"the command's placeholder {exc} names no hyperparameter of this trial") from None
    if filled and filled[0] in ("python", "python3"):
        filled[0] = sys.executable
    return filled


class _Fill(string.Formatter):
    """str.format with dotted names as keys of the flat config (str.format would read `a.b` as an attribute)."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return kwargs[field_name], field_name


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def command_trainable(argv: Sequence[str]) -> Callable[[dict[str, Any]], None]:
    """A Ray Tune function trainable that runs `argv` for each trial."""
    frozen = tuple(argv)

    def command(config: dict[str, Any]) -> None:
        _CommandTrial(frozen, config).run()

    return command


class _CommandTrial:
    def __init__(self, argv: tuple[str, ...], config: dict[str, Any]) -> None:
        from ray import tune

        self.argv, self.config = argv, config
        context = tune.get_context()
        self.trial_id = str(context.get_trial_id() or "trial")
        self.trial_dir = Path(context.get_trial_dir() or tempfile.mkdtemp(prefix="orch-trial-"))
        self.checkpoint_dir = self.trial_dir / "command_checkpoint"
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self.stop = threading.Event()
        self.signalled_at = 0.0
        self.killed_by_request = False
        self.steps = 0
        self._seen: tuple[tuple[str, int, int], ...] = ()

    # ------------------------------------------------------------------ set-up
    def _restore_checkpoint(self) -> None:
        from ray import tune

        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        self.checkpoint_dir.mkdir(parents=True)
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                shutil.copytree(folder, self.checkpoint_dir, dirs_exist_ok=True)
            steps = self.checkpoint_dir / ".orch_steps"
            self.steps = int(steps.read_text() or "0") if steps.exists() else 0
        self._seen = self._fingerprint()  # what it holds now is not a new checkpoint

    def _environment(self) -> dict[str, str]:
        config_file = self.trial_dir / "config.json"
        config_file.write_text(json.dumps(self.config, indent=1, default=str))
        env = {
            **os.environ,
            "ORCH_CONFIG_FILE": str(config_file),
            "ORCH_CONFIG_JSON": json.dumps(self.config, default=str),
            "ORCH_CHECKPOINT_DIR": str(self.checkpoint_dir),
            "ORCH_TRIAL_ID": self.trial_id,
            "PYTHONUNBUFFERED": "1",
        }
        run_id = self._run_id()
        if run_id and os.environ.get("MLFLOW_TRACKING_URI"):
            env["MLFLOW_RUN_ID"] = run_id
        else:
            env.pop("MLFLOW_RUN_ID", None)
        return env

    def _run_id(self) -> str:
        """The trial's MLflow run, once the tracker (in the Tune driver) has named it in the run ledger."""
        if not os.environ.get(runtime.RUN_LEDGER_ENV):
            return ""
        deadline = time.monotonic() + RUN_ID_WAIT_S
        while time.monotonic() < deadline:
            run_id = runtime.run_id_of(self.trial_id)
            if run_id:
                return run_id
            time.sleep(0.2)
        return ""

    # ------------------------------------------------------------------ the run
    def run(self) -> None:
        self._restore_checkpoint()
        env = self._environment()
        workspace = os.environ.get(runtime.WORKSPACE_ENV) or os.getcwd()
        process = subprocess.Popen(
            fill(self.argv, self.config),
            cwd=workspace,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        readers = [
            threading.Thread(target=self._forward_stderr, args=(process.stderr,), daemon=True),
            threading.Thread(target=self._watch_requests, args=(process,), daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                self._line(line)
            code = process.wait()
        except BaseException:
            self._terminate(process)
            raise
        finally:
            self.stop.set()
        readers[0].join(timeout=5)
        if code == 0:
            return
        if self.killed_by_request and code == -CHECKPOINT_SIGNAL:
            self._wait_for_the_requeue()
            return
        tail = " | ".join(self.stderr_tail) or "no output on stderr"
        raise CommandFailed(f"the command exited with code {code}: {tail[-1500:]}")

    def _line(self, line: str) -> None:
        text = line.rstrip("\n")
        metrics = _metrics_of(text)
        if metrics is None:
            print(text, flush=True)  # the trial's log
            return
        self.steps += 1
        metrics.setdefault("epoch", self.steps)
        self._report(metrics)

    def _report(self, metrics: dict[str, Any]) -> None:
        from ray import tune

        if not self._checkpoint_written():
            tune.report(metrics)
            return
        (self.checkpoint_dir / ".orch_steps").write_text(str(self.steps))
        with tempfile.TemporaryDirectory(prefix="orch-command-checkpoint-") as copy:
            copy_present_files(self.checkpoint_dir, Path(copy))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(copy))
        self._seen = self._fingerprint()

    def _fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        return folder_fingerprint(self.checkpoint_dir)

    def _checkpoint_written(self) -> bool:
        current = self._fingerprint()
        return bool(current) and current != self._seen

    def _forward_stderr(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        for line in stream:
            self.stderr_tail.append(line.rstrip("\n"))
            sys.stderr.write(line)
        sys.stderr.flush()

    def _watch_requests(self, process: subprocess.Popen[str]) -> None:
        """The job asks for a checkpoint (trainables.runtime): pass it on to the script as SIGUSR1, once per request."""
        while not self.stop.wait(0.5):
            at = runtime.checkpoint_requested_at()
            if at is not None and at > self.signalled_at and process.poll() is None:
                self.signalled_at = at
                self.killed_by_request = True  # if the script does not handle it, the signal stops it
                try:
                    os.killpg(process.pid, CHECKPOINT_SIGNAL)
                except ProcessLookupError:
                    return

    def _wait_for_the_requeue(self) -> None:
        """The script was stopped by the checkpoint signal: the job requeues in moments; the trial stays
        unfinished so it resumes (from its last checkpoint) instead of ending here."""
        print("orch: the command stopped on the checkpoint signal; the trial resumes after the requeue", flush=True)
        time.sleep(REQUEUE_WAIT_S)
        raise CommandFailed(f"the command stopped on the checkpoint signal and no requeue came within {REQUEUE_WAIT_S:g} s")

    @staticmethod
    def _terminate(process: subprocess.Popen[str]) -> None:
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _metrics_of(text: str) -> dict[str, Any] | None:
    """A metrics line: a JSON object (finite numbers kept, other values ignored); None for any other line."""
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {k: v for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
