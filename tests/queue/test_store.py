"""The queue store, on SQLite and on a real PostgreSQL server (same tests, same schema)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.kernel.errors import QueueError
from orchestrator.kernel.states import SweepState
from orchestrator.login.queue import store as store_module
from orchestrator.login.queue.rows import JobUpdate, NewSweep, SweepUpdate
from orchestrator.login.queue.store import QueueStore, network_filesystem

HOUR = 3600.0


def new(
    sweep_id: str,
    project: str = "avae",
    priority: int = 0,
    gpus: int = 1,
    after: tuple[str, ...] = (),
    held: bool = False,
    config_hash: str = "h",
) -> NewSweep:
    return NewSweep(
        sweep_id=sweep_id,
        project=project,
        name=sweep_id.split("-")[0],
        cluster="c",
        bundle=f"/b/{sweep_id}",
        priority=priority,
        gpus=gpus,
        config_hash=config_hash,
        metric="val_loss",
        mode="min",
        after=after,
        held=held,
    )


@pytest.fixture
def store(queue_url: str) -> QueueStore:
    opened = QueueStore(queue_url)
    yield opened
    opened.close()


def test_add_list_and_order(store: QueueStore) -> None:
    store.add(new("a-1", priority=1), now=10)
    store.add(new("b-1", priority=5), now=20)
    store.add(new("c-1", priority=5), now=15)
    store.add(new("d-1", held=True), now=5)
    assert [r.sweep_id for r in store.sweeps()] == ["c-1", "b-1", "a-1", "d-1"]
    assert [r.sweep_id for r in store.sweeps([SweepState.QUEUED])] == ["c-1", "b-1", "a-1"]
    assert store.get("d-1").state == SweepState.HELD
    assert store.count() == {"queued": 3, "held": 1}
    with pytest.raises(QueueError, match="already queued"):
        store.add(new("a-1"))


def test_priority_hold_release_cancel(store: QueueStore) -> None:
    store.add(new("a-1"))
    assert store.set_priority("a-1", 7).priority == 7
    assert store.hold("a-1").state == SweepState.HELD
    with pytest.raises(QueueError, match="is held, not queued"):
        store.hold("a-1")
    assert store.release("a-1").state == SweepState.QUEUED
    assert store.cancel("a-1").state == SweepState.QUEUED  # the row as it was
    assert store.get("a-1").state == SweepState.CANCELLED
    with pytest.raises(QueueError, match="already cancelled"):
        store.cancel("a-1")
    with pytest.raises(QueueError, match="no longer matters"):
        store.set_priority("a-1", 1)
    with pytest.raises(QueueError, match="no sweep 'nope'"):
        store.set_priority("nope", 1)
    kinds = [e["kind"] for e in store.events("a-1")]
    assert kinds == ["queued", "priority", "held", "released", "cancelled"]


def test_after_links_refuse_unknown_and_cycles(store: QueueStore) -> None:
    store.add(new("a-1"))
    store.add(new("b-1", after=("a-1",)))
    store.add(new("c-1", after=("b-1",)))
    assert store.get("c-1").after == ("b-1",)
    with pytest.raises(QueueError, match="no sweep x-9"):
        store.add(new("d-1", after=("x-9",)))
    with pytest.raises(QueueError, match="cycle: a-1 -> c-1 -> b-1 -> a-1"):
        store.set_after("a-1", ["c-1"])
    with pytest.raises(QueueError, match="cannot wait for itself"):
        store.set_after("a-1", ["a-1"])
    assert store.get("a-1").after == ()  # nothing changed
    assert store.set_after("c-1", ["a-1"]).after == ("a-1",)
    assert store.resolve("c") == "c-1"  # by name: the newest sweep called so


def test_claim_is_compare_and_set(store: QueueStore) -> None:
    store.add(new("a-1"))
    results = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        other = QueueStore(str(store.url.render_as_string(hide_password=False)))
        barrier.wait()
        results.append(other.claim_for_submit("a-1"))
        other.close()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == [False, False, False, True]
    row = store.get("a-1")
    assert row.state == SweepState.SUBMITTING and row.submit_count == 1


def test_record_and_apply_track_jobs_gpu_hours_and_usage(store: QueueStore) -> None:
    store.add(new("a-1", project="p", gpus=2), now=0)
    store.add(new("b-1", project="q", gpus=1), now=0)
    assert store.claim_for_submit("a-1", now=1)
    store.record_submitted("a-1", ["100"], now=2)
    store.record_submitted("a-1", ["999"], now=3)  # a second record is ignored (already SUBMITTED)
    assert store.get("a-1").job_ids == ("100",)
    store.apply(
        [
            SweepUpdate(
                "a-1", state=SweepState.RUNNING, jobs=(JobUpdate("100", "RUNNING", 1800.0),), trials=(1, 2, 3), best_metric=0.5
            )
        ],
        now=4,
    )
    row = store.get("a-1")
    assert row.state == SweepState.RUNNING and row.gpu_hours == pytest.approx(1.0)
    assert (row.trials_done, row.trials_running, row.trials_pending, row.best_metric) == (1, 2, 3, 0.5)
    usage = store.usage(now=5)
    assert usage.running_gpus == {"p": 2} and usage.gpu_hours_this_week == {"p": pytest.approx(1.0)}
    assert store.usage(now=5 + 8 * 24 * HOUR).gpu_hours_this_week == {}  # older than a week
    store.apply([SweepUpdate("a-1", state=SweepState.SUCCEEDED)], now=6)
    assert store.get("a-1").finished_at == 6 and store.usage(now=7).running_gpus == {}
    # A terminal sweep never moves again; an illegal move is refused.
    store.apply([SweepUpdate("a-1", state=SweepState.RUNNING)], now=8)
    assert store.get("a-1").state == SweepState.SUCCEEDED
    from orchestrator.kernel.states import IllegalTransition

    with pytest.raises(IllegalTransition):
        store.apply([SweepUpdate("b-1", state=SweepState.RUNNING)])


def test_trial_rows_are_inserted_then_updated(store: QueueStore) -> None:
    from orchestrator.login.queue.rows import TrialRow

    store.add(new("a-1"))
    store.apply([SweepUpdate("a-1", trial_rows=(TrialRow("t0", "running", 1, 2.0), TrialRow("t1", "pending", 0, None)))], now=1)
    store.apply([SweepUpdate("a-1", trial_rows=(TrialRow("t0", "succeeded", 3, 1.5), TrialRow("t1", "pending", 0, None)))], now=2)
    assert store.trials("a-1") == [TrialRow("t0", "succeeded", 3, 1.5), TrialRow("t1", "pending", 0, None)]


def test_duplicates_by_config_hash(store: QueueStore) -> None:
    store.add(new("a-1", config_hash="same"))
    store.add(new("a-2", config_hash="other"))
    assert [r.sweep_id for r in store.duplicates("same")] == ["a-1"]
    store.cancel("a-1")
    assert store.duplicates("same") == []


def test_one_agent_lease_per_cluster(store: QueueStore) -> None:
    assert store.acquire_lease("c", "agent-1", ttl_s=60, now=0)
    assert not store.acquire_lease("c", "agent-2", ttl_s=60, now=30)
    assert store.acquire_lease("c", "agent-1", ttl_s=60, now=30)  # renewal
    assert store.lease_holder("c", now=31) == "agent-1"
    assert store.acquire_lease("c", "agent-2", ttl_s=60, now=200)  # the first one stopped renewing
    store.release_lease("c", "agent-2")
    assert store.lease_holder("c", now=201) is None


def test_schema_is_the_same_on_both_backends(store: QueueStore) -> None:
    import sqlalchemy as sa

    tables = sa.inspect(store.engine).get_table_names()
    assert set(tables) >= {
        "orch_sweeps",
        "orch_sweep_after",
        "orch_jobs",
        "orch_trials",
        "orch_events",
        "orch_agent_lease",
        "orch_meta",
    }


# ---------------------------------------------------------------------------- network filesystems
MOUNTS = """\
/dev/sda1 / ext4 rw 0 0
server:/export/home /home nfs4 rw 0 0
lustre@tcp:/scratch /scratch lustre rw 0 0
tmpfs /home/alice/local tmpfs rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/alice/queue", "nfs4"),
        ("/scratch/q", "lustre"),
        ("/var/lib/orch", None),
        ("/home/alice/local/q", None),
    ],
)
def test_network_filesystem_detection(path: str, expected: str | None) -> None:
    assert network_filesystem(Path(path), MOUNTS) == expected


def test_sqlite_on_a_network_filesystem_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "network_filesystem", lambda path, mounts_text=None: "nfs4")
    with pytest.raises(QueueError, match="network filesystem \\(nfs4\\)") as caught:
        QueueStore(f"sqlite:///{tmp_path}/queue.db")
    assert caught.value.key == "queue.store" and "PostgreSQL" in caught.value.fix
    assert not (tmp_path / "queue.db").exists()


def test_local_disk_is_accepted_as_it_is() -> None:
    assert network_filesystem(Path("/tmp")) is None  # this machine's /tmp, read from /proc/mounts


@pytest.mark.parametrize("url", ["mysql://x@y/z", "not a url"])
def test_unsupported_store_urls(url: str) -> None:
    with pytest.raises(QueueError):
        QueueStore(url)
