"""Figures of the regularization experiments: weight decay, fine-tuning and
early stopping (``experiments/weight_decay.py``, ``finetune.py``,
``early_stopping.py``).

Every function takes a results directory (for the fine-tuning and
early-stopping experiments: the experiment's directory, whose sub-directories
are its sweeps), builds its own figure and returns it. Numbers over seeds are
the mean with a 95% Student-t interval (:func:`~jaxbatch.plots.comparisons.seed_stats`).
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from jaxbatch import results
from jaxbatch.plots import load, train_images
from jaxbatch.plots.comparisons import seed_stats
from jaxbatch.stats import column_stats
from jaxbatch.stats import diverged as diverged_members

MODE_LABELS = {
    ("sgd", "l2"): "SGD + L2 (coupled)",
    ("sgd", "decoupled"): "SGDW (decoupled)",
    ("sgd", "l1"): "SGD + L1",
    ("adam", "l2"): "Adam + L2 (coupled)",
    ("adam", "decoupled"): "AdamW (decoupled)",
}
_METRICS = {
    "test_acc": "test accuracy",
    "best_test_acc": "test accuracy (best weights)",
}
MODE_COLORS = {"l2": "tab:blue", "decoupled": "tab:orange", "l1": "tab:green"}


def _pct(x) -> str:
    return f"{100 * x:.1f}"


def _n_seeds(members) -> int:
    return len(set(members["seed"]))


# --- weight decay -------------------------------------------------------------------


def _grid_cells(members: dict, opt: str, mode: str, metric: str = "test_acc"):
    """``{(lr, wd): values over seeds}`` of one (optimizer, mode) panel of the
    grid; ``weight_decay=0`` members (one per LR and seed) belong to both modes."""
    part = members.get("part", np.full(len(members["member"]), "grid")).astype(str)
    sel = (part == "grid") & (members["optimizer"] == opt)
    sel &= (members["weight_decay_mode"] == mode) | (members["weight_decay"] == 0)
    cells: dict = {}
    for lr, wd, v in zip(
        members["lr"][sel], members["weight_decay"][sel], members[metric][sel]
    ):
        cells.setdefault((float(lr), float(wd)), []).append(v)
    return cells


def _panels(members):
    """The (optimizer, mode) panels present, rows by optimizer."""
    opts = [o for o in ("sgd", "adam") if (members["optimizer"] == o).any()]
    return opts, ("l2", "decoupled")


def _log_positions(values):
    """log10 positions of sorted values; a 0 sits one grid step below the rest."""
    pos = np.log10([v for v in values if v > 0])
    step = np.median(np.diff(pos)) if len(pos) > 1 else 1.0
    zero = pos.min() - step if len(pos) else 0.0
    return {v: (np.log10(v) if v > 0 else zero) for v in values}, step


def _edges(centres):
    c = np.asarray(centres, float)
    mid = (c[1:] + c[:-1]) / 2
    first = c[0] - (mid[0] - c[0] if len(c) > 1 else 0.5)
    last = c[-1] + (c[-1] - mid[-1] if len(c) > 1 else 0.5)
    return np.concatenate([[first], mid, [last]])


def _tick(v: float) -> str:
    """``0``, ``10^k`` or ``m·10^k`` in mathtext."""
    if v == 0:
        return "0"
    e = int(np.floor(np.log10(v) + 1e-9))
    m = v / 10.0**e
    return f"$10^{{{e}}}$" if np.isclose(m, 1) else f"${m:.2g}{{\\cdot}}10^{{{e}}}$"


def _log_ticks(ax, axis, positions: dict):
    ticks = sorted(positions.items(), key=lambda kv: kv[1])
    getattr(ax, f"set_{axis}ticks")([p for _, p in ticks], [_tick(v) for v, _ in ticks])


def wd_heatmaps(out: str, metric: str = "test_acc", span: float = 0.1) -> Figure:
    """Mean test accuracy over seeds on the LR x weight-decay grid, one panel
    per (optimizer, mode); LR on x, weight decay on y (both log10), the lines
    LR/WD = 10^2 and 10^3 dashed, each panel's best cell boxed. Colours span
    ``span`` below the best cell of the figure (lower cells saturate); every
    cell is labelled with its mean in percent."""
    members, _ = load(out)
    opts, modes = _panels(members)
    fig, axes = plt.subplots(
        len(opts),
        len(modes),
        figsize=(11, 4.6 * len(opts)),
        layout="constrained",
        squeeze=False,
    )
    means = {
        (o, m): {
            k: seed_stats(v)[0] for k, v in _grid_cells(members, o, m, metric).items()
        }
        for o in opts
        for m in modes
    }
    top = np.nanmax([v for d in means.values() for v in d.values()])
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    image = None
    for r, opt in enumerate(opts):
        for c, mode in enumerate(modes):
            ax, cells = axes[r, c], means[(opt, mode)]
            lrs = sorted({lr for lr, _ in cells})
            wds = sorted({wd for _, wd in cells})
            xpos, _ = _log_positions(lrs)
            ypos, _ = _log_positions(wds)
            grid = np.full((len(wds), len(lrs)), np.nan)
            for (lr, wd), v in cells.items():
                grid[wds.index(wd), lrs.index(lr)] = v
            xe = _edges([xpos[v] for v in lrs])
            ye = _edges([ypos[v] for v in wds])
            image = ax.pcolormesh(
                xe, ye, np.ma.masked_invalid(grid), cmap=cmap, vmin=top - span, vmax=top
            )
            for (lr, wd), v in cells.items():
                dark = np.isfinite(v) and v < top - span / 2
                ax.text(
                    xpos[lr],
                    ypos[wd],
                    "div." if np.isnan(v) else _pct(v),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
            if np.isfinite(grid).any():
                i, j = np.unravel_index(np.nanargmax(grid), grid.shape)
                ax.add_patch(
                    plt.Rectangle(
                        (xe[j], ye[i]),
                        xe[j + 1] - xe[j],
                        ye[i + 1] - ye[i],
                        fill=False,
                        ec="red",
                        lw=2.5,
                    )
                )
            if 0.0 in wds:  # the no-decay row: a separator, no ratio lines below
                ax.axhline(ye[1], color="k", lw=1.2)
            x = np.linspace(xe[0], xe[-1], 50)
            for k, ls in ((2, "--"), (3, ":")):
                y = x - k
                keep = (y >= (ye[1] if 0.0 in wds else ye[0])) & (y <= ye[-1])
                if keep.sum() > 1:
                    ax.plot(
                        x[keep],
                        y[keep],
                        color="white",
                        lw=2,
                        ls=ls,
                        label=f"LR/WD = $10^{k}$",
                    )
            ax.set_xlim(xe[0], xe[-1])
            ax.set_ylim(ye[0], ye[-1])
            _log_ticks(ax, "x", xpos)
            _log_ticks(ax, "y", ypos)
            ax.set(
                xlabel="peak learning rate",
                ylabel="weight decay",
                title=MODE_LABELS[(opt, mode)],
            )
    lines = [plt.Line2D([], [], color="dimgrey", lw=2, ls=ls) for ls in ("--", ":")]
    fig.legend(
        lines,
        ["LR/WD = $10^2$", "LR/WD = $10^3$"],
        loc="outside lower center",
        ncol=2,
        fontsize=9,
    )
    fig.colorbar(
        image,
        ax=axes,
        label=f"{_METRICS.get(metric, metric)} (mean over {_n_seeds(members)} seeds)",
        shrink=0.8,
    )
    fig.suptitle(
        "Weight decay: coupled L2 vs decoupled, test accuracy in % "
        "(red box: best cell; bottom row: no decay)"
    )
    return fig


def wd_ratio(out: str, metric: str = "test_acc", drop: float = 0.12) -> Figure:
    """Test accuracy against LR/WD, one line per LR (mean over seeds, 95%
    t-interval), one panel per (optimizer, mode); the band 10^2..10^3 shaded,
    no decay as a dotted line per LR. The y axis shows ``drop`` below the best
    mean (worse points sit on the bottom edge, as open markers)."""
    members, _ = load(out)
    opts, modes = _panels(members)
    fig, axes = plt.subplots(
        len(opts),
        len(modes),
        figsize=(11, 4.2 * len(opts)),
        layout="constrained",
        squeeze=False,
    )
    for r, opt in enumerate(opts):
        cells_of = {m: _grid_cells(members, opt, m, metric) for m in modes}
        top = np.nanmax(
            [seed_stats(v)[0] for c in cells_of.values() for v in c.values()]
        )
        lo = top - drop
        for c, mode in enumerate(modes):
            ax, cells = axes[r, c], cells_of[mode]
            lrs = sorted({lr for lr, _ in cells})
            colors = plt.get_cmap("viridis")(np.linspace(0, 0.8, len(lrs)))
            ax.axvspan(
                1e2,
                1e3,
                color="tab:red",
                alpha=0.1,
                lw=0,
                label="LR/WD in $[10^2, 10^3]$",
            )
            for lr, color in zip(lrs, colors):
                wds = sorted(wd for l, wd in cells if l == lr and wd > 0)
                stat = np.array([seed_stats(cells[(lr, wd)])[:2] for wd in wds])
                ratio = lr / np.asarray(wds)
                y = np.clip(stat[:, 0], lo, None)
                ax.errorbar(
                    ratio,
                    y,
                    yerr=np.nan_to_num(stat[:, 1]),
                    color=color,
                    marker="o",
                    ms=4,
                    capsize=2,
                    label=f"LR {lr:g}",
                )
                off = stat[:, 0] < lo
                ax.plot(ratio[off], y[off], "o", mfc="white", mec=color, ms=7)
                if (lr, 0.0) in cells:
                    ax.axhline(
                        max(seed_stats(cells[(lr, 0.0)])[0], lo),
                        color=color,
                        ls=":",
                        lw=1.2,
                    )
            ax.set_xscale("log")
            ax.set_ylim(lo - 0.005, top + 0.01)
            ax.set(
                xlabel="LR / weight decay",
                ylabel=_METRICS.get(metric, metric),
                title=MODE_LABELS[(opt, mode)],
            )
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.suptitle(
        f"Does the best weight decay sit 2-3 decades below the LR? (mean "
        f"of {_n_seeds(members)} seeds, 95% interval; dotted: no decay; "
        "open markers: below the axis)",
        fontsize=10,
    )
    return fig


def _weights(out: str, member: int, which: str = "final") -> dict[str, np.ndarray]:
    """``{"Dense_0/kernel": array, ...}`` of a member's saved parameters."""
    flat = {}

    def walk(tree, prefix):
        for k, v in tree.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}/")
            else:
                flat[prefix + k] = np.asarray(v)

    walk(results.load_params(out, int(member), which)["params"], "")
    return flat


