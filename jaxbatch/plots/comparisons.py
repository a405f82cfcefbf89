"""Figures that compare *arms* of a sweep: members grouped by a tag column.

An arm is every member that shares the value of a ``members.csv`` column
(e.g. ``schedule_name`` or ``arm``), usually one recipe over several seeds.
Curves show the mean over an arm's seeds with a 95% t-interval band; final
numbers show every seed and the mean with its 95% t-interval
(:func:`seed_stats`). Colours are fixed per arm (:func:`arm_colors`) in the
order arms first appear in ``members.csv``, so one arm has one colour in
every figure of a run. Every function takes the results directory and
returns a ``Figure``.
"""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from jaxbatch.plots.style import MARKERS, arm_colors, line_style, load, train_images
from jaxbatch.stats import column_stats, seed_stats

_METRIC_LABELS = {
    "val_acc": "validation accuracy",
    "val_loss": "validation loss (cross-entropy)",
    "train_loss": "training loss (epoch mean)",
    "train_acc": "training accuracy (epoch mean)",
    "test_acc": "test accuracy",
    "test_loss": "test loss (cross-entropy)",
}


def arms(members: dict, key: str) -> list[str]:
    """The arms (values of column ``key``) in order of first appearance."""
    return list(dict.fromkeys(str(v) for v in members[key]))


def _cells(members: dict, key: str):
    """``[(arm, batch_size or None, member ids)]``; batch size only when it
    varies within the sweep (then each (arm, batch size) is a cell)."""
    sizes = sorted(set(members["batch_size"]))
    split = len(sizes) > 1
    out = []
    for arm in arms(members, key):
        sel = members[key].astype(str) == arm
        for b in sizes if split else [None]:
            s = sel if b is None else sel & (members["batch_size"] == b)
            if s.any():
                out.append((arm, b, members["member"][s].astype(int)))
    return out, sizes if split else []


def _label(arm, b) -> str:
    return arm if b is None else f"{arm}, batch {b:g}"


def _member_rows(history: dict, member: int):
    return np.flatnonzero(history["member"] == member)


def _eval_series(history, member, metric, n_train, eval_steps, hold):
    """(epochs, updates, values) at the evaluations of the member's group
    (``eval_steps``); a stopped member's last value is carried to the end when
    ``hold`` (its parameters are frozen, so later evaluations would repeat it)."""
    rows = _member_rows(history, member)
    rows = rows[np.isin(history["step"][rows], eval_steps)]
    values = history[metric][rows].copy()
    finite = np.flatnonzero(np.isfinite(values))
    if hold and len(finite):
        values[finite[-1] + 1 :] = values[finite[-1]]
    return history["examples_seen"][rows] / n_train, history["step"][rows], values


def _group_eval_steps(members: dict, history: dict) -> dict[int, np.ndarray]:
    """member -> the steps at which its group evaluated (any member of it)."""
    evaluated = np.isfinite(history["val_loss"])
    out = {}
    for g in set(members["group"]):
        ids = members["member"][members["group"] == g]
        sel = evaluated & np.isin(history["member"], ids)
        steps = np.unique(history["step"][sel])
        out.update({int(m): steps for m in ids})
    return out


def _epoch_series(history, member, metric):
    """(epoch ends, last update of each epoch, epoch-mean values)."""
    rows = _member_rows(history, member)
    epochs = history["epoch"][rows]
    ends, updates, values = [], [], []
    for e in np.unique(epochs):
        r = rows[epochs == e]
        v = history[metric][r]
        ends.append(e)
        updates.append(history["step"][r][-1])
        values.append(np.mean(v[np.isfinite(v)]) if np.isfinite(v).any() else np.nan)
    return np.asarray(ends, float), np.asarray(updates, float), np.asarray(values)


def _stack(series):
    """Align several (x_epochs, x_updates, values) series on their x values."""
    length = max(len(s[2]) for s in series)
    ys = np.full((len(series), length), np.nan)
    for i, s in enumerate(series):
        ys[i, : len(s[2])] = s[2]
    longest = max(series, key=lambda s: len(s[2]))
    return longest[0], longest[1], ys


