"""Figures no facet expresses: the LR range test's two forms, the critical
batch size's fit, and the experiments of several sweeps (fine-tuning against
training from scratch, the arms of early stopping).

Every function takes the experiment's results directory (whose
sub-directories are its sweeps, where it has several), builds its own figure
and returns it; numbers over seeds are the mean with a 95% Student-t
interval.
"""

from __future__ import annotations

import math
import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from jaxbatch import lr_range, results
from jaxbatch.plots.style import arm_colors, draw_band, load, pct, train_images
from jaxbatch.stats import diverged as diverged_members
from jaxbatch.stats import seed_stats


def _chance_loss(run: str) -> float:
    meta = results.read_json(os.path.join(run, "config.json"))
    return math.log(meta["data"]["num_classes"])


def lr_range_test(out: str) -> Figure:
    """Loss against LR for both forms of the range test.

    Classic (one line per seed): the training loss of the rising-LR run
    against the LR of each step, raw (faint) and smoothed as the suggestion
    rule smooths it (bold; ``lr_range.smooth``), each seed's minimum a dot.
    Grid (dots with 95% whiskers): each fixed-LR member's final training loss,
    mean over seeds. Vertical lines: each form's suggested LR (dashed),
    crosses: where each diverges.
    """
    summary = results.read_json(os.path.join(out, "lr_range.json"))
    chance = _chance_loss(os.path.join(out, "grid"))
    fig, ax = plt.subplots(figsize=(9, 4.8), layout="constrained")
    c_classic, c_grid = "tab:blue", "tab:orange"
    curves = lr_range.classic_curves(os.path.join(out, "range"))
    low = summary["classic"]["min_loss_lr"]  # the median over seeds
    for j, c in enumerate(curves):
        s = lr_range.smooth(c["loss"])
        window = lr_range.smoothing_window(len(c["loss"]))
        first = j == 0
        ax.plot(c["lr"], c["loss"], color=c_classic, lw=0.7, alpha=0.3,
                label="classic: one run, LR rising: raw loss per step"
                if first else None)  # fmt: skip
        ax.plot(c["lr"], s, color=c_classic, lw=2.2,
                label=f"classic: smoothed (centred mean of {window} steps)"
                if first else None)  # fmt: skip
        ax.plot(c["min_loss_lr"], c["min_smoothed_loss"], "o", color=c_classic,
                ms=6, mec="white", zorder=5,
                label=f"classic: loss minimum (median {low:.2g})"
                if first else None)  # fmt: skip
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


# --- several sweeps of one experiment ------------------------------------------


def _eval_curves(run: str, key: str, metric: str = "val_acc") -> dict:
    """``{arm: (epochs [E], values [seeds, E])}`` of ``metric`` at the
    evaluations, per value of the tag ``key``, without diverged members; a
    stopped member's values end (NaN) where it stopped."""
    members, history = load(run)
    n_train = results.read_json(os.path.join(run, "config.json"))["data"]["n_train"]
    out: dict = {}
    for arm in dict.fromkeys(members[key].astype(str)):
        sel = (members[key].astype(str) == arm) & ~diverged_members(members)
        ids = members["member"][sel]
        rows = np.isin(history["member"], ids) & np.isfinite(history[metric])
        steps = np.unique(history["step"][rows])
        values = np.full((len(ids), len(steps)), np.nan)
        for i, m in enumerate(ids):
            r = (history["member"] == m) & np.isfinite(history[metric])
            values[i, np.searchsorted(steps, history["step"][r])] = history[metric][r]
        seen = {s: e for s, e in zip(history["step"], history["examples_seen"])}
        out[arm] = (np.array([seen[s] for s in steps]) / n_train, values)
    return out


