"""The generated sbatch script: a golden file, and hostile values that must stay inert."""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster.slurm.container import guarded_python
from cluster.slurm.job_spec import sweep_job
from cluster.slurm.submitit_backend import job_parameters, make_executor
from orchestrator.kernel.config.models import RemoteSettings, SlurmSettings
from orchestrator.kernel.sweep_folder import Bundle

GOLDEN = Path(__file__).parent / "golden" / "sbatch_allocation.sh"
SETTINGS = SlurmSettings(
    partition="low",
    account="orch",
    nodes=2,
    gpus_per_node=2,
    gpu_type="a100",
    cpus_per_gpu=3,
    mem_per_gpu_gb=1.5,
    time_limit_min=45,
    signal_lead_s=90,
    qos="normal",
)
REMOTE = RemoteSettings(
    workdir="/scratch/orch",
    python="/opt/venv/bin/python",
    setup=["module load cuda/12.4"],
    env={"SLURM_CONF": "/etc/slurm/test.conf"},
)


def _script(bundle_root: Path, remote: RemoteSettings = REMOTE, sweep_id: str = "avae-tiny-20261123-120000-abcd") -> str:
    executor = make_executor(SETTINGS, remote, sweep_id, Bundle(bundle_root))
    return executor._make_submission_file_text("python -u -m submitit.core._submit FOLDER", "uid")  # noqa: SLF001


