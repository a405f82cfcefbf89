"""Steps to a target against batch size, and the critical batch size.

Shallue et al. (2018) measure, for each batch size with its own best LR, the
number of steps to reach a target validation accuracy: it halves with every
doubling of the batch at first (perfect scaling), then falls more slowly
(diminishing returns) and finally stops falling (a plateau). McCandlish et
al. (2018) model the curve as ``S(B) = S_min (1 + B_noise / B)``, where
``B_noise`` is the critical batch size at the bend, and predict it by the
gradient noise scale ``B_simple = tr(Σ) / |G|²`` (the ``noise_scale``
probe).
"""

from __future__ import annotations

import os

import numpy as np

from jaxbatch import results


def steps_to_target(out: str, target: float, metric: str = "val_acc") -> dict:
    """For every member of run ``out``, the first evaluated step at which
    ``metric`` reached ``target`` (NaN if never); and per batch size the
    fewest steps over its LRs (mean over seeds) with that LR.

    Returns ``{"members": {member: steps}, "batch_sizes", "steps", "best_lr",
    "examples"}`` (per batch size arrays, sorted by batch size).
    """
    members = results.read_members(out)
    history = results.read_history(out)
    per_member = {}
    for m in members["member"].astype(int):
        rows = (history["member"] == m) & np.isfinite(history[metric])
        hit = np.flatnonzero(history[metric][rows] >= target)
        per_member[m] = float(history["step"][rows][hit[0]]) if len(hit) else np.nan
    steps = np.array([per_member[int(m)] for m in members["member"]])
    sizes = np.unique(members["batch_size"])
    best_steps, best_lr = [], []
    for b in sizes:
        at_b = members["batch_size"] == b
        lrs = np.unique(members["lr"][at_b])
        # a LR counts only if every seed reached the target
        means = np.array([np.mean(steps[at_b & (members["lr"] == v)]) for v in lrs])
        if np.isfinite(means).any():
            j = int(np.nanargmin(means))
            best_steps.append(means[j])
            best_lr.append(float(lrs[j]))
        else:
            best_steps.append(np.nan)
            best_lr.append(np.nan)
    best_steps = np.asarray(best_steps)
    return {
        "members": per_member,
        "batch_sizes": sizes,
        "steps": best_steps,
        "best_lr": np.asarray(best_lr),
        "examples": best_steps * sizes,
    }


def fit_steps(batch_sizes, steps) -> tuple[float, float]:
    """``(S_min, B_crit)`` of ``S(B) = S_min (1 + B_crit / B)`` fitted to the
    finite points by least squares on ``S`` against ``1 / B`` (the model is
    linear there: ``S = S_min + S_min B_crit / B``)."""
    b = np.asarray(batch_sizes, float)
    s = np.asarray(steps, float)
    ok = np.isfinite(s)
    if ok.sum() < 2:
        raise ValueError(
            "fit_steps needs at least two batch sizes that reached the target"
        )
    # weights 1/S: relative errors count alike at every batch size
    slope, intercept = np.polyfit(1.0 / b[ok], s[ok], 1, w=1.0 / s[ok])
    s_min = max(float(intercept), 1e-12)
    return s_min, float(slope) / s_min


def noise_scale_at_target(out: str, target: float, summary: dict) -> float:
    """The median over batch sizes of ``B_simple`` (the smoothed
    ``noise_scale`` of ``history.csv``) of the best-LR members at the
    evaluation where they reached the target."""
    members = results.read_members(out)
    history = results.read_history(out)
    if "noise_scale" not in history:
        raise ValueError(f"{out} has no noise_scale: run it with --probes noise_scale")
    values = []
    for b, lr in zip(summary["batch_sizes"], summary["best_lr"]):
        sel = (members["batch_size"] == b) & (members["lr"] == lr)
        for m in members["member"][sel].astype(int):
            step = summary["members"][m]
            rows = (history["member"] == m) & (history["step"] == step)
            if np.isfinite(step) and rows.any():
                values.append(float(history["noise_scale"][rows][0]))
    values = [v for v in values if np.isfinite(v)]
    return float(np.median(values)) if values else float("nan")


def analyse(out: str, target: float) -> dict:
    """Steps to ``target`` per batch size, the fitted ``S_min`` and
    ``B_crit``, and the measured ``B_simple``; written to
    ``<out>/critical_batch.json``."""
    summary = steps_to_target(out, target)
    s_min, b_crit = fit_steps(summary["batch_sizes"], summary["steps"])
    report = {
        "target_val_acc": target,
        "batch_sizes": summary["batch_sizes"].tolist(),
        "steps_to_target": [
            None if not np.isfinite(v) else v for v in summary["steps"]
        ],
        "best_lr": [None if not np.isfinite(v) else v for v in summary["best_lr"]],
        "s_min": s_min,
        "b_crit_fitted": b_crit,
        "b_simple_measured": noise_scale_at_target(out, target, summary),
    }
    results.write_json(os.path.join(out, "critical_batch.json"), report)
    return report