def near_zero_fraction(out: str, member: int, threshold: float = 1e-3) -> float:
    """Fraction of a member's final weights (kernels) with ``|w| < threshold``."""
    ws = [w for k, w in _weights(out, member).items() if k.endswith("kernel")]
    return float(
        sum((np.abs(w) < threshold).sum() for w in ws) / sum(w.size for w in ws)
    )


def weight_norm(out: str, member: int) -> float:
    """Euclidean norm of all of a member's final parameters."""
    return float(
        np.sqrt(
            sum(
                (w.astype(np.float64) ** 2).sum()
                for w in _weights(out, member).values()
            )
        )
    )


def _by_mode_and_wd(members, sel, value_of):
    """``{mode: {wd: [values over seeds]}}``; no decay filed under mode "none"."""
    out: dict = {}
    for i in np.flatnonzero(sel):
        wd = float(members["weight_decay"][i])
        mode = "none" if wd == 0 else str(members["weight_decay_mode"][i])
        out.setdefault(mode, {}).setdefault(wd, []).append(value_of(i))
    return out


def wd_sparsity(out: str, threshold: float = 1e-3) -> Figure:
    """Fraction of near-zero final weights (``|w| < threshold``) against test
    accuracy for L1, L2 and decoupled decay under SGD at the L1 members' LR;
    mean over seeds with 95% intervals in both directions, each point labelled
    with its weight decay."""
    members, _ = load(out)
    part = members.get("part", np.full(len(members["member"]), "")).astype(str)
    l1 = part == "l1"
    lr = float(members["lr"][l1][0]) if l1.any() else float(np.median(members["lr"]))
    sel = (members["optimizer"] == "sgd") & np.isclose(members["lr"], lr)
    ids = members["member"]
    frac = _by_mode_and_wd(
        members, sel, lambda i: near_zero_fraction(out, ids[i], threshold)
    )
    acc = _by_mode_and_wd(members, sel, lambda i: members["test_acc"][i])
    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    labelled: list = []  # label positions (log10 x, y), to skip crowded ones
    for mode in ("l2", "decoupled", "l1", "none"):
        if mode not in frac:
            continue
        wds = sorted(frac[mode])
        xs = np.array([seed_stats(frac[mode][w])[:2] for w in wds])
        ys = np.array([seed_stats(acc[mode][w])[:2] for w in wds])
        none = mode == "none"
        color = MODE_COLORS.get(mode, "black")
        label = "no decay" if none else MODE_LABELS[("sgd", mode)]
        ax.errorbar(
            xs[:, 0],
            ys[:, 0],
            xerr=np.nan_to_num(xs[:, 1]),
            yerr=np.nan_to_num(ys[:, 1]),
            color=color,
            marker="*" if none else "o",
            ms=12 if none else 6,
            capsize=3,
            label=label,
            zorder=3 if none else 2,
        )
        for (x, _), (y, _), w in zip(xs, ys, wds):
            near = any(
                abs(np.log10(x) - lx) < 0.12 and abs(y - ly) < 0.002
                for lx, ly in labelled
            )
            if w > 0 and not near:
                labelled.append((np.log10(x), y))
                ax.annotate(
                    f"wd {w:g}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(6, -12 if mode == "l2" else 5),
                    fontsize=8,
                    color=color,
                )
    ax.set_xscale("log")
    ax.set(
        xlabel=f"fraction of final weights with |w| < {threshold:g}",
        ylabel="test accuracy",
        title=f"L1 vs L2: sparsity and accuracy (SGD, LR {lr:g}, mean of "
        f"{_n_seeds(members)} seeds, 95% interval)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return fig


def wd_norms(out: str) -> Figure:
    """Final weight norm against weight decay per mode, one panel per
    optimizer at one LR (SGD: the L1 members' LR; Adam: its best LR without
    decay); no decay at the left edge. Mean over seeds, 95% interval."""
    members, _ = load(out)
    part = members.get("part", np.full(len(members["member"]), "")).astype(str)
    opts, _ = _panels(members)
    fig, axes = plt.subplots(
        1,
        len(opts),
        figsize=(5.5 * len(opts), 4.3),
        layout="constrained",
        squeeze=False,
    )
    ids = members["member"]
    for ax, opt in zip(axes[0], opts):
        is_opt = members["optimizer"] == opt
        l1 = (part == "l1") & is_opt
        if l1.any():
            lr = float(members["lr"][l1][0])
        else:
            none = is_opt & (members["weight_decay"] == 0)
            lrs = sorted(set(members["lr"][none]))
            lr = max(
                lrs,
                key=lambda v: seed_stats(
                    members["test_acc"][none & (members["lr"] == v)]
                )[0],
            )
        sel = is_opt & np.isclose(members["lr"], lr)
        norms = _by_mode_and_wd(members, sel, lambda i: weight_norm(out, ids[i]))
        positive = sorted({w for d in norms.values() for w in d if w > 0})
        zero_x = positive[0] / 10 if positive else 1e-6
        base = seed_stats(norms["none"][0.0]) if "none" in norms else None
        for mode, d in norms.items():
            if mode == "none":
                continue
            wds = sorted(d)
            s = np.array([seed_stats(d[w])[:2] for w in wds])
            xs, ys, es = list(wds), list(s[:, 0]), list(np.nan_to_num(s[:, 1]))
            if base:
                xs, ys, es = (
                    [zero_x, *xs],
                    [base[0], *ys],
                    [np.nan_to_num(base[1]), *es],
                )
            ax.errorbar(
                xs,
                ys,
                yerr=es,
                marker="o",
                capsize=3,
                color=MODE_COLORS[mode],
                label=MODE_LABELS[(opt, mode)],
            )
        ticks = [zero_x, *positive]
        ax.set_xscale("log")
        ax.set_xticks(
            ticks, ["0"] + [f"$10^{{{int(round(np.log10(w)))}}}$" for w in positive]
        )
        ax.minorticks_off()
        ax.set(
            xlabel="weight decay",
            ylabel="final weight norm $\\|w\\|_2$",
            title=f"{opt.upper() if opt == 'sgd' else 'Adam'}, LR {lr:g}",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle(f"Final weight norm (mean of {_n_seeds(members)} seeds, 95% interval)")
    return fig


# --- arms over seeds ------------------------------------------------------------------


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


def _band(ax, x, values, color, label, min_n: int = 3, **kw):
    """Mean over seeds with a 95% t-interval band (where ``min_n`` or more
    seeds have a value: two give an interval too wide to read)."""
    mean, half, n = column_stats(values)
    ax.plot(x, mean, color=color, label=label, **kw)
    half = np.where(n >= min_n, half, np.nan)
    ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.18, lw=0)


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
            f"{_pct(mean)} ± {_pct(np.nan_to_num(half))}",
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


def _colors(names) -> dict:
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


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
    colors = _colors(curves)
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(14, 5.2), layout="constrained", width_ratios=(1.25, 1)
    )
    end = max(x[-1] for x, _ in curves.values())
    for k, (arm, (x, values)) in enumerate(curves.items()):
        scratch = arm.startswith("from scratch")
        if values.size:
            _band(ax, x, values, colors[arm], arm, ls="--" if scratch else "-")
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
        note = f"; pretrained on the other classes to {_pct(acc)}% test accuracy"
    data = results.read_json(os.path.join(runs[0], "config.json"))["data"]
    fig.suptitle(
        f"Fine-tuning on {data['n_train']} images of {data['num_classes']}"
        f" new classes ({data['name']}){note}"
    )
    return fig


# --- early stopping -------------------------------------------------------------------


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
    colors = _colors(dirs)
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
                _pct(mean),
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
