"""Figures of the comparisons that test single claims of the folklore
(``experiments.momentum``): a final metric against a numeric field, one
line per value of a tag, every seed a dot and the mean with its 95%
interval."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from jaxbatch import results, stats
from jaxbatch.plots.style import arm_colors, pct


def metric_vs(
    out: str,
    x: str,
    line: str,
    metric: str = "test_acc",
    xlabel: str | None = None,
    log_one_minus: bool = False,
) -> Figure:
    """``metric`` of the final parameters against field ``x``, a line per
    value of tag ``line``; a member listed in two lines (a shared training)
    is in both. ``log_one_minus``: the x axis is ``1 - x`` on a log scale
    (momentum), labelled with the values of ``x``."""
    m = results.read_members(out)
    lines = list(dict.fromkeys(m[line].astype(str)))
    colors = arm_colors(lines)
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    for k, name in enumerate(lines):
        sel = m[line].astype(str) == name
        xs = sorted(set(m[x][sel].astype(float)))
        means, halves = [], []
        for v in xs:
            rows = sel & (m[x].astype(float) == v)
            y = m[metric][rows].astype(float)
            pos = (1 - v) if log_one_minus else v
            ax.scatter(np.full(len(y), pos) * (1 + 0.03 * (k - 0.5)), y, s=14,
                       color=colors[name], alpha=0.5, lw=0)  # fmt: skip
            mean, half, _ = stats.seed_stats(y)
            means.append(mean)
            halves.append(half)
        pos = [(1 - v) if log_one_minus else v for v in xs]
        label = f"{name.replace('_', ' ')} (best {pct(np.nanmax(means))}%)"
        ax.errorbar(pos, means, yerr=np.nan_to_num(halves), color=colors[name],
                    marker="o", ms=6, capsize=4, lw=1.8, label=label)  # fmt: skip
    if log_one_minus:
        ax.set_xscale("log")
        ticks = sorted(set(1 - m[x].astype(float)))
        ax.set_xticks(ticks, [f"{1 - t:g}" for t in ticks])
        ax.invert_xaxis()
    ax.set(xlabel=xlabel or x.replace("_", " "), ylabel=metric.replace("_", " "))
    n = int(np.max([np.sum((m[line].astype(str) == name) & (m[x] == v))
                    for name in lines for v in set(m[x])]))  # fmt: skip
    ax.set_title(
        f"{metric.replace('_', ' ')} against {x.replace('_', ' ')} "
        f"(dots: {n} seeds; bars: mean ± 95% t-interval)", fontsize=9,
    )  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def curves_by(out: str, panel: str, key: str, metric: str = "val_acc",
              ylim_quantile: float = 0.1) -> Figure:  # fmt: skip
    """``metric`` against epochs, one panel per value of tag ``panel`` (a
    member listed in two panels is drawn in both), a line per value of tag
    ``key`` (mean of seeds, band: 95% interval)."""
    from jaxbatch.plots import comparisons

    members, history = comparisons.load(out)
    names = list(dict.fromkeys(members[panel].astype(str)))
    size = (5.2 * len(names), 4.4)
    fig, axes = plt.subplots(1, len(names), figsize=size, sharey=True,
                             layout="constrained", squeeze=False)  # fmt: skip
    finite = history[metric][np.isfinite(history[metric])]
    for ax, name in zip(axes[0], names):
        sel = members[panel].astype(str) == name
        part = {k: v[sel] for k, v in members.items()}
        comparisons.plot_metric(ax, out, key, metric, data=(part, history))
        ax.set_title(name.replace("_", " "), fontsize=10)
        ax.set_xlabel("epochs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    if len(finite):
        axes[0][0].set_ylim(np.quantile(finite, ylim_quantile) - 0.02,
                            min(1.0, finite.max() + 0.01))  # fmt: skip
    label = comparisons._METRIC_LABELS.get(metric, metric.replace("_", " "))
    for ax in axes[0]:
        ax.set_ylabel("")
    axes[0][0].set_ylabel(label)
    n = int(max(np.sum(members[key].astype(str) == a) for a in set(members[key])))
    fig.suptitle(
        f"{label} by {panel.replace('_', ' ')} (mean of {n} seeds, band: "
        "95% t-interval)", fontsize=10,
    )  # fmt: skip
    return fig


def remedies(rows: list[dict]) -> Figure:
    """Two panels, a column per remedy: the train/validation gap and the
    test accuracy (dots: seeds; bar: mean ± 95% t-interval), the baseline
    first and marked by a dashed line across."""
    names = list(dict.fromkeys(r["remedy"] for r in rows))
    if "baseline" in names:
        names.remove("baseline")
        names.insert(0, "baseline")
    colors = arm_colors(names)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    for ax, key, label in ((axes[0], "gap", "train - validation accuracy (points)"),
                           (axes[1], "test_acc", "test accuracy (%)")):  # fmt: skip
        for x, name in enumerate(names):
            v = 100 * np.array([r[key] for r in rows if r["remedy"] == name], float)
            v = v[np.isfinite(v)]
            if not len(v):
                continue
            mean, half, _ = stats.seed_stats(v)
            ax.scatter(x + np.linspace(-0.1, 0.1, len(v)) + 0.15, v, s=16,
                       color=colors[name], alpha=0.6, lw=0)  # fmt: skip
            ax.errorbar(x, mean, yerr=np.nan_to_num(half), fmt="o", ms=7, capsize=4,
                        color=colors[name], lw=1.8)  # fmt: skip
            if name == "baseline":
                ax.axhline(mean, color=colors[name], ls="--", lw=1, alpha=0.7)
        ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names],
                      rotation=25, ha="right")  # fmt: skip
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
    n = max(sum(r["remedy"] == name for r in rows) for name in names)
    axes[0].set_title("overfitting gap of the final parameters (lower: less overfit)",
                      fontsize=9)  # fmt: skip
    axes[1].set_title(f"test accuracy ({n} seeds; the ensemble: one averaged "
                      "prediction of the baseline's seeds)", fontsize=9)  # fmt: skip
    return fig