def test_sbatch_script_matches_golden_file() -> None:
    text = _script(Path("/scratch/orch/sweeps/avae-tiny-20261123-120000-abcd"))
    if os.environ.get("ORCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "regenerate with ORCH_UPDATE_GOLDEN=1 after an intended change"


def test_parameters_carry_sweep_id_and_resources() -> None:
    params = job_parameters(SETTINGS, REMOTE, "s-1", "/b")
    assert params["job_name"] == "orch.s-1" and params["comment"] == "orch-sweep=s-1"
    assert params["gres"] == "gpu:a100:2" and params["nodes"] == 2 and params["ntasks_per_node"] == 1
    assert params["cpus_per_task"] == 6 and params["mem"] == "3072M" and params["time"] == 45
    assert params["additional_parameters"] == {"requeue": True}
    args = sweep_job(SETTINGS, "s-1").sbatch_args()  # what `sbatch --test-only` is asked before the submit
    assert args[args.index("--partition") + 1] == "low" and args[args.index("--gres") + 1] == "gpu:a100:2"
    assert args[args.index("--cpus-per-task") + 1] == "6" and args[args.index("--mem") + 1] == "3072M"
    assert "--signal=USR2@90" in args and "--requeue" in args


HOSTILE = ["a'; touch {marker}; echo '", "$(touch {marker})", "`touch {marker}`", 'x" ; touch {marker} ; "', "a b\tc\nd"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_values_stay_inert(tmp_path: Path, hostile: str) -> None:
    marker = tmp_path / "PWNED"
    value = hostile.format(marker=marker)
    # Control characters are refused in remote.workdir by the profile model (see below).
    bundle_root = tmp_path / f"sweeps {value}".replace("\n", " ").replace("\t", " ")
    remote = RemoteSettings(workdir=str(tmp_path), python="python3", env={"ORCH_HOSTILE": value})
    script = tmp_path / "job.sh"
    script.write_text(_script(bundle_root, remote))
    # A stand-in srun records what the job would run, instead of running it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(
        '#!/bin/bash\nprintf "%s\\n" "$ORCH_HOSTILE" > "$RECORD.env"\nprintf "%s\\n" "$PYTHONPATH" > "$RECORD.path"\n'
    )
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RECORD": str(tmp_path / "record")}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert not marker.exists(), "a hostile value was executed by the job script"
    assert (tmp_path / "record.env").read_text() == value + "\n"
    assert (tmp_path / "record.path").read_text().rstrip("\n").split(":")[0] == f"{bundle_root}/code"


@pytest.mark.parametrize("workdir", ["/scratch/a\nb", "/scratch/a\rb", "/scratch/\x00"])
def test_control_characters_in_workdir_are_refused(workdir: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="control characters"):
        RemoteSettings(workdir=workdir)


@pytest.mark.parametrize("key", ["partition", "account", "qos", "constraint", "gpu_type"])
def test_control_characters_in_any_sbatch_value_are_refused(tmp_path: Path, key: str) -> None:
    """A newline in a value that lands on an #SBATCH line would start a shell line of its own: one line, exit 2."""
    from tests.conftest import REPO, assert_one_error_line, run_orch

    profile = yaml.safe_load((REPO / "conf" / "clusters" / "university-example.yaml").read_text())
    profile["slurm"][key] = "gpu\ntouch /tmp/PWNED"
    path = tmp_path / "conf" / "clusters" / "bad.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(profile))
    assert_one_error_line(run_orch(["validate", str(path)], cwd=tmp_path), f"slurm.{key}", "control characters")


def test_the_jobs_python_survives_usr2_until_it_handles_it(tmp_path: Path) -> None:
    """The command submitit runs the job's Python with ignores USR2 from the first instant: a preemption signal in
    the job's first second no longer kills it (the soak saw a job die of it, exit 140, FAILED and never requeued).
    A handler installed later still gets the signal."""
    import sys

    executor = make_executor(SETTINGS, REMOTE, "avae-tiny-20261123-120000-abcd", Bundle(tmp_path / "bundle"))
    assert executor.python == guarded_python() and executor.python.endswith(sys.executable)
    handled = tmp_path / "handled"
    process = subprocess.Popen(
        [*shlex.split(executor.python), "-c", usr2_program(handled)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert_usr2_ignored_until_handled(process, handled)


def usr2_program(handled: Path) -> str:
    """A job's Python, in steps the test drives: it says it runs (USR2 still ignored), waits for a line on stdin,
    installs its handler (which touches `handled`), says so, and waits for that USR2 (at most 30 s)."""
    return (
        "import os, signal, sys, time\n"
        "assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN, signal.getsignal(signal.SIGUSR2)\n"
        "print('ignoring', flush=True)\n"
        "sys.stdin.readline()\n"  # start-up: the USR2 the test sends meanwhile is ignored
        f"signal.signal(signal.SIGUSR2, lambda *_: open({str(handled)!r}, 'w').close())\n"
        "print('handler', flush=True)\n"
        "deadline = time.monotonic() + 30\n"  # bound on the wait for the second USR2, not a verdict
        f"while not os.path.exists({str(handled)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"  # poll interval
    )


def assert_usr2_ignored_until_handled(process: subprocess.Popen, handled: Path) -> None:
    """A USR2 once the job's Python runs, before its handler: ignored; one after: handled, exit 0."""
    assert process.stdin is not None and process.stdout is not None
    try:
        assert process.stdout.readline().strip() == "ignoring"  # Python runs: every shell before it has exec'd
        process.send_signal(signal.SIGUSR2)  # ignored (discarded as it is sent: it cannot land after the next line)
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "handler", "the first USR2 killed the job's Python"
        process.send_signal(signal.SIGUSR2)
        assert process.wait(timeout=60) == 0
        assert handled.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        process.stdin.close()
        process.stdout.close()


def _run_script_with(tmp: Path, srun_body: str, restart_count: int) -> tuple[int, str]:
    """The generated script run by bash with stand-ins for `srun` (its body given) and `scontrol` (records its
    arguments): (the script's exit code, what scontrol was asked)."""
    bundle_root = tmp / "sweep"
    (bundle_root / "submitit").mkdir(parents=True)
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", srun_body), ("scontrol", f'echo "$@" >> {tmp}/scontrol.calls')):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    script = tmp / "job.sh"
    script.write_text(_script(bundle_root, RemoteSettings(workdir="/scratch/orch", python="/opt/venv/bin/python")))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "42", "SLURM_RESTART_COUNT": str(restart_count)}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    calls = tmp / "scontrol.calls"
    return done.returncode, calls.read_text().strip() if calls.exists() else ""


def test_a_step_that_never_started_requeues_its_job(tmp_path: Path) -> None:
    # slurmd restarted while the step launched: srun fails, the job's Python never ran.
    code, asked = _run_script_with(tmp_path, "echo 'srun: error: Job credential expired' >&2; exit 1", restart_count=0)
    assert (code, asked) == (1, "requeue 42")


def test_a_step_whose_python_ran_and_failed_is_not_requeued(tmp_path: Path) -> None:
    code, asked = _run_script_with(tmp_path, 'touch "$ORCH_STEP_STARTED"; exit 3', restart_count=0)
    assert (code, asked) == (3, "")


def test_a_step_that_never_starts_is_requeued_at_most_max_requeues_times(tmp_path: Path) -> None:
    code, asked = _run_script_with(tmp_path, "exit 1", restart_count=SETTINGS.max_requeues)
    assert (code, asked) == (1, "")


def test_the_job_s_python_marks_its_step_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cluster.node.job_entry import STEP_STARTED_ENV, mark_step_started

    marker = tmp_path / "step-started.42.0"
    monkeypatch.setenv(STEP_STARTED_ENV, str(marker))
    mark_step_started()
    assert marker.exists()


def test_a_finished_job_s_python_exits_0_through_a_late_usr2() -> None:
    """A preemption's USR2 reaching a job whose sweep has ended (it is exiting) no longer kills it."""
    code = (
        "import os, signal, time\n"
        "from cluster.node.job_entry import ignore_late_signals\n"
        "assert ignore_late_signals({'done': 1}) == {'done': 1}\n"
        "os.kill(os.getpid(), signal.SIGUSR2)\n"
        "time.sleep(0.2)\n"  # not a verdict: a USR2 sent to itself un-ignored kills it inside os.kill already
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert done.returncode == 0
    unguarded = subprocess.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGUSR2)"], timeout=60)
    assert unguarded.returncode == -signal.SIGUSR2  # what killed the job before
