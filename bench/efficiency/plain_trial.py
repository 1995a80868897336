"""The fixed-length trial as a researcher's plain script would run it (no Ray): the baseline of one SLURM array
task per trial (submitit `map_array`, the Hydra-launcher way). Same steps, same checkpoint after each step."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any


def run_trial(config: dict[str, Any], folder: str) -> float:
    steps = max(1, round(config["seconds"] / config.get("step_s", 1.0)))
    step_s, index = config["seconds"] / steps, int(config.get("index", 0))
    state = os.path.join(folder, f"trial_{index}.json")
    loss = 1.0
    for done in range(1, steps + 1):
        time.sleep(step_s)
        loss = math.exp(-done / steps) + 1e-3 * index
        with open(state + ".tmp", "w") as out:
            json.dump({"done_steps": done, "loss": loss}, out)
        os.replace(state + ".tmp", state)
    return loss
