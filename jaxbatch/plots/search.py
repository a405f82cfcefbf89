"""Figures of LR-scaling and hyperparameter-search sweeps.

:func:`lr_scaling` and :func:`lr_scaling_curves` read a sweep whose members
carry a ``scaling_rule`` tag (``recipes.scale_lr``) and may warm up
(``warmup_epochs``); :func:`search_progress` reads a sweep whose members
carry a ``search`` tag (e.g. ``grid`` / ``random``). Every function takes the
results directory and returns a ``Figure``.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from jaxbatch import results
from jaxbatch.plots.style import load
from jaxbatch.stats import column_stats, seed_stats

RULE_COLORS = {"none": "tab:gray", "linear": "tab:blue", "sqrt": "tab:orange"}
RULE_LABELS = {"none": "unscaled", "linear": "linear (×k)", "sqrt": "square root (×√k)"}
SEARCH_COLORS = {"grid": "tab:red", "random": "tab:blue"}


def _data_info(out: str) -> dict:
    return results.read_json(os.path.join(out, "config.json"))["data"]


def _rules(members: dict) -> list[str]:
    rules = list(dict.fromkeys(str(r) for r in members["scaling_rule"]))
    order = [r for r in RULE_LABELS if r in rules]
    return order + [r for r in rules if r not in order]


def _rule_color(rule: str, i: int):
    return RULE_COLORS.get(rule, plt.get_cmap("tab10")(3 + i % 7))


def scaling_cells(members: dict):
    """``{(rule, warmed): [(batch size, member row indices)]}``.

    The smallest batch size is the base (k = 1): every rule gives the same LR
    there and a warmup from 1/k is none, so its members (whatever their rule
    tag) are the first point of every line.
    """
    sizes = sorted(set(members["batch_size"]))
    base = members["batch_size"] == sizes[0]
    warmed = members["warmup_epochs"] > 0
    rule = members["scaling_rule"].astype(str)
    cells = {}
    for r in _rules(members):
        for w in (True, False):
            points = [(sizes[0], np.flatnonzero(base))]
            for b in sizes[1:]:
                sel = (members["batch_size"] == b) & (rule == r) & (warmed == w)
                if sel.any():
                    points.append((b, np.flatnonzero(sel)))
            if len(points) > 1:
                cells[(r, w)] = points
    return cells


def _style(rule: str, warmed: bool, i: int) -> dict:
    color = _rule_color(rule, i)
    return dict(color=color, ls="-" if warmed else "--", marker="o" if warmed else "s",
                mfc=color if warmed else "white", mec=color)  # fmt: skip


def _scaling_panel(ax, members: dict, metric: str, chance: float | None):
    """Mean ± 95% t-interval of ``metric`` per (rule, warmup) against batch
    size; a diverged member counts as ``chance`` (accuracy) and is marked."""
    cells = scaling_cells(members)
    rules = _rules(members)
    n_lines = len(cells)
    for j, ((rule, warmed), points) in enumerate(cells.items()):
        style = _style(rule, warmed, rules.index(rule))
        shift = 2 ** (0.035 * (j - (n_lines - 1) / 2))  # spread the error bars
        xs, means, hws = [], [], []
        for b, rows in points:
            v = members[metric][rows].astype(float)
            diverged = members["diverged"][rows].astype(str) == "True"
            if chance is not None:
                v = np.where(diverged, chance, v)
            mean, hw, _ = seed_stats(v)
            xs.append(b * (shift if b != points[0][0] else 1))
            means.append(mean)
            hws.append(0.0 if np.isnan(hw) else hw)
            if diverged.any():
                ax.annotate(f"{diverged.sum()}/{len(rows)} diverged", (xs[-1], mean),
                            xytext=(4, -10), textcoords="offset points", fontsize=7,
                            color=style["color"])  # fmt: skip
        ax.errorbar(xs, means, yerr=hws, capsize=3, lw=1.6, ms=5, **style)
    ax.set_xscale("log", base=2)
    sizes = sorted(set(members["batch_size"]))
    ax.set_xticks(sizes, [f"{b:g}" for b in sizes])
    ax.minorticks_off()
    ax.set_xlabel("batch size (same number of epochs for all)")
    ax.grid(alpha=0.3)


def _scaling_legend(ax, members: dict):
    rules = _rules(members)
    handles = [
        Line2D([], [], color=_rule_color(r, i), lw=2.5, label=RULE_LABELS.get(r, r))
        for i, r in enumerate(rules)
    ]
    warm = members["warmup_epochs"][members["warmup_epochs"] > 0]
    w = f"{np.max(warm):g} ep" if len(warm) else ""
    handles += [
        Line2D([], [], color="0.3", ls="-", marker="o", label=f"warmup {w} from LR/k"),
        Line2D([], [], color="0.3", ls="--", marker="s", mfc="white",
               label="no warmup"),
    ]  # fmt: skip
    ax.legend(handles=handles, fontsize=8, loc="lower left", title="LR rule",
              title_fontsize=8)  # fmt: skip


def lr_scaling(out: str, metric: str = "test_acc") -> Figure:
    """Final ``metric`` (left) and the final training loss (right: the final
    parameters on training images, ``train_eval_loss``) against the batch
    size, one colour per LR scaling rule, solid with warmup and dashed
    without; mean over seeds with a 95% t-interval. A diverged member counts
    as chance accuracy and is named beside its point."""
    members, _ = load(out)
    info = _data_info(out)
    chance = 1.0 / info["num_classes"]
    n = max(len(rows) for pts in scaling_cells(members).values() for _, rows in pts)
    base = min(members["batch_size"])
    base_lr = members["lr"][members["batch_size"] == base][0]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    _scaling_panel(ax1, members, metric, chance)
    ax1.set_ylabel("test accuracy" if metric == "test_acc" else metric)
    ax1.set_title("final accuracy on the test split")
    _scaling_legend(ax1, members)
    _scaling_panel(ax2, members, "train_eval_loss", None)
    ax2.set_yscale("log")
    ax2.set_ylabel("training loss (final parameters)")
    ax2.set_title("final training loss")
    fig.suptitle(
        f"LR scaling from batch {base:g} (LR {base_lr:g}) to k × {base:g}: "
        f"mean of {n} seeds ± 95% t-interval",
        fontsize=11,
    )
    return fig


def lr_scaling_curves(out: str, batch_size: int | None = None) -> Figure:
    """Validation accuracy against epochs at ``batch_size`` (default: the
    largest) per (rule, warmup), mean over seeds with a 95% band; the base
    batch size in black for reference."""
    members, history = load(out)
    n_train = _data_info(out)["n_train"]
    sizes = sorted(set(members["batch_size"]))
    b = sizes[-1] if batch_size is None else batch_size
    rules = _rules(members)
    fig, ax = plt.subplots(figsize=(8.5, 4.8), layout="constrained")
    lines = [(f"batch {sizes[0]:g} (base)", dict(color="k", ls="-"),
              np.flatnonzero(members["batch_size"] == sizes[0]))]  # fmt: skip
    for (rule, warmed), points in scaling_cells(members).items():
        rows = dict(points).get(b)
        if rows is not None:
            style = _style(rule, warmed, rules.index(rule))
            label = f"{RULE_LABELS.get(rule, rule)}, " + (
                "warmup" if warmed else "no warmup"
            )
            lines.append((label, dict(color=style["color"], ls=style["ls"]), rows))
    evaluated = np.isfinite(history["val_acc"])
    for label, style, rows in lines:
        ids = members["member"][rows]
        series = []
        for m in ids:
            sel = (history["member"] == m) & evaluated
            series.append(
                (history["examples_seen"][sel] / n_train, history["val_acc"][sel])
            )
        length = min(len(s[1]) for s in series)
        xs = series[0][0][:length]
        ys = np.stack([s[1][:length] for s in series])
        mean = ys.mean(0)
        if len(ids) > 1:
            hw = column_stats(ys)[1]
            ax.fill_between(xs, mean - hw, mean + hw, color=style["color"], alpha=0.15,
                            lw=0)  # fmt: skip
        ax.plot(xs, mean, lw=1.6, label=label, **style)
    ys = np.concatenate([line.get_ydata() for line in ax.get_lines()])
    ys = ys[np.isfinite(ys)]
    if len(ys):
        lo = np.quantile(ys, 0.1)
        ax.set_ylim(lo - 0.02, min(1.0, ys.max() + 0.02))
    title = f"batch {b:g}: validation accuracy (mean over seeds, 95% band)"
    ax.set(xlabel="epochs", ylabel="validation accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


# --- hyperparameter search -------------------------------------------------------


def best_so_far(values, n_perm: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """The best of the first ``n`` trials for ``n = 1 .. len(values)``, over
    ``n_perm`` random orders of the trials: ``mean``, ``lo`` and ``hi`` (the
    10th and 90th percentiles) per ``n``."""
    v = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    orders = np.stack([rng.permutation(len(v)) for _ in range(n_perm)])
    best = np.maximum.accumulate(v[orders], axis=1)
    return {
        "n": np.arange(1, len(v) + 1),
        "mean": best.mean(0),
        "lo": np.quantile(best, 0.1, axis=0),
        "hi": np.quantile(best, 0.9, axis=0),
    }


def _search_values(members: dict, metric: str, chance: float) -> np.ndarray:
    v = members[metric].astype(float)
    diverged = members["diverged"].astype(str) == "True"
    return np.where(diverged | ~np.isfinite(v), chance, v)


def search_progress(out: str, key: str = "search", metric: str = "final_val_acc"):
    """Grid against random search.

    Left: the best ``metric`` found among the first ``n`` trials against
    ``n`` (log x), each search's trials in 1000 random orders (line: mean,
    band: 10th-90th percentile); the test accuracy of each search's overall
    best trial is written in the legend. Middle and right: every trial's
    ``metric`` against its LR and against the effective LR ``lr / (1 -
    momentum)``; a grid of n^3 points tries only n LRs. Diverged trials count
    as chance and are drawn as crosses.
    """
    members, _ = load(out)
    chance = 1.0 / _data_info(out)["num_classes"]
    names = list(dict.fromkeys(str(s) for s in members[key]))
    values = _search_values(members, metric, chance)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained",
                             gridspec_kw={"width_ratios": [1.25, 1, 1]})  # fmt: skip
    ax = axes[0]
    for i, name in enumerate(names):
        sel = members[key].astype(str) == name
        color = SEARCH_COLORS.get(name, plt.get_cmap("tab10")(2 + i))
        curve = best_so_far(values[sel])
        top = np.flatnonzero(sel)[np.argmax(values[sel])]
        label = (
            f"{name} ({sel.sum()} trials): best {values[top]:.3f}, "
            f"its test acc {members['test_acc'][top]:.3f}"
        )
        ax.fill_between(curve["n"], curve["lo"], curve["hi"], color=color, alpha=0.2,
                        lw=0)  # fmt: skip
        ax.plot(curve["n"], curve["mean"], color=color, lw=2, marker="o", ms=3,
                label=label)  # fmt: skip
    ax.set_xscale("log")
    ax.set(xlabel="number of trials", ylabel=f"best {_metric_name(metric)} so far",
           title="best found vs trials (1000 orders; band: 10-90%)")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    lo = min(np.quantile(values, 0.5), chance)
    eff = members["lr"] / np.maximum(1.0 - members["momentum"], 1e-12)
    for ax, x, xlabel in (
        (axes[1], members["lr"], "learning rate"),
        (axes[2], eff, "effective LR = lr / (1 − momentum)"),
    ):
        for i, name in enumerate(names):
            sel = members[key].astype(str) == name
            bad = sel & (members["diverged"].astype(str) == "True")
            color = SEARCH_COLORS.get(name, plt.get_cmap("tab10")(2 + i))
            ok = sel & ~bad
            ax.scatter(x[ok], values[ok], s=28, color=color, alpha=0.7, lw=0,
                       label=name)  # fmt: skip
            if bad.any():
                ax.scatter(x[bad], values[bad], s=36, marker="x", color=color,
                           label=f"{name}: diverged")  # fmt: skip
        ax.set_xscale("log")
        ax.set(xlabel=xlabel, ylabel=_metric_name(metric))
        ax.set_ylim(max(0.0, lo - 0.05), 1.0)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper left")
    axes[1].set_title("every trial against its LR")
    axes[2].set_title("against the effective LR")
    return fig


def _metric_name(metric: str) -> str:
    return {
        "final_val_acc": "validation accuracy",
        "val_acc_at_best_loss": "validation accuracy at the lowest validation loss",
        "max_val_acc": "highest validation accuracy",
        "test_acc": "test accuracy",
    }.get(metric, metric)
