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

- classic: the training loss smoothed by a centred moving average whose
  window is a fixed fraction (``WINDOW_FRACTION``, 1/20) of the run's steps
  (:func:`smooth`); ``min_loss_lr`` is the LR at its minimum,
  ``suggested_lr = min_loss_lr / 10`` (fastai's "minimum / 10": the minimum
  sits at the edge of stability); ``diverge_lr`` the first LR after the
  minimum where the smoothed loss exceeds 4 x its minimum, or the member
  diverged. A spike raises the loss, so it cannot create a false minimum, and
  the average damps the dips that fool the steepest-slope rule. Over seeds,
  the median of each seed's value.
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

WINDOW_FRACTION = 1 / 20
DIVERGE_FACTOR = 4.0


def range_members(
    lr_min: float, lr_max: float | None, seeds: Sequence[int] | None = None
):
    """The classic form's members: one rising-LR run per seed (without
    ``seeds``, one member that leaves the seed to the sweep's --seeds; with
    ``lr_max`` None, the top is the sweep's --lr-max)."""
    seed = {} if seeds is None else {"seed": tuple(seeds)}
    return recipes.grid(schedule="range", lr=lr_min, lr_max=lr_max, **seed)


def grid_members(lrs: Sequence[float], seeds: Sequence[int] | None = None):
    """The grid form's members: a constant LR per member (per seed)."""
    seed = {} if seeds is None else {"seed": tuple(seeds)}
    return recipes.grid(schedule="constant", lr=tuple(lrs), **seed)


def log_grid(lo: float, hi: float, per_decade: int = 2) -> tuple[float, ...]:
    """LRs from ``lo`` to ``hi``, ``per_decade`` per factor of 10 (rounded)."""
    if not 0 < lo < hi or not math.isfinite(hi):
        raise ValueError(f"log_grid needs 0 < lo < hi, got lo={lo!r}, hi={hi!r}")
    n = round(math.log10(hi / lo) * per_decade)
    return tuple(
        float(f"{v:.3g}") for v in np.logspace(math.log10(lo), math.log10(hi), n + 1)
    )


def smoothing_window(steps: int, fraction: float = WINDOW_FRACTION) -> int:
    """The odd number of steps :func:`smooth` averages over a run of ``steps``:
    ``round(fraction * steps)``, made odd, at least 3 (1 for runs under 3)."""
    w = max(3, round(fraction * steps)) | 1
    return w if steps >= 3 else 1


def smooth(loss, window: int | None = None) -> np.ndarray:
    """The loss per step, averaged over a centred window of ``window`` steps
    (default :func:`smoothing_window`), shrinking to what exists at the ends;
    NaN from the first non-finite value on (a diverged member's curve ends
    there, and no average reaches past it).

    Why centred, and why a fraction of the run: the curve is analysed after
    the run, so the average can look both ways, and a symmetric window has no
    lag (for a loss that is locally linear in the step its average is the
    loss of the middle step). fastai's causal exponential average
    (``beta = 0.98``) lags by ``beta / (1 - beta) = 49`` steps, and the LR
    rises a fixed factor per step, so the lag in LR grows as the run gets
    shorter: over 8 decades it is 1.2 decades of LR in 314 steps and 3 in 126,
    which moved the minimum of the quick preset's curve from about 0.03 to
    0.17 and a quadratic's (whose loss is lowest at its stability limit ``2 /
    h``) 6x past it. A window that is a fixed fraction of the steps spans the
    same share of the LR range, 1/20 (0.4 decades over 8), however many steps
    the run has (it averages 17 batches of a 314-step run, 7 of a 126-step
    one), narrower than the grid's half-decade spacing. Near a
    blow-up the window sees it half a window early, so ``diverge_lr`` errs
    low by at most half a window rather than high by the lag. The sums are
    direct (a convolution, not differences of a running sum), so values far
    below the early losses keep their precision."""
    loss = np.asarray(loss, np.float64).reshape(-1)
    n = len(loss)
    bad = np.flatnonzero(~np.isfinite(loss))
    m = int(bad[0]) if len(bad) else n
    window = smoothing_window(n) if window is None else int(window)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window=}")
    out = np.full(n, np.nan)
    if m:
        kernel, half = np.ones(window), window // 2
        sums = np.convolve(loss[:m], kernel)[half : half + m]
        counts = np.convolve(np.ones(m), kernel)[half : half + m]
        out[:m] = sums / counts
    return out


def suggest_classic(lr, loss, window: int | None = None,
                    factor: float = DIVERGE_FACTOR):  # fmt: skip
    """``min_loss_lr``, ``suggested_lr`` and ``diverge_lr`` of one rising-LR
    curve (``lr``, ``loss``: per step), from the loss smoothed over
    ``window`` steps (default :func:`smoothing_window` of the run)."""
    lr = np.asarray(lr, np.float64)
    s = smooth(loss, window)
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
            "classic": "LR at the minimum of the loss averaged over a centred "
            "window of 1/20 of the steps, / 10; diverges where the smoothed loss "
            "exceeds 4x its minimum",
            "grid": "LR with the lowest mean final training loss; diverges at the "
            "smallest LR with a diverged seed, or above the best LR with a mean "
            "final loss above the first step's or 4x the best",
        },
    }
    if out is not None:
        results.write_json(os.path.join(out, "lr_range.json"), summary)
    return summary
