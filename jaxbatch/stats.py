"""Seeds as error bars: members grouped into arms, mean and 95% interval.

An *arm* is every member of a sweep that is equal in everything but its seed
(the same tags and recipe). :func:`arms` finds them in a ``members.csv``;
:func:`seed_stats` gives the mean over an arm's seeds and the half-width of
its two-sided Student-t interval; :func:`arm_rows` is the table of arms
(``arms.csv``, the report and the command line print it); :func:`difference`
compares two arms (Welch's interval of the difference of their means).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as _stats

from jaxbatch.columns import ARM_RESULTS, measured_columns

# Recipe columns an arm's label may name, in this order, when they vary.
ARM_FIELDS = (
    "model", "batch_size", "batch_schedule", "lr", "schedule", "optimizer",
    "momentum", "weight_decay", "weight_decay_mode", "warmup_epochs",
    "warmup_start", "gamma", "decay_epochs", "decay_rate", "power", "milestones",
    "plateau_factor", "lr_max", "lr_multipliers", "b1", "b2",
)  # fmt: skip


def seed_stats(values, confidence: float = 0.95) -> tuple[float, float, int]:
    """``(mean, half_width, n)`` of the finite ``values``: the mean and the
    half-width of its two-sided Student-t interval, ``t(n-1) * s / sqrt(n)``
    with the sample standard deviation ``s`` (ddof 1).

    The half-width is NaN below two values (no spread to estimate); the mean
    is NaN with no finite value.
    """
    v = np.asarray(values, float).ravel()
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), 0
    if n == 1:
        return float(v[0]), float("nan"), 1
    t = _stats.t.ppf(0.5 + confidence / 2, n - 1)
    return float(v.mean()), float(t * v.std(ddof=1) / math.sqrt(n)), n


def column_stats(
    ys, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`seed_stats` of every column of ``ys`` [seeds, points] at once:
    ``(mean, half_width, n)`` per column over its finite values."""
    ys = np.asarray(ys, float)
    ok = np.isfinite(ys)
    n = ok.sum(axis=0)
    total = np.where(ok, ys, 0.0).sum(axis=0)
    mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
    sq = np.where(ok, (ys - mean) ** 2, 0.0).sum(axis=0)
    sd = np.sqrt(sq / np.maximum(n - 1, 1))
    t = _stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1))
    half = np.where(n > 1, t * sd / np.sqrt(np.maximum(n, 1)), np.nan)
    return mean, half, n


def accuracy_column(members: Mapping) -> str:
    """The accuracy a run is judged by: the final parameters on the test
    split where there is one, else the validation accuracy at the lowest
    validation loss."""
    if "test_acc" in members and np.isfinite(members["test_acc"]).any():
        return "test_acc"
    return "val_acc_at_best_loss"


def difference(a, b, confidence: float = 0.95) -> tuple[float, float]:
    """``(mean(a) - mean(b), half_width)``: Welch's two-sided t-interval of
    the difference of two arms' means (NaN half-width below two seeds in
    either arm)."""
    a = np.asarray(a, float)[np.isfinite(a)]
    b = np.asarray(b, float)[np.isfinite(b)]
    if not len(a) or not len(b):
        return float("nan"), float("nan")
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return d, 0.0
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return d, float(_stats.t.ppf(0.5 + confidence / 2, dof) * se)


def tag_columns(members: Mapping) -> list[str]:
    """The tag columns of ``members.csv``: those between ``model`` and the
    recipe's ``batch_size``."""
    names = list(members)
    if "model" in names and "batch_size" in names:
        return names[names.index("model") + 1 : names.index("batch_size")]
    return []


def _text(value) -> str:
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else f"{float(value):g}"
    return str(value)


def _varies(members: Mapping, key: str, rows) -> bool:
    return len({_text(members[key][i]) for i in rows}) > 1


def varying_fields(members: Mapping, rows=None) -> list[str]:
    """The tags and recipe fields (not the seed) that differ between
    ``rows`` (default: all members), in label order. Where tags vary, a
    recipe field that the tags determine (one value per tag combination, e.g.
    the schedule of a ``schedule_name``) is left out: the tag names it."""
    rows = np.arange(len(members["member"])) if rows is None else np.asarray(rows)
    tags = [k for k in tag_columns(members) if _varies(members, k, rows)]
    recipe = [k for k in ARM_FIELDS if k in members and _varies(members, k, rows)]
    if tags:
        groups = arms(members, rows, fields=tags)
        recipe = [k for k in recipe if any(_varies(members, k, r) for _, r in groups)]
    return tags + recipe


def arms(
    members: Mapping, rows=None, fields: Sequence[str] | None = None
) -> list[tuple[dict, np.ndarray]]:
    """Members grouped into arms: ``[(values, member rows)]`` in order of first
    appearance, ``values`` the arm's ``{field: value}`` for ``fields``
    (default: :func:`varying_fields`). Rows index the columns of ``members``."""
    rows = np.arange(len(members["member"])) if rows is None else np.asarray(rows)
    fields = varying_fields(members, rows) if fields is None else list(fields)
    order: dict[tuple, list[int]] = {}
    for i in rows:
        order.setdefault(tuple(_text(members[k][i]) for k in fields), []).append(i)
    return [
        ({k: members[k][r[0]] for k in fields}, np.asarray(r)) for r in order.values()
    ]


def label(values: Mapping) -> str:
    """``"batch size 64, lr 0.02"``; ``"all members"`` for an empty arm key."""
    parts = [f"{k.replace('_', ' ')} {_text(v)}" for k, v in values.items()]
    return ", ".join(parts) or "all members"


def diverged(members: Mapping) -> np.ndarray:
    return np.asarray([str(v) == "True" for v in members["diverged"]])


def arm_rows(members: Mapping, confidence: float = 0.95) -> list[dict]:
    """One row per arm: the varying fields, ``seeds`` (members), ``diverged``
    (how many), and for every result column ``<col>`` (the standard ones,
    then the run's measurements) its mean over the arm's healthy seeds and
    ``<col>_ci`` the half-width of the interval."""
    gone = diverged(members)
    summarised = [
        c for c in (*ARM_RESULTS, *measured_columns(members))
        if c in members and members[c].dtype.kind == "f"
    ]  # fmt: skip
    out = []
    for values, rows in arms(members):
        row = {**values, "seeds": len(rows), "diverged": int(gone[rows].sum())}
        for col in summarised:
            if np.isfinite(members[col]).any():
                ok = rows[~gone[rows]]
                mean, half, _ = seed_stats(members[col][ok].astype(float), confidence)
                row[col], row[f"{col}_ci"] = mean, half
        out.append(row)
    return out


def arm_columns(rows: Sequence[Mapping]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))
