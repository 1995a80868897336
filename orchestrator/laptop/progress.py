"""The live progress view of a running sweep and the results table at its end."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.kernel.config.search_space import flatten
from orchestrator.kernel.states import TrialStatus


@dataclass
class TrialRow:
    trial_id: str
    params: dict[str, Any]
    state: TrialStatus = TrialStatus.PENDING
    epoch: int = 0
    last: float | None = None
    best: float | None = None


class SweepProgress(Callback):
    """Keeps one row per trial; renders a live table on a terminal, plain lines elsewhere."""

    def __init__(self, sweep_id: str, metric: str, mode: str, varying: list[str], console: Console) -> None:
        self.sweep_id, self.metric, self.mode, self.varying, self.console = sweep_id, metric, mode, varying, console
        self.rows: dict[str, TrialRow] = {}
        self.started = time.monotonic()
        self._live: Live | None = None

    # Ray Tune pickles its callbacks with the experiment state: leave the terminal behind.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "console": None, "_live": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.console = Console()

    # ---- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> SweepProgress:
        if self.console.is_terminal:
            self._live = Live(self.render(), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(*exc)
            self._live = None

    # ---- Tune callback hooks ---------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._row(trial).state = TrialStatus.RUNNING
        self._event(f"trial {trial.trial_id} started {self._params_text(trial.trial_id)}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        row = self._row(trial)
        row.epoch = int(result.get("epoch", result.get("training_iteration", 0)))
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            row.last = float(value)
            row.best = value if row.best is None else (min if self.mode == "min" else max)(row.best, value)
        self._event(f"trial {trial.trial_id} epoch {row.epoch} {self.metric}={_fmt(row.last)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._row(trial).state = TrialStatus.TERMINATED
        self._event(f"trial {trial.trial_id} finished")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._row(trial).state = TrialStatus.ERROR
        lines = [line.strip() for line in str(getattr(trial, "error_msg", None) or "").splitlines() if line.strip()]
        self._event(f"trial {trial.trial_id} FAILED" + (f": {lines[-1][:200]}" if lines else ""))

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        for trial in trials:
            row = self._row(trial)
            if not row.state.is_done:
                row.state = TrialStatus.parse(trial.status)
        if self._live is not None:
            self._live.update(self.render())

    # ---- rendering -------------------------------------------------------------------
    def _row(self, trial: Any) -> TrialRow:
        if trial.trial_id not in self.rows:
            params = flatten(dict(trial.config))
            self.rows[trial.trial_id] = TrialRow(trial.trial_id, {k: params.get(k) for k in self.varying})
        return self.rows[trial.trial_id]

    def _params_text(self, trial_id: str) -> str:
        return " ".join(f"{k}={_fmt(v)}" for k, v in self.rows[trial_id].params.items())

    def _event(self, line: str) -> None:
        if self._live is None:
            self.console.print(f"[{_elapsed(self.started)}] {line}", highlight=False)
        else:
            self._live.update(self.render())

    def best_so_far(self) -> float | None:
        values = [r.best for r in self.rows.values() if r.best is not None]
        if not values:
            return None
        return min(values) if self.mode == "min" else max(values)

    def render(self) -> Group:
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.state.value] = counts.get(row.state.value, 0) + 1
        summary = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())) or "starting"
        header = Text(
            f"sweep {self.sweep_id}  |  {summary}  |  best {self.metric} ({self.mode}) {_fmt(self.best_so_far())}"
            f"  |  elapsed {_elapsed(self.started)}"
        )
        table = Table(box=None, pad_edge=False)
        for column in ("trial", "state", "epoch", *self.varying, self.metric, "best"):
            table.add_column(column)
        for row in self.rows.values():
            table.add_row(
                row.trial_id,
                row.state.value,
                str(row.epoch),
                *(_fmt(v) for v in row.params.values()),
                _fmt(row.last),
                _fmt(row.best),
            )
        return Group(header, table)


def results_table(rows: Sequence[Mapping[str, Any]], metric: str, varying: list[str], title: str) -> Table:
    """Final results, best first: trial, status, the hyperparameters that vary, the metric."""
    table = Table(title=title)
    for column in ("rank", "trial", "status", "epochs", *varying, metric):
        table.add_column(column, justify="right" if column in ("rank", "epochs", metric) else "left")
    for rank, row in enumerate(rows, start=1):
        table.add_row(
            str(rank),
            row["trial_id"],
            row["status"],
            str(row.get("epoch", "")),
            *(_fmt(row["params"].get(k)) for k in varying),
            _fmt(row.get("metric")),
        )
    return table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _elapsed(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"