def plot_metric(ax, out: str, key: str, metric: str, x: str = "epochs", data=None):
    """Draw the mean over seeds of ``metric`` per arm on ``ax``, with a 95%
    t-interval band. ``metric``: ``val_acc``/``val_loss`` (at evaluations) or
    ``train_loss``/``train_acc`` (epoch means); ``x``: ``epochs`` or
    ``updates`` (parameter updates). Returns the arm colours."""
    members, history = data or load(out)
    n_train = train_images(out)
    cells, sizes = _cells(members, key)
    colors = arm_colors(arms(members, key))
    stopped = dict(zip(members["member"].astype(int), members["stopped"] == "True"))
    eval_steps = _group_eval_steps(members, history)
    for arm, b, ids in cells:
        if metric.startswith("val_"):
            series = [
                _eval_series(history, m, metric, n_train, eval_steps[m], stopped[m])
                for m in ids
            ]
        else:
            series = [_epoch_series(history, m, metric) for m in ids]
        ep, up, ys = _stack(series)
        xs = ep if x == "epochs" else up
        with warnings.catch_warnings():  # an epoch no seed measured (NaN)
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(ys, axis=0)
        if len(ids) > 1:
            hw = column_stats(ys)[1]
            ax.fill_between(xs, mean - hw, mean + hw, color=colors[arm], alpha=0.18,
                            lw=0)  # fmt: skip
        style = line_style(sizes.index(b)) if b is not None else {}
        ax.plot(xs, mean, color=colors[arm], lw=1.6, label=_label(arm, b), **style)
    ax.set_xlabel("epochs" if x == "epochs" else "parameter updates (steps)")
    ax.set_ylabel(_METRIC_LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    return colors


def _focus_accuracy(ax, lo_quantile: float = 0.1):
    """Zoom an accuracy axis on the upper part of its curves (early, low
    values would flatten the differences that matter)."""
    ys = np.concatenate([line.get_ydata() for line in ax.get_lines()] or [[0, 1]])
    ys = ys[np.isfinite(ys)]
    if len(ys):
        lo, hi = np.quantile(ys, lo_quantile), ys.max()
        pad = 0.08 * (hi - lo) or 0.01
        ax.set_ylim(lo - pad, min(1.0, hi + 3 * pad))


def _legend_outside(ax, title=None):
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False, title=title, title_fontsize=8)  # fmt: skip


def _seed_note(members, key) -> str:
    n = max(len(ids) for _, _, ids in _cells(members, key)[0])
    return f"mean of {n} seeds, band: 95% t-interval" if n > 1 else "one seed"


def metric_curves(out: str, key: str, metric: str = "val_acc", x="epochs") -> Figure:
    """One panel: ``metric`` against epochs (or updates), one line per arm."""
    data = load(out)
    fig, ax = plt.subplots(figsize=(8.5, 4.5), layout="constrained")
    plot_metric(ax, out, key, metric, x, data=data)
    if metric.endswith("acc"):
        _focus_accuracy(ax)
    elif metric.endswith("loss"):
        ax.set_yscale("log")
    name = _METRIC_LABELS.get(metric, metric)
    ax.set_title(f"{name} ({_seed_note(data[0], key)})")
    _legend_outside(ax, key.replace("_", " "))
    return fig


