"""A lab's own repository, as a new user would write it: outside this repository, its own git, one trainable
in each form orch takes (a plain Ray Tune class, a function trainable, a `train.py` command), nothing of
orch imported. Each trains a 1-D quadratic for EPOCHS epochs of STEP_S seconds and checkpoints."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

FORMS = ("cls", "fn", "cmd")

QUAD = '''"""A plain Ray Tune class and a function trainable: (x - target)^2 by gradient steps, STEP_S seconds an epoch."""
import json
import os
import tempfile
import time

from ray import tune


class Quad(tune.Trainable):
    def setup(self, config):
        self.x, self.epoch = 0.0, 0
        self.lr, self.target, self.epochs = config["lr"], config["target"], config["epochs"]
        self.step_s = config.get("step_s", 0.0)

    def step(self):
        time.sleep(self.step_s)
        self.epoch += 1
        self.x -= self.lr * 2 * (self.x - self.target)
        return {"epoch": self.epoch, "loss": (self.x - self.target) ** 2, "done": self.epoch >= self.epochs}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as out:
            json.dump({"x": self.x, "epoch": self.epoch}, out)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json")) as handle:
            state = json.load(handle)
        self.x, self.epoch = state["x"], state["epoch"]


def train(config):
    x, start = 0.0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            with open(os.path.join(folder, "state.json")) as handle:
                state = json.load(handle)
        x, start = state["x"], state["epoch"]
    for epoch in range(start + 1, config["epochs"] + 1):
        time.sleep(config.get("step_s", 0.0))
        if epoch == config.get("diverge_at_epoch"):
            raise FloatingPointError(f"loss diverged at epoch {epoch}")
        x -= config["lr"] * 2 * (x - config["target"])
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "state.json"), "w") as out:
                json.dump({"x": x, "epoch": epoch}, out)
            metrics = {"epoch": epoch, "loss": (x - config["target"]) ** 2, "started_at_epoch": start}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


class NotATrainable:
    pass


try:  # the lab's own typed config (pydantic comes with Ray)
    from pydantic import BaseModel, Field

    class QuadConfig(BaseModel):
        lr: float = Field(gt=0, le=1)
        target: float = 3.0
        epochs: int = Field(ge=1)
        step_s: float = Field(0.0, ge=0)
except ImportError:  # pragma: no cover
    pass


def two_arguments(config, other):
    pass


class BrokenSetup(Quad):
    def setup(self, config):
        raise KeyError("lr_schedule")
'''

TRAIN_PY = '''"""A plain train.py: argparse, JSON metric lines on stdout, its state in $ORCH_CHECKPOINT_DIR every epoch
(and at once on SIGUSR1), its own MLflow logging into the trial's run when MLFLOW_RUN_ID is set."""
import argparse
import json
import os
import signal
import time

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--epochs", type=int, required=True)
parser.add_argument("--target", type=float, default=3.0)
parser.add_argument("--step-s", type=float, default=0.0)
args = parser.parse_args()

asked = []
signal.signal(signal.SIGUSR1, lambda *_: asked.append(True))  # save now: written every epoch anyway
folder = os.environ["ORCH_CHECKPOINT_DIR"]
state_file = os.path.join(folder, "state.json")
x, start = 0.0, 0
if os.path.exists(state_file):
    with open(state_file) as handle:
        state = json.load(handle)
    x, start = state["x"], state["epoch"]
print(f"train.py starts at epoch {start + 1}", flush=True)
client = None
if os.environ.get("MLFLOW_RUN_ID"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
for epoch in range(start + 1, args.epochs + 1):
    time.sleep(args.step_s)
    x -= args.lr * 2 * (x - args.target)
    with open(state_file + ".tmp", "w") as out:
        json.dump({"x": x, "epoch": epoch}, out)
    os.replace(state_file + ".tmp", state_file)
    if client is not None:
        client.log_metric(os.environ["MLFLOW_RUN_ID"], "script_logged", float(epoch), step=epoch)
    print(json.dumps({"epoch": epoch, "loss": (x - args.target) ** 2, "started_at_epoch": start}), flush=True)
'''


def project(form: str, epochs: int, step_s: float) -> dict:
    defaults = {"lr": 0.1, "target": 3.0, "epochs": epochs, "step_s": step_s}
    runs = {
        "cls": {"trainable": "lab.quad:Quad"},
        "fn": {"trainable": "lab.quad:train"},
        "cmd": {"command": "python train.py --lr {lr} --epochs {epochs} --target {target} --step-s {step_s}"},
    }[form]
    return {"name": f"quad-{form}", **runs, "metrics": ["loss", "started_at_epoch"], "defaults": defaults}


def sweep(form: str, values: list[float]) -> dict:
    return {
        "name": f"lab-{form}",
        "project": f"quad-{form}",
        "metric": "loss",
        "mode": "min",
        "search_space": {"lr": {"grid": values}},
        "resources_per_trial": {"cpu": 1, "gpu": 0},
        "checkpoint": {"every_epochs": 1, "keep": 2},
    }


def make_lab(
    root: Path, epochs: int = 3, step_s: float = 0.0, lrs: tuple[float, ...] = (0.2,), profiles: dict[str, dict] | None = None
) -> Path:
    """The lab's repository at `root` (committed), with conf/ made by `orch init` already or not."""
    (root / "lab").mkdir(parents=True, exist_ok=True)
    (root / "lab" / "__init__.py").write_text("")
    (root / "lab" / "quad.py").write_text(QUAD)
    (root / "train.py").write_text(TRAIN_PY)
    for form in FORMS:
        write(root / "conf" / "projects" / f"quad-{form}.yaml", project(form, epochs, step_s))
        write(root / "conf" / "sweeps" / f"lab-{form}.yaml", sweep(form, list(lrs)))
    for name, profile in (profiles or {}).items():
        write(root / "conf" / "clusters" / f"{name}.yaml", profile)
    return commit_lab(root, "the lab's project")


def commit_lab(root: Path, message: str) -> Path:
    """`root` as a new git repository with everything in it committed (what `orch submit` ships)."""
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.email=lab@example.org", "-c", "user.name=lab", "commit", "-q", "-m", message)
    return root


def write(path: Path, content: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, timeout=60)
