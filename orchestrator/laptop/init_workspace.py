"""`orch init`: a workspace in a lab's own repository, ready for `orch run conf/sweeps/example.yaml`.

It writes conf/projects/example.yaml, conf/sweeps/example.yaml, conf/clusters/local.yaml and a commented
example trainable (orch_example.py) next to conf/, and never overwrites a file that exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXAMPLE_TRAINABLE = '''"""An example trainable for orch, written against plain Ray Tune: nothing here imports orch.

orch runs a project's trainable in one of three forms (docs/trainables.md):
  trainable: orch_example:Example      a ray.tune.Trainable subclass, like this one
  trainable: orch_example:train        a function trainable, def train(config), reporting with tune.report
  command: python train.py --lr {lr}   an existing script: JSON metric lines on stdout
"""

import json
import os

from ray import tune


class Example(tune.Trainable):
    """Minimise (x - target)^2 by gradient steps: one step() is one epoch."""

    def setup(self, config):
        # config: the project's defaults with the sweep's values for this trial
        self.x, self.lr, self.target = 0.0, config["lr"], config["target"]
        self.epochs, self.epoch = config["epochs"], 0

    def step(self):
        self.epoch += 1
        self.x -= self.lr * 2 * (self.x - self.target)
        # Every number returned is a metric of the trial's MLflow run at step `epoch`;
        # "done" ends the trial. The sweep's metric (conf/sweeps/example.yaml) must be among them.
        return {"epoch": self.epoch, "loss": (self.x - self.target) ** 2, "done": self.epoch >= self.epochs}

    def save_checkpoint(self, checkpoint_dir):
        # Called every `checkpoint.every_epochs`, at the end, and when SLURM is about to preempt the job:
        # write what resuming needs; a requeued job calls load_checkpoint with it and goes on.
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as out:
            json.dump({"x": self.x, "epoch": self.epoch}, out)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json")) as handle:
            state = json.load(handle)
        self.x, self.epoch = state["x"], state["epoch"]
'''

EXAMPLE_PROJECT = """# A project: what it runs and its default hyperparameters (orch validate checks it).
name: example
trainable: orch_example:Example      # module:Attribute, importable from the folder that holds conf/
metrics: [loss]                      # what it reports every step; a sweep's metric must be one of them
defaults:
  lr: 0.1
  target: 3.0
  epochs: 10
"""

EXAMPLE_SWEEP = """# A sweep of the example project: `orch run conf/sweeps/example.yaml` (this machine),
# `orch submit conf/sweeps/example.yaml --cluster PROFILE` (a SLURM cluster).
name: example
project: example
metric: loss
mode: min
num_samples: 1
search_space:
  lr: {grid: [0.01, 0.1, 0.3]}
max_concurrent_trials: 2
checkpoint: {every_epochs: 2, keep: 2}
"""

LOCAL_PROFILE = """# This machine: Ray on loopback, sized to what it has. Add SLURM profiles next to it
# (see docs/slurm.md for a profile's sections: login, remote, slurm, tracking, queue).
name: local
backend: local
cpus: auto
gpus: auto
"""

FILES = {
    "conf/projects/example.yaml": EXAMPLE_PROJECT,
    "conf/sweeps/example.yaml": EXAMPLE_SWEEP,
    "conf/clusters/local.yaml": LOCAL_PROFILE,
    "orch_example.py": EXAMPLE_TRAINABLE,
}


@dataclass(frozen=True)
class InitReport:
    created: list[Path]
    kept: list[Path]


def init_workspace(root: Path) -> InitReport:
    """Write the workspace's files under `root`, keeping every file that exists already."""
    created, kept = [], []
    for relative, text in FILES.items():
        path = root / relative
        if path.exists():
            kept.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        created.append(path)
    return InitReport(created, kept)