def lr_curves(out: str, key: str) -> Figure:
    """Every member's learning rate against epochs (log scale), one colour per
    arm; an ``x`` marks where a member stopped (e.g. reduce-on-plateau at its
    stop scale)."""
    members, history = load(out)
    n_train = train_images(out)
    colors = arm_colors(arms(members, key))
    cells, sizes = _cells(members, key)
    fig, ax = plt.subplots(figsize=(8.5, 4.5), layout="constrained")
    for arm, b, ids in cells:
        style = line_style(sizes.index(b)) if b is not None else {}
        for j, m in enumerate(ids):
            rows = _member_rows(history, m)
            lr = history["lr"][rows]
            keep = np.isfinite(lr)
            ep = history["examples_seen"][rows] / n_train
            ax.plot(ep[keep], lr[keep], color=colors[arm], markevery=0.1,
                    lw=1.6 if j == 0 else 0.9, alpha=1.0 if j == 0 else 0.6,
                    label=_label(arm, b) if j == 0 else None, **style)  # fmt: skip
            if keep.any() and not keep[-1]:
                last = np.flatnonzero(keep)[-1]
                ax.plot(ep[last], lr[last], "x", color=colors[arm], ms=7, mew=2)
    title = "learning rate per member (thin: other seeds; x: stopped)"
    ax.set(xlabel="epochs", ylabel="learning rate", yscale="log", title=title)
    ax.grid(alpha=0.3, which="both")
    _legend_outside(ax, key.replace("_", " "))
    return fig


def plot_final(ax, members: dict, key: str, metric: str, colors: dict):
    """Every seed's ``metric`` per arm (dots) and the mean with its 95%
    t-interval (bar), the mean and half-width written beside it."""
    cells, sizes = _cells(members, key)
    names = arms(members, key)
    ids_of = {int(m): i for i, m in enumerate(members["member"])}
    rng = np.random.default_rng(0)
    width = 0.6 / max(1, len(sizes))
    for arm, b, ids in cells:
        x = names.index(arm)
        if b is not None:
            x += (sizes.index(b) - (len(sizes) - 1) / 2) * width
        v = members[metric][[ids_of[int(m)] for m in ids]]
        mean, hw, n = seed_stats(v)
        jitter = rng.uniform(-0.06, 0.06, len(v))
        marker = MARKERS[sizes.index(b) % len(MARKERS)] if b is not None else "o"
        ax.scatter(x + 0.18 + jitter, v, s=16, color=colors[arm], alpha=0.6,
                   marker=marker, lw=0)  # fmt: skip
        ax.errorbar(x, mean, yerr=0 if np.isnan(hw) else hw, fmt=marker, ms=7,
                    color=colors[arm], capsize=4, lw=1.8)  # fmt: skip
        text = f"{mean:.3f}" + ("" if np.isnan(hw) else f"\n±{hw:.3f}")
        ax.annotate(text, (x, mean), xytext=(-8, 0), textcoords="offset points",
                    ha="right", va="center", fontsize=7)  # fmt: skip
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_xlim(-0.7, len(names) - 0.4)
    ax.set_ylabel(_METRIC_LABELS.get(metric, metric))
    ax.grid(alpha=0.3, axis="y")
    if sizes:
        handles = [
            plt.Line2D([], [], marker=MARKERS[i % len(MARKERS)], ls="", color="0.3",
                       label=f"batch {b:g}")
            for i, b in enumerate(sizes)
        ]  # fmt: skip
        ax.legend(handles=handles, fontsize=8, loc="best")


def final_metric(out: str, key: str, metric: str = "test_acc") -> Figure:
    """Final ``metric`` per arm: every seed and the mean ± 95% t-interval."""
    members, _ = load(out)
    names = arms(members, key)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names) + 2), 4.5),
                           layout="constrained")  # fmt: skip
    plot_final(ax, members, key, metric, arm_colors(names))
    n = max(len(ids) for _, _, ids in _cells(members, key)[0])
    ax.set_title(
        f"final {_METRIC_LABELS.get(metric, metric)} per {key.replace('_', ' ')}\n"
        f"(dots: {n} seeds; bar: mean ± 95% t-interval)"
    )
    return fig


def _milestones(members: dict) -> list[float]:
    """Epochs at which any member changes its batch size or (multistep) LR."""
    out = set()
    for col in ("milestones",):
        for v in members.get(col, []):
            out |= {float(t) for t in str(v).split() if t not in ("", "nan")}
    for v in members.get("batch_schedule", []):
        text = str(v)
        if " at " in text:
            out |= {float(t) for t in text.split(" at ")[1].split()}
    return sorted(out)


