"""The soak: sweeps of three projects through the durable queue on the local SLURM cluster, tracked on a team
tracking server, while a seeded chaos driver interrupts them every way it can: a preemption by the priority
partition, `scontrol requeue`, a node's slurmd SIGKILLed and started again, the queue's agent SIGKILLed, the
tracking server restarted. Then a report: sweeps, interruptions of each kind, lost runs, duplicated steps,
duplicate submissions (all must be 0), and the GPU-hours re-done and lost.

    make soak [SOAK_MINUTES=30] [SOAK_SEED=1]          # brings the cluster up if it is not
    python -m tests.soak --minutes 30 --seed 1 --cluster-dir /tmp/orch-slurm

Every process it starts (agent, tracking server, the high-partition jobs) it stops by PID or job id.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PROJECTS = ("avae", "hvae", "avae3d")
SWEEPS = {project: REPO / "conf" / "sweeps" / f"soak-{project}.yaml" for project in PROJECTS}
QUEUE_PROFILE = REPO / "conf" / "clusters" / "slurm-queue-local.yaml"
KINDS = ("preemption", "scontrol requeue", "slurmd killed", "agent killed", "tracking server restarted")
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class SoakSettings:
    minutes: float = 30.0
    seed: int = 1
    in_flight: int = 4  # sweeps kept queued or running while the chaos lasts
    pause_s: tuple[float, float] = (8.0, 20.0)  # between two interruptions
    settle_s: float = 1200.0  # after the chaos, every sweep must end within this
    # The chaos goes on past `minutes` until every kind of interruption has happened at least once (an interruption
    # that finds nothing running to hit is tried again later), for at most this much longer: a bound on that wait,
    # not a verdict. 0: the chaos stops at `minutes`, whatever it managed.
    every_kind_within_s: float = 0.0


@dataclass
class SoakReport:
    seed: int
    minutes: float
    sweeps: dict[str, str] = field(default_factory=dict)  # sweep id -> final queue state
    interruptions: Counter = field(default_factory=Counter)
    lost_runs: list[str] = field(default_factory=list)
    duplicated_steps: list[str] = field(default_factory=list)
    missing_steps: list[str] = field(default_factory=list)
    duplicate_submissions: dict[str, int] = field(default_factory=dict)
    gpu_hours_redone: float = 0.0
    gpu_hours_lost: float = 0.0
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return (
            bool(self.sweeps)
            and all(state == "succeeded" for state in self.sweeps.values())
            and not (self.lost_runs or self.duplicated_steps or self.missing_steps or self.duplicate_submissions)
        )

    def markdown(self) -> str:
        states = Counter(self.sweeps.values())
        rows = [
            ("sweeps", f"{len(self.sweeps)} ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))})"),
            *((f"interruptions: {kind}", str(self.interruptions.get(kind, 0))) for kind in KINDS),
            ("lost runs (sweeps not succeeded, trial runs not FINISHED)", str(len(self.lost_runs))),
            ("steps missing from a metric's history", str(len(self.missing_steps))),
            ("steps logged twice", str(len(self.duplicated_steps))),
            ("duplicate submissions (SLURM jobs beyond one per sweep)", str(sum(self.duplicate_submissions.values()))),
            ("GPU-hours re-done", f"{self.gpu_hours_redone:.4f}"),
            ("GPU-hours lost (re-done + restart time)", f"{self.gpu_hours_lost:.4f}"),
        ]
        head = f"Soak: seed {self.seed}, {self.minutes:g} minutes of chaos, {self.seconds / 60:.1f} minutes in all\n\n"
        table = "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
        details = [*self.lost_runs, *self.missing_steps, *self.duplicated_steps]
        return head + table + ("\n\n" + "\n".join(f"- {d}" for d in details[:50]) if details else "") + "\n"


class Soak:
    """One soak on a running test cluster (`cluster` is a cluster.testcluster.SlurmCluster)."""

    def __init__(self, cluster: Any, folder: Path, settings: SoakSettings, say: Callable[[str], None] = print) -> None:
        self.cluster, self.folder, self.settings, self.say = cluster, folder, settings, say
        self.rng = random.Random(settings.seed)
        self.report = SoakReport(settings.seed, settings.minutes)
        self.sweep_ids: list[str] = []
        self.agent: subprocess.Popen | None = None
        self.tracking_state = folder / "tracking"
        self.high_jobs: list[str] = []
        self.dead_slurmd: list[tuple[str, float]] = []  # (node, when to start it again)

    # ------------------------------------------------------------------ set-up
    def env(self) -> dict[str, str]:
        return {**os.environ, "ORCH_SLURM_DIR": str(self.cluster.dir), "ORCH_PYTHON": sys.executable, "COLUMNS": "200"}

    def orch(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.laptop.cli", *args],
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def start_tracking(self) -> None:
        up = self.orch(*self.tracking_args, timeout=120)
        if up.returncode != 0:
            raise RuntimeError(f"orch tracking up failed: {up.stdout}{up.stderr}")

    def stop_tracking(self) -> None:
        self.orch("tracking", "down", "--state-dir", str(self.tracking_state), timeout=60)

    def setup(self) -> None:
        from tests.harness.s3 import free_port

        self.folder.mkdir(parents=True, exist_ok=True)
        host = self.cluster.nodes[0]["host_address"]  # the compute nodes reach it through their default route
        port = free_port(host)
        self.tracking_uri = f"http://{host}:{port}"
        self.tracking_args = ["tracking", "up", "--host", host, "--port", str(port), "--state-dir", str(self.tracking_state)]
        self.start_tracking()
        data = yaml.safe_load(QUEUE_PROFILE.read_text())
        data["name"] = "soak"
        data["tracking"] = {"uri": self.tracking_uri}
        data["queue"] = {
            **data["queue"],
            "store": f"sqlite:///{self.folder}/queue.db",
            "agent_dir": str(self.folder / "agent"),
            "tick_s": 1,
            "global_max_gpus": 4,
        }
        self.profile = self.folder / "clusters" / "soak.yaml"
        self.profile.parent.mkdir(parents=True, exist_ok=True)
        self.profile.write_text(yaml.safe_dump(data))
        self.start_agent()

    def profile_json(self) -> str:
        from tests.queue.test_queue_slurm import resolved_profile_json

        return resolved_profile_json(self.cluster, self.profile)

    def start_agent(self) -> None:
        env = {**self.cluster.env(), "PYTHONPATH": str(REPO)}
        with open(self.folder / "agent.log", "ab") as out:
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.login", "agent", "run", "--profile-json", self.profile_json()],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def kill_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            os.kill(self.agent.pid, signal.SIGKILL)
            self.agent.wait(timeout=30)

    # ------------------------------------------------------------------ the sweeps
    def submit(self) -> None:
        project = PROJECTS[len(self.sweep_ids) % len(PROJECTS)]
        done = self.orch("submit", str(SWEEPS[project]), "--cluster", str(self.profile), "--yes")
        if done.returncode != 0:
            raise RuntimeError(f"orch submit {project} failed: {done.stdout}{done.stderr}")
        sweep_id = done.stdout.split("queued sweep ", 1)[1].split()[0]
        self.sweep_ids.append(sweep_id)
        self.say(f"  queued {sweep_id}")

    def states(self) -> dict[str, str]:
        from orchestrator.login.queue.store import QueueStore

        store = QueueStore(f"sqlite:///{self.folder}/queue.db")
        try:
            return {sid: str(state) for sid, state in store.states_of(self.sweep_ids).items()}
        finally:
            store.close()

    def reasons(self, sweep_ids: list[str]) -> dict[str, str]:
        """The queue's reason and last event of each sweep: what a failed sweep's report line says."""
        from orchestrator.login.queue.store import QueueStore

        store = QueueStore(f"sqlite:///{self.folder}/queue.db")
        try:
            found = {}
            for sweep_id in sweep_ids:
                events = store.events(sweep_id)
                last = f"{events[-1]['kind']} {events[-1]['detail'] or ''}".strip() if events else ""
                found[sweep_id] = "; ".join(part for part in (store.get(sweep_id).reason, f"last event: {last}") if part)
            return found
        finally:
            store.close()

    def running_jobs(self) -> list[tuple[str, str]]:
        """(job id, node) of the soak's sweep jobs RUNNING now."""
        out = self.cluster.run(["squeue", "-h", "-t", "RUNNING", "-o", "%A|%j|%N"], check=False).stdout
        names = {f"orch.{sid}" for sid in self.sweep_ids}
        return [(job, node) for job, name, node in (line.split("|") for line in out.splitlines() if "|" in line) if name in names]

    # ------------------------------------------------------------------ chaos
    def interrupt(self, kind: str) -> bool:
        """One interruption of `kind`; False when nothing it could hit runs now."""
        jobs = self.running_jobs()
        if kind == "preemption":
            if not jobs:
                return False
            _, node = self.rng.choice(jobs)
            high = self.cluster.fill_node_with_high_job(node, 5)
            self.high_jobs.append(high)
        elif kind == "scontrol requeue":
            if not jobs:
                return False
            job, _ = self.rng.choice(jobs)
            self.cluster.run(["scontrol", "requeue", job], check=False)
        elif kind == "slurmd killed":
            if not jobs:
                return False
            from cluster.testcluster.faults import kill_slurmd

            _, node = self.rng.choice(jobs)
            if self.dead_slurmd or kill_slurmd(self.cluster.dir, node) is None:  # one node at a time
                return False
            self.dead_slurmd.append((node, time.monotonic() + self.rng.uniform(3.0, 10.0)))
        elif kind == "agent killed":
            self.kill_agent()
            time.sleep(self.rng.uniform(0.5, 3.0))
            self.start_agent()
        elif kind == "tracking server restarted":
            self.stop_tracking()
            time.sleep(self.rng.uniform(3.0, 15.0))
            self.start_tracking()
        self.report.interruptions[kind] += 1
        self.say(f"  {time.strftime('%H:%M:%S')} {kind}")
        return True

    def heal(self, agent: bool = True) -> None:
        """Start again the slurmd killed earlier, once their downtime is over, and (`agent`) a dead agent."""
        from cluster.testcluster.faults import start_slurmd

        for node, when in list(self.dead_slurmd):
            if time.monotonic() >= when:
                start_slurmd(self.cluster.dir, node)
                self.dead_slurmd.remove((node, when))
        if agent and (self.agent is None or self.agent.poll() is not None):
            self.start_agent()

    def run(self) -> SoakReport:
        started = time.monotonic()
        self.setup()
        try:
            deadline = started + self.settings.minutes * 60  # how long the chaos lasts: a schedule, not a verdict
            every_kind_by = deadline + self.settings.every_kind_within_s  # bound on the wait for every kind, not a verdict
            cycle: list[str] = []
            while time.monotonic() < deadline or (
                time.monotonic() < every_kind_by and not all(self.report.interruptions[kind] for kind in KINDS)
            ):
                states = self.states()
                for _ in range(self.settings.in_flight - sum(1 for s in states.values() if s not in TERMINAL)):
                    self.submit()
                if not cycle:  # every kind once per cycle, in a seeded order
                    cycle = list(KINDS)
                    self.rng.shuffle(cycle)
                if self.interrupt(cycle[0]):
                    cycle.pop(0)
                pause_until = time.monotonic() + self.rng.uniform(*self.settings.pause_s)  # chaos pacing, not a verdict
                while time.monotonic() < pause_until:
                    self.heal()
                    time.sleep(0.5)
            self.say(f"chaos over after {(time.monotonic() - started) / 60:.1f} min; waiting for the sweeps to end")
            self.dead_slurmd = [(node, 0.0) for node, _ in self.dead_slurmd]  # start them again now
            settle = time.monotonic() + self.settings.settle_s  # bound on the wait for every sweep's end, not a verdict
            while time.monotonic() < settle:
                self.heal()
                if all(s in TERMINAL for s in self.states().values()):
                    break
                time.sleep(2)
            self.collect()
        finally:
            for job in self.high_jobs:
                self.cluster.run(["scancel", job], check=False)
            self.dead_slurmd = [(node, 0.0) for node, _ in self.dead_slurmd]
            self.heal(agent=False)  # the slurmd it killed run again; the agent, stopped last, is not restarted
            self.kill_agent()
            self.stop_tracking()
        self.report.seconds = time.monotonic() - started
        return self.report

    # ------------------------------------------------------------------ the report
    def collect(self) -> None:
        from mlflow.tracking import MlflowClient

        report = self.report
        report.sweeps = self.states()
        # SLURM's accounting: one job per sweep, however often it was requeued or the agent killed.
        names = [f"orch.{sid}" for sid in self.sweep_ids]
        out = self.cluster.run(
            [
                "sacct",
                "--parsable2",
                "--noheader",
                "--allocations",
                "--starttime=now-2days",
                "--format=JobID,JobName",
                f"--name={','.join(names)}",
            ],
        ).stdout
        per_name = Counter(line.split("|")[1] for line in out.splitlines() if "|" in line)
        report.duplicate_submissions = {name: n - 1 for name, n in per_name.items() if n > 1}
        client = MlflowClient(self.tracking_uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        reasons = self.reasons([sid for sid, state in report.sweeps.items() if state != "succeeded"])
        for sweep_id, state in report.sweeps.items():
            if state not in TERMINAL:  # the settle bound passed first
                report.lost_runs.append(f"sweep {sweep_id} still {state} {self.settings.settle_s:g} s after the chaos")
            elif state != "succeeded":
                report.lost_runs.append(f"sweep {sweep_id} ended {state}: {reasons.get(sweep_id) or 'no reason recorded'}")
            runs = client.search_runs(experiments, f"tags.`orch.sweep_id` = '{sweep_id}'")
            parents = [r for r in runs if r.data.tags.get("orch.kind") == "sweep"]
            trials = [r for r in runs if r.data.tags.get("orch.kind") == "trial"]
            if len(parents) != 1 or not trials:
                report.lost_runs.append(f"sweep {sweep_id}: {len(parents)} parent runs, {len(trials)} trial runs")
            for parent in parents:
                report.gpu_hours_redone += parent.data.metrics.get("gpu_hours_redone", 0.0)
                report.gpu_hours_lost += parent.data.metrics.get("gpu_hours_lost_to_preemption", 0.0)
            for run in trials:
                run_id = run.info.run_id
                if run.info.status != "FINISHED":
                    report.lost_runs.append(f"sweep {sweep_id} trial run {run_id}: {run.info.status}")
                epochs = int(float(run.data.params.get("epochs", "0")))
                for key in run.data.metrics:
                    if key.startswith("orch_"):
                        continue
                    steps = [m.step for m in client.get_metric_history(run_id, key)]
                    twice = sorted(s for s, n in Counter(steps).items() if n > 1)
                    if twice:
                        report.duplicated_steps.append(f"{sweep_id} {run_id} {key}: steps {twice[:10]} twice")
                    missing = sorted(set(range(1, epochs + 1)) - set(steps)) if epochs and 1 in steps else []
                    if missing:
                        report.missing_steps.append(f"{sweep_id} {run_id} {key}: steps {missing[:10]} missing")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--cluster-dir", type=Path, default=Path("/tmp/orch-slurm"))
    parser.add_argument("--out", type=Path, default=REPO / "soak-report.md", help="where the report goes (markdown)")
    args = parser.parse_args(argv)
    from cluster.testcluster import SlurmCluster

    cluster = SlurmCluster.load(args.cluster_dir)
    if not cluster.is_up():
        print(f"error: no test cluster up in {args.cluster_dir}; fix: make slurm-up", file=sys.stderr)
        return 2
    folder = args.cluster_dir / "soak" / time.strftime("%Y%m%d-%H%M%S")
    report = Soak(cluster, folder, SoakSettings(minutes=args.minutes, seed=args.seed, in_flight=args.in_flight)).run()
    text = report.markdown()
    args.out.write_text(text)
    (folder / "report.json").write_text(json.dumps({**report.__dict__, "interruptions": dict(report.interruptions)}, indent=1))
    print(text)
    return 0 if report.clean else 1
