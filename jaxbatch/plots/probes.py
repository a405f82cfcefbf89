"""Figures of the probe experiments: the LR range test, the update/weight ratio,
and accuracy, gap and sharpness against batch size.

Every function takes a results directory (for the LR range test: the
experiment's directory, whose ``range`` and ``grid`` sub-directories are its
sweeps), builds its own figure and returns it. Numbers over seeds are the mean
with a 95% Student-t interval (:func:`~jaxbatch.plots.comparisons.seed_stats`).
"""

from __future__ import annotations

import math
import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from jaxbatch import lr_range, results
from jaxbatch.plots import load
from jaxbatch.plots.comparisons import seed_stats


def _chance_loss(run: str) -> float:
    meta = results.read_json(os.path.join(run, "config.json"))
    return math.log(meta["data"]["num_classes"])


def lr_range_test(out: str) -> Figure:
    """Loss against LR for both forms of the range test.

    Classic (thin lines, one per seed): the smoothed training loss of the
    rising-LR run against the LR of each step. Grid (dots with 95% whiskers):
    each fixed-LR member's final training loss, mean over seeds. Vertical
    lines: each form's suggested LR (dashed), crosses: where each diverges.
    """
    summary = results.read_json(os.path.join(out, "lr_range.json"))
    chance = _chance_loss(os.path.join(out, "grid"))
    fig, ax = plt.subplots(figsize=(9, 4.8), layout="constrained")
    c_classic, c_grid = "tab:blue", "tab:orange"
    curves = lr_range.classic_curves(os.path.join(out, "range"))
    for j, c in enumerate(curves):
        s = lr_range.smooth(c["loss"])
        ax.plot(c["lr"], c["loss"], color=c_classic, lw=0.4, alpha=0.25)
        ax.plot(c["lr"], s, color=c_classic, lw=1.5, alpha=0.9,
                label="classic: one run, LR rising (EMA-smoothed; thin: raw)"
                if j == 0 else None)  # fmt: skip
    members = results.read_csv(os.path.join(out, "grid", "members.csv"))
    diverged = members["diverged"].astype(str) == "True"
    loss = np.where(diverged, np.nan, members["train_eval_loss"])
    lrs = np.unique(members["lr"])
    stats = np.array([seed_stats(loss[members["lr"] == v])[:2] for v in lrs])
    top = 1.55 * chance
    ok = np.isfinite(stats[:, 0]) & (stats[:, 0] < top)
    n = len(np.unique(members["seed"]))
    ax.errorbar(lrs[ok], stats[ok, 0], yerr=np.nan_to_num(stats[ok, 1]), fmt="o-",
                color=c_grid, ms=5, capsize=3, lw=1.5,
                label=f"grid: a member per LR, same budget ({n} seeds)")  # fmt: skip
    off = ~ok  # diverged, or a loss above the axis: a triangle at its top
    if off.any():
        ax.plot(lrs[off], np.full(off.sum(), 0.97 * top), "^", color=c_grid, ms=7,
                label="grid: diverged or off the axis")  # fmt: skip
    for form, color in (("classic", c_classic), ("grid", c_grid)):
        d = summary[form]
        ax.axvline(d["suggested_lr"], color=color, ls="--", lw=1.2,
                   label=f"{form}: suggested LR {d['suggested_lr']:.2g}")  # fmt: skip
        if d["diverge_lr"] is not None:
            ax.plot(d["diverge_lr"], 0.9 * top, "x", color=color, ms=10, mew=2.5,
                    label=f"{form}: diverges at {d['diverge_lr']:.2g}")  # fmt: skip
    best = summary["grid"]["best_val_acc_lr"]
    ax.axvline(best, color="0.3", ls=":", lw=1.2,
               label=f"grid: best validation accuracy at {best:.2g}")  # fmt: skip
    ax.axhline(chance, color="0.6", lw=0.8)
    ax.text(ax.get_xlim()[0], chance, " ln(classes): a uniform guess", va="bottom",
            fontsize=7, color="0.4")  # fmt: skip
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss",
           title="LR range test: loss against LR, two forms")  # fmt: skip
    ax.set_ylim(0, top)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def _lr_colors(lrs):
    cmap = plt.get_cmap("viridis")
    logs = np.log10(lrs)
    span = np.ptp(logs) or 1.0
    return {v: cmap((np.log10(v) - logs.min()) / span) for v in lrs}