def _final_dots(ax, arms: dict, colors: dict, metric_label: str):
    """Every seed's value (dots) and the mean with its 95% interval per arm,
    arms on the y axis (best on top)."""
    order = sorted(arms, key=lambda a: seed_stats(arms[a])[0])
    for y, arm in enumerate(order):
        v = np.asarray(arms[arm], float)
        mean, half, n = seed_stats(v)
        jitter = np.linspace(-0.15, 0.15, len(v)) if len(v) > 1 else [0.0]
        ax.plot(v, y + np.asarray(jitter), "o", color=colors[arm], alpha=0.5, ms=4)
        ax.errorbar(
            mean,
            y,
            xerr=np.nan_to_num(half),
            fmt="D",
            color=colors[arm],
            mec="black",
            ms=7,
            capsize=4,
            zorder=3,
        )
        ax.annotate(
            f"{pct(mean)} ± {pct(np.nan_to_num(half))}",
            (mean, y),
            textcoords="offset points",
            xytext=(0, 9),
            ha="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xlabel(metric_label)
    ax.grid(alpha=0.3, axis="x")


def finetune_curves(out: str) -> Figure:
    """Fine-tuning recipes (tag ``recipe``) of ``<out>/finetune`` and, where
    present, training from scratch (``<out>/scratch``): validation accuracy
    against epochs (mean over seeds, 95% band) with each recipe's final test
    accuracy (diamond, 95% interval) right of the curves, and every seed's
    test accuracy per recipe."""
    runs = [
        os.path.join(out, s)
        for s in ("finetune", "scratch")
        if os.path.isfile(os.path.join(out, s, "history.csv"))
    ]
    curves, tests = {}, {}
    for run in runs:
        members, _ = load(run)
        diverged = diverged_members(members)
        for arm, curve in _eval_curves(run, "recipe").items():
            sel = members["recipe"].astype(str) == arm
            gone = int(diverged[sel].sum())
            name = arm + (f" ({gone}/{sel.sum()} diverged)" if gone else "")
            curves[name] = curve
            tests[name] = members["test_acc"][sel & ~diverged]
    colors = arm_colors(curves)
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(14, 5.2), layout="constrained", width_ratios=(1.25, 1)
    )
    end = max(x[-1] for x, _ in curves.values())
    for k, (arm, (x, values)) in enumerate(curves.items()):
        scratch = arm.startswith("from scratch")
        if values.size:
            draw_band(
                ax, x, values, colors[arm], label=arm, ls="--" if scratch else "-"
            )
        mean, half, _ = seed_stats(tests[arm])
        ax.errorbar(
            end * (1.03 + 0.012 * k),
            mean,
            yerr=np.nan_to_num(half),
            fmt="D",
            color=colors[arm],
            mec="black",
            ms=6,
            capsize=3,
        )
    ax.axvline(end * 1.015, color="grey", lw=0.8)
    ax.set_ylim(max(0.0, ax.get_ylim()[0]), min(1.0, ax.get_ylim()[1]))
    ax.text(end * 1.03, ax.get_ylim()[1], "test", fontsize=8, va="top")
    ax.set(
        xlabel="fine-tuning epoch",
        ylabel="accuracy",
        title="validation accuracy (curves, mean and 95% band), test (diamonds)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _final_dots(ax2, tests, colors, "test accuracy (final weights)")
    ax2.set_title("test accuracy: seeds (dots), mean ± 95% interval")
    pre = os.path.join(out, "pretrain", "members.csv")
    note = ""
    if os.path.isfile(pre):
        acc = results.read_csv(pre)["test_acc"][0]
        note = f"; pretrained on the other classes to {pct(acc)}% test accuracy"
    data = results.read_json(os.path.join(runs[0], "config.json"))["data"]
    fig.suptitle(
        f"Fine-tuning on {data['n_train']} images of {data['num_classes']}"
        f" new classes ({data['name']}){note}"
    )
    return fig


def _arm_label(name: str) -> str:
    """``patience_10_val_acc`` -> ``patience 10 (val acc)``, and so on."""
    if name == "no_stop":
        return "to the end"
    if name == "plateau":
        return "LR x0.5 on plateau,\nstop at 1/1024"
    head, _, metric = name.partition("_val_")
    label = head.replace("_", " ")
    return label + (f"\n(val {metric})" if metric else "")


def _arm_dirs(out: str) -> list[str]:
    """The arms' results directories, in the order they ran."""
    dirs = [
        d
        for d in os.listdir(out)
        if os.path.isfile(os.path.join(out, d, "history.csv"))
    ]
    return sorted(
        dirs, key=lambda d: os.path.getmtime(os.path.join(out, d, "config.json"))
    )


def _epoch_of(history, member: int, steps) -> np.ndarray:
    """Epochs (examples seen / training images) after each of ``steps``."""
    rows = history["member"] == member
    seen = dict(zip(history["step"][rows], history["examples_seen"][rows]))
    return np.array([seen.get(s, np.nan) for s in np.atleast_1d(steps)], float)


def early_stopping(out: str, seed: int | None = None) -> Figure:
    """The arms of ``experiments/early_stopping.py`` (sub-directories of
    ``out``): (left) test accuracy of the final and of the kept best weights
    per arm, every seed joined by a line, means with 95% intervals, and the
    mean epochs trained; (middle) validation loss of one seed (default: the
    smallest) per arm with its stop (X) and best (star) points; (right) the
    plateau arm's LR per seed."""
    dirs = _arm_dirs(out)
    data = {d: load(os.path.join(out, d)) for d in dirs}
    n_train = {d: train_images(os.path.join(out, d)) for d in dirs}
    colors = arm_colors(dirs)
    fig, axes = plt.subplots(
        1, 3, figsize=(19, 5.6), layout="constrained", width_ratios=(1.5, 1.1, 0.8)
    )
    ax = axes[0]
    for k, d in enumerate(dirs):
        members, history = data[d]
        final, best = members["test_acc"], members["best_test_acc"]
        for f, b in zip(final, best):
            ax.plot([k - 0.15, k + 0.15], [f, b], color=colors[d], alpha=0.35, lw=1)
        for x, v, what in ((k - 0.15, final, "final"), (k + 0.15, best, "best")):
            mean, half, _ = seed_stats(v)
            star = what == "best"
            ax.errorbar(
                x,
                mean,
                yerr=np.nan_to_num(half),
                fmt="*" if star else "o",
                ms=12 if star else 8,
                color=colors[d],
                mec="black",
                capsize=4,
                zorder=3,
                label=f"{what} weights" if k == 0 else None,
            )
            ax.annotate(
                pct(mean),
                (x, mean),
                textcoords="offset points",
                xytext=(8, -3) if star else (-26, -3),
                fontsize=8,
            )
        epochs = [
            _epoch_of(history, m, s)[0] / n_train[d]
            for m, s in zip(members["member"], members["steps"])
        ]
        e_mean, e_half, _ = seed_stats(epochs)
        ax.annotate(
            f"{e_mean:.0f} ± {np.nan_to_num(e_half):.0f} epochs",
            (k, 0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    ax.set_xticks(range(len(dirs)), [_arm_label(d) for d in dirs], fontsize=8)
    ax.set_xlim(-0.6, len(dirs) - 0.4)
    ax.set(
        ylabel="test accuracy",
        title="test accuracy: final (o) vs kept best (*) weights",
    )
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo - 0.07 * (hi - lo), hi + 0.08 * (hi - lo))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper center", ncol=2)

    ax = axes[1]
    for d in dirs:
        members, history = data[d]
        s0 = members["seed"].min() if seed is None else seed
        pick = np.flatnonzero(members["seed"] == s0)[0]
        m = int(members["member"][pick])
        rows = (history["member"] == m) & np.isfinite(history["val_loss"])
        steps = history["step"][rows]
        ep, loss = (
            history["examples_seen"][rows] / n_train[d],
            history["val_loss"][rows],
        )
        main = d == "no_stop"
        ax.plot(
            ep,
            loss,
            color=colors[d],
            lw=2.8 if main else 1.3,
            label=_arm_label(d).replace("\n", " "),
            zorder=1 if main else 2,
        )
        for step, mk, ms in (
            (members["steps"][pick], "X", 10),
            (members["best_val_step"][pick], "*", 15),
        ):
            at = steps == step
            ax.plot(ep[at], loss[at], mk, color=colors[d], mec="black", ms=ms, zorder=4)
    ax.plot([], [], "X", color="grey", mec="black", ms=9, label="stop (last update)")
    ax.plot([], [], "*", color="grey", mec="black", ms=13, label="best (kept weights)")
    ax.set(
        xlabel="epoch",
        ylabel="validation loss (cross-entropy)",
        title=f"validation loss, seed {s0:g} (stop and best points)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)

    ax = axes[2]
    if "plateau" in data:
        members, history = data["plateau"]
        for m, s in zip(members["member"], members["seed"]):
            rows = (history["member"] == m) & np.isfinite(history["lr"])
            ep = history["examples_seen"][rows] / n_train["plateau"]
            ax.plot(ep, history["lr"][rows], lw=1.2, label=f"seed {s:g}")
        ax.set(
            xlabel="epoch",
            ylabel="learning rate",
            yscale="log",
            title="plateau arm: LR per seed (ends at the stop)",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    else:
        ax.set_axis_off()
    n_seeds = len(data[dirs[0]][0]["seed"])
    fig.suptitle(
        f"Early stopping on {n_train[dirs[0]]} training images (mean of "
        f"{n_seeds} seeds, 95% intervals)"
    )
    return fig