def _mark_milestones(ax, epochs):
    for e in epochs:
        ax.axvline(e, color="0.5", lw=0.8, ls=":", zorder=0)


def training_curves(out: str, key: str) -> Figure:
    """Validation accuracy and training loss against epochs (left) and against
    parameter updates (right), mean over seeds per arm; dotted lines mark the
    epochs where an arm changes its LR or batch size."""
    data = load(out)
    members = data[0]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), layout="constrained")
    for col, x in enumerate(("epochs", "updates")):
        for row, metric in enumerate(("val_acc", "train_loss")):
            ax = axes[row, col]
            plot_metric(ax, out, key, metric, x, data=data)
            if metric == "val_acc":
                _focus_accuracy(ax)
            else:
                ax.set_yscale("log")
            if x == "epochs":
                _mark_milestones(ax, _milestones(members))
    axes[0, 0].set_title("against epochs (examples seen)")
    axes[0, 1].set_title("against parameter updates")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(labels),
               fontsize=9, frameon=False)  # fmt: skip
    fig.suptitle(f"{_seed_note(members, key)}", fontsize=9, y=0.0, va="bottom")
    return fig


def schedules_panel(out: str, key: str) -> Figure:
    """Learning rate, batch size and their ratio against epochs, one line per
    arm (its first member): the ratio LR / batch size is the SGD noise scale
    that Smith et al. (2018) hold equal between decaying the LR and growing
    the batch. The batch size drawn is each epoch's (its smaller remainder
    batch left out)."""
    members, history = load(out)
    n_train = train_images(out)
    names = arms(members, key)
    colors = arm_colors(names)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    for i, arm in enumerate(names):
        m = int(members["member"][members[key].astype(str) == arm][0])
        rows = _member_rows(history, m)
        ep = history["examples_seen"][rows] / n_train
        lr = history["lr"][rows]
        # The epoch's batch size, not its smaller last batch (the remainder
        # of a whole epoch), which would draw as a spike every epoch.
        epoch, bs = history["epoch"][rows], history["batch_size"][rows]
        _, which = np.unique(epoch, return_inverse=True)
        nominal = np.zeros(which.max() + 1)
        np.maximum.at(nominal, which, bs)
        bs = nominal[which]
        kw = dict(color=colors[arm], lw=2.2 - 0.4 * (i % 3), markevery=0.1)
        kw.update(line_style(i))
        axes[0].plot(ep, lr, label=arm, **kw)
        axes[1].plot(ep, bs, **kw)
        axes[2].plot(ep, (lr / bs) / (lr[0] / bs[0]), **kw)
    for ax, label in zip(axes, ("learning rate", "batch size",
                                "LR / batch size (relative to start)")):  # fmt: skip
        ax.set(xlabel="epochs", ylabel=label, yscale="log")
        ax.grid(alpha=0.3, which="both")
        _mark_milestones(ax, _milestones(members))
    axes[0].set_title("learning rate")
    axes[1].set_title("batch size")
    axes[2].set_title("noise scale ∝ LR / batch size")
    axes[0].legend(fontsize=8, loc="lower left")
    return fig


def arm_summary(out: str, key: str, metric: str = "test_acc") -> Figure:
    """Final ``metric`` per arm (every seed, mean ± 95% t-interval) beside
    the parameter updates each arm took (mean over seeds, labelled)."""
    members, _ = load(out)
    names = arms(members, key)
    colors = arm_colors(names)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    plot_final(ax1, members, key, metric, colors)
    ax1.set_title(f"final {_METRIC_LABELS.get(metric, metric)} (mean ± 95% CI)")
    steps = [np.mean(members["steps"][members[key].astype(str) == a]) for a in names]
    bars = ax2.bar(range(len(names)), steps, color=[colors[a] for a in names])
    ax2.bar_label(bars, fmt="%.0f", fontsize=9)
    ax2.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax2.set(ylabel="parameter updates (steps)", title="parameter updates to the end")
    ax2.set_ylim(0, 1.12 * max(steps))
    ax2.grid(alpha=0.3, axis="y")
    return fig
