"""Matplotlib figures from a results directory.

Every function takes a results directory (or the arrays read from it), builds
its own ``fig, ax`` and returns the ``Figure``; nothing here calls
``plt.show()``. :func:`save_all` writes the standard set into ``<out>/plots``.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # noqa: E402 - headless by default; notebooks may switch back
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from jaxbatch import results


def load(out: str) -> tuple[dict, dict]:
    """``(members, history)`` columns of a results directory."""
    members = results.read_csv(os.path.join(out, "members.csv"))
    history = results.read_csv(os.path.join(out, "history.csv"))
    return members, history


def _member_series(history: dict, member: int, column: str):
    rows = history["member"] == member
    steps, values = history["step"][rows], history[column][rows]
    keep = np.isfinite(values)
    return steps[keep], values[keep]


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def _colors(n: int):
    return plt.get_cmap("tab10")(np.arange(n) % 10)


def loss_curves(out: str, batch_size: int, model: str | None = None) -> Figure:
    """Training loss per batch (dark) and validation loss (light) vs iteration.

    One figure for one batch size (and ``model``, in a sweep of several), one
    colour per learning rate (further members of the same LR share it).
    """
    members, history = load(out)
    sel = members["batch_size"] == batch_size
    if model is not None:
        sel &= members["model"] == model
    lrs = sorted(set(members["lr"][sel]))
    colors = dict(zip(lrs, _colors(len(lrs))))
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for member, lr in zip(members["member"][sel], members["lr"][sel]):
        c = colors[lr]
        steps, train = _member_series(history, member, "train_loss")
        ax.plot(
            steps,
            train,
            color=c,
            lw=0.6,
            alpha=0.9,
            label=f"lr={lr:g} train (per batch)",
        )
        steps, val = _member_series(history, member, "val_loss")
        light = 0.55 * np.asarray(c) + 0.45
        ax.plot(steps, val, color=light[:3], lw=2.0, label=f"lr={lr:g} validation")
    name = f"{model}, batch size" if model else "batch size"
    ax.set(xlabel="iteration", ylabel="cross-entropy loss", yscale="log",
           title=f"{name} {batch_size:g}: training vs validation loss")  # fmt: skip
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def accuracy_curves(out: str) -> Figure:
    """Validation accuracy vs iteration, one line per member (colour per LR,
    line style per batch size)."""
    members, history = load(out)
    lrs = sorted(set(members["lr"]))
    colors = dict(zip(lrs, _colors(len(lrs))))
    styles = dict(zip(sorted(set(members["batch_size"])), ["-", "--", ":", "-."] * 4))
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for member, lr, bs in zip(members["member"], members["lr"], members["batch_size"]):
        steps, acc = _member_series(history, member, "val_acc")
        ax.plot(
            steps, acc, color=colors[lr], ls=styles[bs], label=f"bs={bs:g} lr={lr:g}"
        )
    ax.set(
        xlabel="iteration", ylabel="validation accuracy", title="validation accuracy"
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


# Recipe columns a summary row may name, in this order, when they vary.
_ARM_FIELDS = (
    "model", "batch_size", "batch_schedule", "lr", "schedule", "optimizer",
    "momentum", "weight_decay", "weight_decay_mode", "warmup_epochs",
)  # fmt: skip


def _arms(members: dict) -> tuple[list[str], list[np.ndarray]]:
    """Members grouped into arms (equal in everything but the seed): a label
    naming the tags and recipe fields that vary across the sweep, and the
    member rows of each arm, in order of first appearance."""
    n = len(members["member"])
    tags = [
        k for k in members
        if k not in ("member", "group") and k in _tag_columns(members)
    ]  # fmt: skip
    keys = [k for k in (*tags, *_ARM_FIELDS) if k in members]
    varying = [k for k in keys if len({str(v) for v in members[k]}) > 1]
    order: dict[tuple, list[int]] = {}
    for i in range(n):
        order.setdefault(tuple(str(members[k][i]) for k in varying), []).append(i)
    labels = []
    for key in order:
        parts = [f"{k.replace('_', ' ')} {_short(v)}" for k, v in zip(varying, key)]
        labels.append(", ".join(parts) or "all members")
    return labels, [np.asarray(rows) for rows in order.values()]


def _tag_columns(members: dict) -> set[str]:
    """The tag columns of ``members.csv``: those between ``model`` and the
    recipe's ``batch_size``."""
    names = list(members)
    if "model" in names and "batch_size" in names:
        return set(names[names.index("model") + 1 : names.index("batch_size")])
    return set()


def _short(value: str) -> str:
    try:
        return f"{float(value):g}"
    except ValueError:
        return value


