"""The fixed-length benchmark trainable: a plain Ray Tune class, nothing of orch imported.

A trial "trains" for `seconds` in steps of `step_s`: each step sleeps (so CPU contention on a small machine
does not blur the figure), reports a real metric and is checkpointed by Tune like any class trainable. It can
reset itself for the next trial (`reset_config`), as a lab that runs many short trials would write it.
`plain_trial.py` is the same trial without Ray, for the one-array-task-per-trial baseline.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

from ray import tune


def loss(done_steps: int, steps: int, index: int) -> float:
    return math.exp(-done_steps / steps) + 1e-3 * index


class FixedLength(tune.Trainable):
    def setup(self, config: dict[str, Any]) -> None:
        self.steps = max(1, round(config["seconds"] / config.get("step_s", 1.0)))
        self.step_s = config["seconds"] / self.steps
        self.index, self.done_steps = int(config.get("index", 0)), 0

    def step(self) -> dict[str, Any]:
        time.sleep(self.step_s)
        self.done_steps += 1
        return {"loss": loss(self.done_steps, self.steps, self.index), "done": self.done_steps >= self.steps}

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Lets Tune run the next trial in this process (`reuse_actors`; orch turns it on when this exists)."""
        self.setup(new_config)
        return True

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as out:
            json.dump({"done_steps": self.done_steps}, out)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "state.json")) as handle:
            self.done_steps = json.load(handle)["done_steps"]
