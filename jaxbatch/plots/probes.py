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


def update_ratio(out: str, smooth: int = 5) -> Figure:
    """The update/weight ratio ``||Δw|| / ||w||`` per layer over training, one
    colour per LR (geometric mean over the seeds that did not diverge, at the
    probed steps, smoothed over ``smooth`` of them), the 1e-3 rule of thumb
    marked; and the final test
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
            probed = np.isfinite(ys).any(0)  # the steps the probe ran at
            ys, steps = ys[:, probed], steps[probed]
            with np.errstate(divide="ignore"):
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


def batch_timing(out: str) -> Figure:
    """Time per update, time per epoch and examples per second against the
    batch size (log-log), one line per model, from ``timing.csv``."""
    table = results.read_csv(os.path.join(out, "timing.csv"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    for i, model in enumerate(dict.fromkeys(table["model"].astype(str))):
        sel = table["model"].astype(str) == model
        b = table["batch_size"][sel]
        for ax, col in zip(axes, ("ms_per_update", "s_per_epoch", "examples_per_s")):
            ax.plot(b, table[col][sel], marker="os^D"[i % 4], lw=1.8, label=model)
    titles = ("time per update", "time per epoch", "throughput")
    labels = ("ms per update", "s per epoch (updates x time per update)",
              "examples per second")  # fmt: skip
    for ax, title, label in zip(axes, titles, labels):
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel=label,
               title=title)  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    backend, kind = str(table["backend"][0]), str(table["device_kind"][0])
    device = backend if kind.lower() == backend.lower() else f"{backend} ({kind})"
    fig.suptitle(f"one member's SGD step on {device} (compile time excluded)")
    return fig


def bn_small_batch(out: str) -> Figure:
    """Test accuracy against batch size, one line per model (mean over seeds,
    band: 95% interval), and the clean train minus test accuracy gap."""
    members, _ = load(out)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for i, model in enumerate(dict.fromkeys(members["model"].astype(str))):
        sel = members["model"].astype(str) == model
        sub = {k: v[sel] for k, v in members.items()}
        color = plt.get_cmap("tab10")(i)
        sizes, test = _by_batch(sub, "test_acc")
        _, train = _by_batch(sub, "train_eval_acc")
        _band(axes[0], sizes, test, color, model, marker="os^D"[i % 4])
        gap = np.column_stack([train[:, 0] - test[:, 0], np.zeros(len(sizes))])
        axes[1].plot(sizes, gap[:, 0], marker="os^D"[i % 4], color=color,
                     label=model)  # fmt: skip
    axes[0].set(ylabel="test accuracy", title="test accuracy (final parameters)")
    axes[1].set(ylabel="train − test accuracy (eval mode)",
                title="generalization gap")  # fmt: skip
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    n = len(np.unique(members["seed"]))
    fig.suptitle(f"BatchNorm at small batches (mean of {n} seeds, same epochs)")
    return fig


def small_batch(out: str, within: float = 0.02) -> Figure:
    """Test accuracy against the base LR ``eta`` (LR / batch size), one line
    per batch size (mean over seeds; diverged members count as chance); the
    best accuracy per batch size, and the width (in factors of 2) of the
    range of ``eta`` within ``within`` of that best."""
    members, _ = load(out)
    chance = (
        1.0 / results.read_json(os.path.join(out, "config.json"))["data"]["num_classes"]
    )
    diverged = members["diverged"].astype(str) == "True"
    acc = np.where(diverged | ~np.isfinite(members["test_acc"]), chance,
                   members["test_acc"])  # fmt: skip
    sizes = np.unique(members["batch_size"])
    etas = np.unique(members["eta"])
    cmap = plt.get_cmap("viridis")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    best, width = [], []
    for i, b in enumerate(sizes):
        at_b = members["batch_size"] == b
        mean = np.array([np.mean(acc[at_b & (members["eta"] == e)]) for e in etas])
        color = cmap(i / max(1, len(sizes) - 1))
        ax.plot(etas, mean, marker="o", color=color, lw=1.8, label=f"batch {b:g}")
        best.append(mean.max())
        good = etas[mean >= mean.max() - within]
        width.append(np.log2(good.max() / good.min()))
    ax.axhline(chance, color="0.6", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="base LR η̃ = LR / batch size", ylabel="test accuracy",
           title="test accuracy against the base LR (mean over seeds)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="LR = batch × η̃", title_fontsize=8)
    ax2.plot(sizes, best, "o-", color="tab:red", lw=1.8, label="best test accuracy")
    ax2.set(xlabel="batch size", ylabel="best test accuracy")
    ax2.set_xscale("log", base=2)
    twin = ax2.twinx()
    label = f"range of η̃ within {100 * within:g} points of the best"
    twin.plot(sizes, width, "s--", color="tab:blue", label=label)
    twin.set_ylabel("width of the good η̃ range (factors of 2)", color="tab:blue")
    lines = [*ax2.get_legend_handles_labels()[0], *twin.get_legend_handles_labels()[0]]
    ax2.legend(lines, [h.get_label() for h in lines], fontsize=8, loc="lower left")
    ax2.set_title("best accuracy and the stable range")
    ax2.grid(alpha=0.3)
    return fig


def critical_batch(out: str) -> Figure:
    """Steps (left) and examples (right) to the target validation accuracy
    against batch size, each batch size at its best LR, log-log: the
    measured points, perfect scaling from the smallest batch (steps halve per
    doubling), the fitted ``S_min (1 + B_crit / B)``, and ``B_crit`` and the
    measured noise scale ``B_simple`` marked. Reads ``critical_batch.json``."""
    report = results.read_json(os.path.join(out, "critical_batch.json"))
    b = np.asarray(report["batch_sizes"], float)
    s = np.array([np.nan if v is None else v for v in report["steps_to_target"]])
    s_min, b_crit = report["s_min"], report["b_crit_fitted"]
    grid = np.logspace(np.log10(b.min()), np.log10(b.max()), 100)
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.3), layout="constrained")
    first = np.flatnonzero(np.isfinite(s))[0]
    panels = (
        (axes[0], np.ones_like, "steps to target"),
        (axes[1], lambda x: x, "examples to target"),
    )
    for ax, scale, ylabel in panels:
        ax.plot(
            b, s * scale(b), "o", color="tab:blue", ms=7, label="measured (best LR)"
        )
        ax.plot(grid, s[first] * b[first] / grid * scale(grid), ":", color="0.4",
                label="perfect scaling")  # fmt: skip
        ax.plot(grid, s_min * (1 + b_crit / grid) * scale(grid), "-", color="tab:red",
                label=f"fit S_min (1 + B_crit / B): B_crit = {b_crit:.0f}")  # fmt: skip
        ax.axvline(b_crit, color="tab:red", ls="--", lw=1)
        bs = report["b_simple_measured"]
        if np.isfinite(bs):
            ax.axvline(bs, color="tab:green", ls="--", lw=1,
                       label=f"noise scale B_simple = {bs:.0f}")  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel=ylabel)
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3, which="both")
    for x, y, lr in zip(b, s, report["best_lr"]):
        if lr is not None:
            axes[0].annotate(f"LR {lr:g}", (x, y), xytext=(4, 4),
                             textcoords="offset points", fontsize=7)  # fmt: skip
    axes[0].legend(fontsize=8)
    axes[0].set_title("steps to the target")
    axes[1].set_title("examples to the target")
    fig.suptitle(
        f"steps to {100 * report['target_val_acc']:g}% validation accuracy, each "
        "batch size at its best LR"
    )
    return fig