def update_ratio(out: str, smooth: int = 25) -> Figure:
    """The update/weight ratio ``||Δw|| / ||w||`` per layer over training, one
    colour per LR (mean over the seeds that did not diverge, smoothed over
    ``smooth`` steps), the 1e-3 rule of thumb marked; and the final test
    accuracy against the median ratio of the last epoch, per LR. Diverged
    members are left out of both (the legend counts them); the ratio axes
    span the values of the LRs whose members all learnt (test accuracy above
    twice chance), so a dead network's collapse runs off the axis."""
    from matplotlib.ticker import NullFormatter

    members, history = load(out)
    layers = [k.split("/", 1)[1] for k in history if k.startswith("update_ratio/")]
    lrs = np.unique(members["lr"])
    colors = _lr_colors(lrs)
    diverged = members["diverged"].astype(str) == "True"
    chance = (
        1.0 / results.read_json(os.path.join(out, "config.json"))["data"]["num_classes"]
    )
    learnt = ~diverged & (members["test_acc"] > 2 * chance)
    ncols = len(layers) + 1
    fig, axes = plt.subplots(1, ncols, figsize=(3.4 * ncols + 1, 3.9),
                             layout="constrained", squeeze=False)  # fmt: skip
    axes = axes[0]
    kernel = np.ones(smooth) / smooth
    for ax, layer in zip(axes[:-1], layers):
        col = f"update_ratio/{layer}"
        shown = []
        for v in lrs:
            ids = members["member"][(members["lr"] == v) & ~diverged]
            if not len(ids):
                continue
            ys = np.stack([history[col][history["member"] == m] for m in ids])
            steps = history["step"][history["member"] == ids[0]]
            y = np.exp(np.nanmean(np.log(np.maximum(ys, 1e-30)), 0))  # geometric
            if len(y) > smooth:
                y, steps = np.convolve(y, kernel, "valid"), steps[smooth - 1 :]
            ax.plot(steps, y, color=colors[v], lw=1.3)
            if learnt[members["lr"] == v].all():
                shown.append(y[np.isfinite(y)])
        ax.axhline(1e-3, color="k", ls="--", lw=1)
        if shown:
            values = np.concatenate(shown)
            lo, hi = np.quantile(values, [0.01, 0.99])
            ax.set_ylim(min(lo, 1e-3) / 2, max(hi, 1e-3) * 2)
        ax.set(yscale="log", xlabel="step", title=f"{layer}: ||Δw|| / ||w||")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("update / weight ratio (per step)")
    ax = axes[-1]
    for v in lrs:
        sel = members["lr"] == v
        ok = sel & ~diverged
        gone = int((sel & diverged).sum())
        label = f"LR {v:g}" + (f" ({gone}/{sel.sum()} diverged)" if gone else "")
        if not ok.any():
            ax.plot([], [], "x", color=colors[v], label=label)
            continue
        mean, hw, _ = seed_stats(members["test_acc"][ok])
        ax.errorbar(np.median(members["update_ratio"][ok]), mean,
                    yerr=0 if np.isnan(hw) else hw, fmt="o", color=colors[v],
                    capsize=3, ms=6, label=label)  # fmt: skip
    ax.axvline(1e-3, color="k", ls="--", lw=1, label="1e-3 rule of thumb")
    ax.set(xscale="log", xlabel="median update ratio, last epoch (all layers)",
           ylabel="final test accuracy")  # fmt: skip
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_title("accuracy against the ratio")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


