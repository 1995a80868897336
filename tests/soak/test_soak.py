"""The short soak that runs in `make test`: two minutes of every interruption at once (seeded) on queued sweeps
of the three projects; nothing lost, nothing logged twice, nothing submitted twice. `make soak` runs it longer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.soak.driver import KINDS, Soak, SoakSettings

pytestmark = pytest.mark.integration


def test_short_soak_loses_doubles_and_resubmits_nothing(slurm_cluster: Any, tmp_path: Path) -> None:
    # Two minutes of chaos, then on until every kind of interruption has happened once (at most 10 minutes more: a
    # bound, not a verdict): what the soak proves does not depend on how many faults a loaded machine fits in 2 min.
    settings = SoakSettings(minutes=2.0, seed=20261129, in_flight=3, pause_s=(5.0, 10.0), every_kind_within_s=600.0)
    soak = Soak(slurm_cluster, tmp_path / "soak", settings)
    report = soak.run()
    assert soak.agent is not None and soak.agent.poll() is not None, "the soak left its agent running"
    text = report.markdown()
    print(text)
    assert all(report.interruptions[kind] >= 1 for kind in KINDS), text  # every kind of fault happened
    assert len(report.sweeps) >= 3 and set(report.sweeps.values()) == {"succeeded"}, text
    assert not report.lost_runs and not report.missing_steps and not report.duplicated_steps, text
    assert not report.duplicate_submissions, text
    assert report.clean
