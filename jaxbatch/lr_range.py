"""The learning-rate range test, in two forms, and the LR each suggests.

- **Classic** (Smith 2017; what Lightning's and fastai's finders do): one run
  whose LR rises exponentially from ``lr_min`` to ``lr_max`` (schedule kind
  ``range``); the training loss against the LR of its step. Its LR and its
  training time rise together, so a loss that falls late may be the LR or
  just the extra steps.
- **Grid**: many members at fixed LRs on a log grid, each trained for the
  same short budget, all at once; the loss of each member's final parameters
  against its LR. Nothing but the LR differs between members.

Suggestion rules (documented, and robust to early spikes):

- classic: the training loss smoothed by a bias-corrected exponential moving
  average (``beta = 0.98``, fastai's); ``min_loss_lr`` is the LR at its
  minimum, ``suggested_lr = min_loss_lr / 10`` (fastai's "minimum / 10": the
  minimum sits at the edge of stability); ``diverge_lr`` the first LR after
  the minimum where the smoothed loss exceeds 4 x its minimum, or the member
  diverged. A spike raises the loss, so it cannot create a false minimum, and
  the EMA damps the dips that fool the steepest-slope rule. Over seeds, the
  median of each seed's value.
- grid: ``suggested_lr`` is the LR whose members end with the lowest mean
  training loss (their final parameters evaluated on a fixed training
  subset); ``diverge_lr`` the smallest LR at which any seed diverged or,
  above the suggestion, whose mean final loss blew up: above the loss of the
  first step or 4x the best. (A small LR that has barely moved in a short
  run ends near ln(classes) too; it is slow, not diverged.)

:func:`analyse` reads the two runs and writes ``lr_range.json``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from jaxbatch import recipes, results

BETA = 0.98
DIVERGE_FACTOR = 4.0


def range_members(lr_min: float, lr_max: float, seeds: Sequence[int]):
    """The classic form's members: one rising-LR run per seed."""
    return recipes.grid(schedule="range", lr=lr_min, lr_max=lr_max, seed=tuple(seeds))


def grid_members(lrs: Sequence[float], seeds: Sequence[int]):
    """The grid form's members: a constant LR per member."""
    return recipes.grid(schedule="constant", lr=tuple(lrs), seed=tuple(seeds))


def log_grid(lo: float, hi: float, per_decade: int = 2) -> tuple[float, ...]:
    """LRs from ``lo`` to ``hi``, ``per_decade`` per factor of 10 (rounded)."""
    if not 0 < lo < hi or not math.isfinite(hi):
        raise ValueError(f"log_grid needs 0 < lo < hi, got lo={lo!r}, hi={hi!r}")
    n = round(math.log10(hi / lo) * per_decade)
    return tuple(
        float(f"{v:.3g}") for v in np.logspace(math.log10(lo), math.log10(hi), n + 1)
    )


def smooth(loss, beta: float = BETA) -> np.ndarray:
    """Bias-corrected exponential moving average; NaN from the first NaN on
    (a diverged member's curve ends there)."""
    out = np.full(len(loss), np.nan)
    avg = 0.0
    for i, v in enumerate(np.asarray(loss, np.float64)):
        if not np.isfinite(v):
            break
        avg = beta * avg + (1 - beta) * v
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def suggest_classic(lr, loss, beta: float = BETA, factor: float = DIVERGE_FACTOR):
    """``min_loss_lr``, ``suggested_lr`` and ``diverge_lr`` of one rising-LR
    curve (``lr``, ``loss``: per step)."""
    lr = np.asarray(lr, np.float64)
    s = smooth(loss, beta)
    ok = np.flatnonzero(np.isfinite(s))
    if not len(ok):
        raise ValueError("the range test's loss was never finite")
    low = ok[np.argmin(s[ok])]
    after = np.arange(low, len(s))
    above = after[~np.isfinite(s[after]) | (s[after] > factor * s[low])]
    return {
        "min_loss_lr": float(lr[low]),
        "suggested_lr": float(lr[low] / 10),
        "diverge_lr": float(lr[above[0]]) if len(above) else None,
        "min_smoothed_loss": float(s[low]),
    }