def _by_batch(members, column):
    sizes = np.unique(members["batch_size"])
    diverged = members["diverged"].astype(str) == "True"
    v = np.where(diverged, np.nan, members[column])
    stats = np.array([seed_stats(v[members["batch_size"] == b])[:2] for b in sizes])
    return sizes, stats


def _band(ax, x, stats, color, label, marker="o"):
    mean, hw = stats[:, 0], np.nan_to_num(stats[:, 1])
    ax.fill_between(x, mean - hw, mean + hw, color=color, alpha=0.2, lw=0)
    ax.plot(x, mean, marker=marker, color=color, lw=1.8, ms=5, label=label)


def batch_generalization(out: str) -> Figure:
    """Against batch size (log x, same epochs for all; mean over seeds, band:
    95% interval): test and clean training accuracy; the gap between them;
    the Hessian's top eigenvalue and the ε-sharpness of the final parameters;
    and, when the run interpolated two members, loss along the line between
    them (Keskar et al. 2017, Figures 3-4)."""
    members, _ = load(out)
    path = os.path.join(out, "interpolation.csv")
    has_line = os.path.exists(path)
    ncols = 4 if has_line else 3
    fig, axes = plt.subplots(1, ncols, figsize=(4.3 * ncols, 4.0), layout="constrained")
    sizes, test = _by_batch(members, "test_acc")
    _, train = _by_batch(members, "train_eval_acc")
    ax = axes[0]
    _band(ax, sizes, train, "tab:blue", "train (final params, eval mode)")
    _band(ax, sizes, test, "tab:red", "test")
    ax.set(xscale="log", xlabel="batch size", ylabel="accuracy",
           title="accuracy against batch size")  # fmt: skip
    ax.legend(fontsize=8)
    ax = axes[1]
    gap = np.column_stack([train[:, 0] - test[:, 0], np.hypot(train[:, 1], test[:, 1])])
    _band(ax, sizes, gap, "tab:purple", "train − test accuracy")
    ax.set(xscale="log", xlabel="batch size", ylabel="generalization gap",
           title="train − test accuracy")  # fmt: skip
    ax = axes[2]
    _, eig = _by_batch(members, "sharpness_eig")
    _band(ax, sizes, eig, "tab:green", "Hessian top eigenvalue")
    ax.set(xscale="log", yscale="log", xlabel="batch size",
           ylabel="top Hessian eigenvalue")  # fmt: skip
    ax.set_title("sharpness of the minimum")
    twin = ax.twinx()
    eps_cols = [c for c in members if c.startswith("sharpness_eps_")]
    for col, marker in zip(eps_cols, "sD^"):
        _, eps = _by_batch(members, col)
        twin.plot(sizes, eps[:, 0], marker=marker, ls="--", color="tab:olive",
                  label=f"ε-sharpness, ε={col.rsplit('_', 1)[1]}")  # fmt: skip
    twin.set_ylabel("ε-sharpness (% loss increase)", color="tab:olive")
    lines = ax.get_legend_handles_labels()
    lines2 = twin.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper left")
    for a in axes[:3]:
        a.grid(alpha=0.3, which="both")
    if has_line:
        table = results.read_csv(path)
        ax = axes[3]
        ax.plot(table["alpha"], table["train_loss"], color="tab:blue", label="train")
        ax.plot(table["alpha"], table["test_loss"], color="tab:red", label="test")
        ax.set_yscale("log")
        for a, name in ((0, "small batch"), (1, "large batch")):
            ax.axvline(a, color="0.5", ls=":", lw=1)
            ax.text(a, 0.97, f" {name}", ha="left", va="top", fontsize=7,
                    transform=ax.get_xaxis_transform())  # fmt: skip
        ax.set(xlabel="α: (1 − α) w_small + α w_large", ylabel="cross-entropy",
               title="the line between the two solutions")  # fmt: skip
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    n = len(np.unique(members["seed"]))
    fig.suptitle(f"batch size and generalization (mean of {n} seeds, band: 95% "
                 "interval; every batch size trains the same epochs)")  # fmt: skip
    return fig
