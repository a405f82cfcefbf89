"""What the ``paper`` presets cost: FLOPs before they run, and their time on
one H100 and one TPU v2-8 at an assumed utilisation.

Run::

    python -m benchmarks.paper_cost   # -> benchmarks/results/paper-cost.json

Each experiment's ``--preset paper --dry-run`` (its own process) prints the
FLOP count of every sweep it would train (XLA's cost analysis of one
member's step, times the steps and members; :mod:`jaxbatch.cost`); this
script adds the sweeps of each experiment and divides by each reference
device's nominal peak times the assumed utilisation. The figure is an
estimate: evaluations, data movement and compile time are not in it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from experiments.__main__ import catalog
from jaxbatch.sweep import cost

UNITS = {"PFLOP": 1e15, "TFLOP": 1e12, "GFLOP": 1e9, "MFLOP": 1e6, "FLOP": 1.0}
NO_SWEEP = {"batch_timing"}  # times single steps; no sweep to count


def flops_of(name: str, preset: str = "paper") -> float:
    cmd = [sys.executable, "-m", f"experiments.{name}", "--preset", preset,
           "--dry-run", "--no-progress"]  # fmt: skip
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    found = re.findall(r"cost: ([\d.e+]+) (\w*FLOP) in all", text)
    if not found:
        raise RuntimeError(f"{name}: no cost line in\n{text}")
    partial = "their cost is not counted" in text  # stages after a trained one
    return sum(float(v) * UNITS[u] for v, u in found), partial


def main() -> None:
    rows = []
    for e in catalog():
        if e["name"] in NO_SWEEP:
            continue
        flops, partial = flops_of(e["name"])
        est = cost.estimates(flops)
        rows.append({"experiment": e["name"], "flops": flops, "estimates_s": est,
                     "first_stage_only": partial})  # fmt: skip
        times = "  ".join(f"{k}: {cost.seconds_text(v)}" for k, v in est.items())
        note = "  (first stage only)" if partial else ""
        print(f"{e['name']:>22}: {cost.flops_text(flops):>12}  {times}{note}",
              flush=True)  # fmt: skip
    out = {
        "preset": "paper",
        "assumed_utilisation": cost.ASSUMED_UTILISATION,
        "reference_peaks_flops": cost.REFERENCE_DEVICES,
        "experiments": rows,
    }
    path = os.path.join(os.path.dirname(__file__), "results", "paper-cost.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