def suggest_grid(lrs, final_loss, diverged, start_loss: float,
                 factor: float = DIVERGE_FACTOR):  # fmt: skip
    """``suggested_lr`` and ``diverge_lr`` of the grid form from every
    member's LR, final training loss and divergence flag.

    The suggestion is the LR of the lowest mean final loss. An LR diverges
    when a seed diverged, or, above the suggestion, when its mean final loss
    ended above the loss training started from (``start_loss``) or above
    ``factor`` times the best: the loss blew up. A small LR that has barely
    moved from the start in a short run is slow, not diverged."""
    lrs = np.asarray(lrs, np.float64)
    loss = np.where(np.asarray(diverged, bool), np.inf, np.asarray(final_loss, float))
    values = np.unique(lrs)
    mean = np.array([np.mean(loss[lrs == v]) for v in values])
    bad = np.array([np.any(~np.isfinite(loss[lrs == v])) for v in values])
    best = int(np.argmin(mean))
    above = np.arange(len(values)) > best
    bad |= above & ((mean > start_loss) | (mean > factor * mean[best]))
    return {
        "suggested_lr": float(values[np.argmin(mean)]),
        "diverge_lr": float(values[np.argmax(bad)]) if bad.any() else None,
        "lrs": values.tolist(),
        "mean_final_train_loss": [
            None if not np.isfinite(m) else float(m) for m in mean
        ],
    }


def classic_curves(run: str) -> list[dict]:
    """Per member of a classic run: ``lr``, ``loss`` per step and its
    suggestion."""
    members = results.read_members(run)
    history = results.read_history(run)
    out = []
    for m, seed in zip(members["member"], members["seed"]):
        rows = history["member"] == m
        lr, loss = history["lr"][rows], history["train_loss"][rows]
        out.append({"seed": int(seed), "lr": lr, "loss": loss,
                    **suggest_classic(lr, loss)})  # fmt: skip
    return out


def start_loss(run: str, num_classes: int) -> float:
    """The mean training loss of the run's first step (where every member
    starts); ln(classes) when the history has none."""
    history = results.read_history(run)
    first = np.asarray(history["train_loss"], float)[np.asarray(history["step"]) == 1]
    first = first[np.isfinite(first)]
    return float(first.mean()) if len(first) else math.log(num_classes)


def analyse(range_run: str, grid_run: str, out: str | None = None) -> dict:
    """Both forms' suggestions; written to ``<out>/lr_range.json``.

    The headline ``suggested_lr`` and ``diverge_lr`` are the grid form's (it
    does not confuse LR and training time); the classic form's are beside
    them, with the grid's best LR by validation accuracy for comparison.
    """
    curves = classic_curves(range_run)

    def median(key):
        values = [c[key] for c in curves]
        finite = [v for v in values if v is not None]
        return float(np.median(finite)) if finite else None

    classic = {k: median(k) for k in ("min_loss_lr", "suggested_lr", "diverge_lr")}
    classic["per_seed"] = [
        {k: c[k] for k in ("seed", "min_loss_lr", "suggested_lr", "diverge_lr")}
        for c in curves
    ]
    members = results.read_members(grid_run)
    meta = results.read_json(os.path.join(grid_run, "config.json"))
    diverged = members["diverged"].astype(str) == "True"
    grid = suggest_grid(
        members["lr"], members["train_eval_loss"], diverged,
        start_loss(grid_run, meta["data"]["num_classes"]),
    )  # fmt: skip
    acc = np.where(diverged, -np.inf, members["final_val_acc"])
    lrs = np.asarray(members["lr"], float)
    values = np.unique(lrs)
    best_acc = values[np.argmax([np.mean(acc[lrs == v]) for v in values])]
    grid["best_val_acc_lr"] = float(best_acc)
    summary = {
        "suggested_lr": grid["suggested_lr"],
        "diverge_lr": grid["diverge_lr"],
        "classic": classic,
        "grid": grid,
        "rules": {
            "classic": "LR at the minimum of the EMA-smoothed (beta 0.98) loss / 10; "
            "diverges where the smoothed loss exceeds 4x its minimum",
            "grid": "LR with the lowest mean final training loss; diverges at the "
            "smallest LR with a diverged seed, or above the best LR with a mean "
            "final loss above the first step's or 4x the best",
        },
    }
    if out is not None:
        results.write_json(os.path.join(out, "lr_range.json"), summary)
    return summary
