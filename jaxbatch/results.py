"""The results directory: ``config.json``, ``members.csv``, ``history.csv``.

Plain CSV and JSON so that any tool reads them; :func:`read_csv` gives columns
as numpy arrays for the plots.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping

import numpy as np

MEMBER_COLUMNS = (
    "member", "group", "model", "batch_size", "lr", "weight_decay", "momentum",
    "gamma", "seed", "final_train_loss", "final_train_acc", "final_val_loss",
    "final_val_acc", "best_val_acc", "best_val_step", "gap_loss", "gap_acc",
    "diverged", "stopped", "lr_scale", "steps", "wall_s", "compile_s", "strategy",
)  # fmt: skip
HISTORY_COLUMNS = (
    "member", "step", "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
)  # fmt: skip


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def write_json(path: str, obj: Mapping) -> None:
    """Write atomically: a reader (or a killed run) never sees half a file, and
    processes writing the same file at once never share a temporary file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def write_csv(path: str, columns: Iterable[str], rows: Iterable[Mapping]) -> None:
    """Write rows (dicts) atomically; missing and NaN values become empty cells."""
    columns = tuple(columns)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_fmt(row.get(c)) for c in columns])
    os.replace(tmp, path)


def read_csv(path: str) -> dict[str, np.ndarray]:
    """Columns of a CSV as numpy arrays: numbers as float (empty -> NaN), else str."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        cells = list(zip(*reader)) or [()] * len(header)
    out = {}
    for name, col in zip(header, cells):
        try:
            out[name] = np.array([float(v) if v != "" else np.nan for v in col])
        except ValueError:
            out[name] = np.array(col)
    return out