def summary(out: str) -> Figure:
    """One row per arm (members equal but for the seed), labelled by what
    varies across the sweep: the best validation accuracy and the final test
    accuracy (dots: seeds; bar: mean), and the clean train/validation gaps.
    The figure grows with the number of arms; diverged members are counted
    in the label, not plotted."""
    members, _ = load(out)
    labels, rows = _arms(members)
    diverged = members["diverged"].astype(str) == "True"
    seeds = max(len(r) for r in rows)
    height = max(3.0, 0.32 * len(labels) + 1.4)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, height), sharey=True,
                                   layout="constrained")  # fmt: skip
    y = np.arange(len(labels))[::-1]
    metrics = [("best_val_acc", "best validation accuracy", "tab:blue")]
    if "test_acc" in members and np.isfinite(members["test_acc"]).any():
        metrics.append(("test_acc", "test accuracy (final parameters)", "tab:red"))
    offsets = np.linspace(-0.18, 0.18, len(metrics))
    means = []
    for (col, name, color), dy in zip(metrics, offsets):
        for j, r in enumerate(rows):
            ok = r[~diverged[r] & np.isfinite(members[col][r])]
            if not len(ok):
                continue
            v = members[col][ok]
            means.append(v.mean())
            ax1.plot(v, np.full(len(v), y[j] + dy), "o", color=color, ms=3, alpha=0.5)
            ax1.plot([v.mean()], [y[j] + dy], "|", color=color, ms=11, mew=2.5,
                     label=name if j == 0 else None)  # fmt: skip
    if means:  # every arm's mean on the axis; a far-off seed may leave it
        lo, hi = min(means), max(means)
        pad = 0.15 * (hi - lo) + 0.01
        ax1.set_xlim(max(0.0, lo - pad), min(1.0, hi + pad))
    ax1.set(yticks=y, yticklabels=[
        label + (f"  ({int(diverged[r].sum())} diverged)" if diverged[r].any() else "")
        for label, r in zip(labels, rows)
    ], xlabel="accuracy")  # fmt: skip
    ax1.set_title(f"accuracy per arm (dots: {seeds} seed(s); tick: mean)")
    ax1.grid(alpha=0.3, axis="x")
    for col, name, color, dy in (("gap_loss", "val loss − train loss", "tab:purple",
                                  -0.15),
                                 ("gap_acc", "train acc − val acc", "tab:orange",
                                  0.15)):  # fmt: skip
        for j, r in enumerate(rows):
            ok = r[~diverged[r] & np.isfinite(members[col][r])]
            if len(ok):
                ax2.barh(y[j] + dy, members[col][ok].mean(), height=0.28,
                         color=color, label=name if j == 0 else None)  # fmt: skip
    ax2.axvline(0, color="k", lw=0.8)
    ax2.set(xlabel="gap (final parameters, eval mode)",
            title="overfitting gap (mean over seeds)")  # fmt: skip
    ax2.grid(alpha=0.3, axis="x")
    handles = [h for ax in (ax1, ax2) for h in ax.get_legend_handles_labels()[0]]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
               fontsize=8, frameon=False)  # fmt: skip
    return fig


def model_comparison(out: str, smooth: int = 20) -> Figure:
    """Models side by side: train loss (smoothed over ``smooth`` batches) and
    validation loss, validation accuracy, and the final train/val gap per model.

    Each member is one line; its label names the model (and LR and batch size
    when those vary).
    """
    members, history = load(out)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), layout="constrained")
    names = list(dict.fromkeys(members["model"]))
    colors = dict(zip(names, _colors(len(names))))
    vary = [c for c in ("lr", "batch_size", "seed") if len(set(members[c])) > 1]
    for i, member in enumerate(members["member"]):
        model = members["model"][i]
        label = model + "".join(f" {c}={members[c][i]:g}" for c in vary)
        steps, train = _member_series(history, member, "train_loss")
        trained = _smooth(train, smooth)
        axes[0].plot(steps[len(steps) - len(trained) :], trained, color=colors[model],
                     lw=0.8, label=f"{label} train")  # fmt: skip
        steps, val = _member_series(history, member, "val_loss")
        axes[0].plot(
            steps, val, color=colors[model], lw=2, ls="--", label=f"{label} val"
        )
        steps, acc = _member_series(history, member, "val_acc")
        axes[1].plot(steps, acc, color=colors[model], label=label)
    title = "train (smoothed, solid) and validation (dashed) loss"
    axes[0].set(xlabel="iteration", ylabel="loss", yscale="log", title=title)
    axes[1].set(xlabel="iteration", ylabel="validation accuracy",
                title="validation accuracy")  # fmt: skip
    x = np.arange(len(members["member"]))
    labels = [
        members["model"][i] + "".join(f"\n{c}={members[c][i]:g}" for c in vary)
        for i in range(len(x))
    ]
    width = 0.4
    axes[2].bar(
        x - width / 2, members["gap_loss"], width, label="val loss - train loss"
    )
    axes[2].bar(x + width / 2, members["gap_acc"], width, label="train acc - val acc")
    axes[2].axhline(0, color="k", lw=0.8)
    axes[2].set(xticks=x, title="overfitting gap (final epoch)")
    axes[2].set_xticklabels(labels, rotation=25, ha="right")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def save_all(out: str) -> list[str]:
    """Write the standard figures of a sweep into ``<out>/plots``; return paths."""
    plot_dir = os.path.join(out, "plots")
    os.makedirs(plot_dir, exist_ok=True)
    members, _ = load(out)
    names = list(dict.fromkeys(members["model"]))
    several = len(names) > 1
    figures = {}
    for model in names:
        for b in sorted(set(members["batch_size"][members["model"] == model])):
            name = f"loss_{model}_bs{int(b)}.png" if several else f"loss_bs{int(b)}.png"
            figures[name] = lambda b=b, m=model: loss_curves(
                out, b, m if several else None
            )
    if several:
        figures["model_comparison.png"] = lambda: model_comparison(out)
    figures["val_accuracy.png"] = lambda: accuracy_curves(out)
    figures["summary.png"] = lambda: summary(out)
    return save_figures(out, {name: lambda _, f=f: f() for name, f in figures.items()})


def save_figures(out: str, figures: dict) -> list[str]:
    """Save ``{file name: fn(out) -> Figure}`` into ``<out>/plots``; return paths."""
    plot_dir = os.path.join(out, "plots")
    os.makedirs(plot_dir, exist_ok=True)
    paths = []
    for name, make in figures.items():
        fig = make(out)
        path = os.path.join(plot_dir, name)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
