"""The standard figures of a sweep, chosen from what varies in it.

Every function takes a results directory, builds its own figure and returns
it; :func:`save_all` writes the standard set into ``<out>/plots``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from jaxbatch import stats
from jaxbatch.plots.heatmap import grid_fields, heatmap
from jaxbatch.plots.style import (
    MAX_LEGEND,
    MIN_BAND,
    STYLE_CYCLE,
    Colors,
    clip_to,
    draw_band,
    load,
    mark_diverged,
    panel_grid,
    save_figures,
    smooth_rows,
    train_images,
)  # fmt: skip


def _split_fields(varying: list[str], prefer=("lr",)) -> tuple[str | None, list]:
    """The field that colours a figure (``prefer`` first) and the rest."""
    if not varying:
        return None, []
    colour = next((f for f in prefer if f in varying), varying[0])
    return colour, [f for f in varying if f != colour]


def _rows_by_member(history: dict) -> dict[int, np.ndarray]:
    members, inverse = np.unique(history["member"], return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse))
    return {int(m): order[b - c : b] for m, b, c in
            zip(members, bounds, np.bincount(inverse))}  # fmt: skip


def _diverged_at(history, rows_of, member: int, x_column: str, scale: float = 1.0):
    rows = rows_of[member]
    finite = np.flatnonzero(np.isfinite(history["train_loss"][rows]))
    last = rows[finite[-1]] if len(finite) else rows[0]
    return float(history[x_column][last]) / scale


def _series(history, rows_of, ids, column: str, x_column: str, eval_only: bool):
    """[seeds, steps] values of ``column`` for members ``ids`` on a shared x
    (the longest member's ``x_column``); evaluations only when ``eval_only``."""
    xs, ys = None, []
    for m in ids:
        rows = rows_of[int(m)]
        if eval_only:
            rows = rows[np.isfinite(history["val_loss"][rows]) |
                        np.isfinite(history["val_acc"][rows])]  # fmt: skip
        ys.append(history[column][rows])
        if xs is None or len(rows) > len(xs):
            xs = history[x_column][rows]
    out = np.full((len(ys), len(xs)), np.nan)
    for i, y in enumerate(ys):
        out[i, : len(y)] = y
    return np.asarray(xs, float), out


def _selection(members, batch_size=None, model=None) -> np.ndarray:
    sel = np.ones(len(members["member"]), bool)
    if batch_size is not None:
        sel &= members["batch_size"] == batch_size
    if model is not None:
        sel &= members["model"].astype(str) == model
    return np.flatnonzero(sel)


def _seed_text(arm_list, band: bool = True) -> str:
    n = max(len(r) for _, r in arm_list)
    if n == 1:
        return "one seed"
    return f"mean of {n} seeds" + (
        ", band: 95% t-interval" if band and n >= MIN_BAND else ""
    )


def _panels(members, rows, colour_field, rest):
    """``[(panel title, [(colour value, member rows)])]``: one panel per value
    of the ``rest`` fields, one arm per colour value within it."""
    out: dict[str, list] = {}
    for values, r in stats.arms(members, rows, fields=[*rest, colour_field]
                                if colour_field else rest):  # fmt: skip
        title = stats.label({k: values[k] for k in rest}) if rest else ""
        colour = values.get(colour_field) if colour_field else None
        out.setdefault(title, []).append((colour, r))
    return list(out.items())


def _finish_colours(fig, axes, colors: Colors | None, extra=()):
    """The colour key (a legend right of the panels, or a colorbar) and the
    ``extra`` legend handles (line styles) below them."""
    if colors is not None and colors.continuous:
        colors.colorbar(fig, axes)
    elif colors is not None:
        fig.legend(handles=colors.legend_handles(lw=2), loc="outside right upper",
                   fontsize=8, frameon=False)  # fmt: skip
    if extra:
        fig.legend(handles=list(extra), loc="outside lower center", ncols=len(extra),
                   fontsize=8, frameon=False)  # fmt: skip


def loss_curves(out: str, batch_size: int, model: str | None = None,
                smooth: int | None = None) -> Figure:  # fmt: skip
    """Training loss per batch (thin, a moving average) and validation loss
    (thick, at the evaluations) against iterations, for one batch size (and
    ``model``): the mean over each arm's seeds with a 95% band, one colour
    per learning rate (a colorbar past six), one panel per value of any
    other field that varies. Diverged members are not drawn: an x at the top
    marks where each one stopped, and the axis spans the healthy members."""
    members, history = load(out)
    rows = _selection(members, batch_size, model)
    rows_of = _rows_by_member(history)
    gone = stats.diverged(members)
    colour_field, rest = _split_fields(stats.varying_fields(members, rows))
    panels = _panels(members, rows, colour_field, rest)
    colors = Colors(colour_field, members[colour_field][rows]) if colour_field else None
    fig, axes = panel_grid(len(panels), width=6.0 if len(panels) == 1 else 4.6)
    band = not (colors and (colors.continuous or len(colors.values) > 10))
    steps = max(len(rows_of[int(m)]) for m in members["member"][rows])
    window = smooth or max(1, steps // 60)
    healthy = []  # every panel's curves: the panels share the y axis
    for ax, (title, arm_list) in zip(axes, panels):
        n_gone = 0
        for colour, r in arm_list:
            c = colors(colour) if colors else "tab:blue"
            ok, bad = r[~gone[r]], r[gone[r]]
            n_gone += len(bad)
            ids = members["member"][ok]
            if len(ids):
                x, ys = _series(history, rows_of, ids, "train_loss", "step", False)
                healthy.append(draw_band(ax, x, smooth_rows(ys, window), c, lw=0.8,
                                     alpha=0.9, band=False))  # fmt: skip
                x, ys = _series(history, rows_of, ids, "val_loss", "step", True)
                healthy.append(draw_band(ax, x, ys, c, lw=2.2, marker="o", ms=2.5,
                                     band=band))  # fmt: skip
            mark_diverged(ax, [_diverged_at(history, rows_of, int(m), "step")
                                for m in members["member"][bad]], c)  # fmt: skip
        ax.set_yscale("log")
        note = f"{n_gone} diverged (x, not drawn)" if n_gone else ""
        ax.set_title("\n".join(t for t in (title, note) if t), fontsize=9)
        ax.set_xlabel("iteration (parameter updates)")
        ax.grid(alpha=0.3, which="both")
    clip_to(axes[0], healthy, log=True)
    axes[0].set_ylabel("cross-entropy loss")
    name = f"{model}, batch size" if model else "batch size"
    fig.suptitle(f"{name} {batch_size:g}: training vs validation loss "
                 f"({_seed_text(stats.arms(members, rows), band)})",
                 fontsize=10)  # fmt: skip
    styles = [
        plt.Line2D([], [], color="0.3", lw=0.8,
                   label=f"train (per batch, mean of {window})"),
        plt.Line2D([], [], color="0.3", lw=2.2, marker="o", ms=2.5,
                   label="validation"),
    ]  # fmt: skip
    _finish_colours(fig, axes, colors, styles)
    return fig


def accuracy_curves(out: str) -> Figure:
    """Validation accuracy against epochs (so that batch sizes compare at
    equal examples seen): one panel per batch size (and model, and any other
    field that varies besides the LR), one colour per LR (a colorbar past
    six), the mean over seeds with a 95% band; diverged members marked."""
    members, history = load(out)
    rows_of = _rows_by_member(history)
    gone = stats.diverged(members)
    n_train = train_images(out)
    varying = stats.varying_fields(members)
    colour_field, rest = _split_fields(varying)
    panels = _panels(members, np.arange(len(members["member"])), colour_field, rest)
    colors = Colors(colour_field, members[colour_field]) if colour_field else None
    fig, axes = panel_grid(len(panels), width=6.0 if len(panels) == 1 else 4.6)
    band = not (colors and (colors.continuous or len(colors.values) > 10))
    shown = []
    for ax, (title, arm_list) in zip(axes, panels):
        drawn = []
        for colour, r in arm_list:
            c = colors(colour) if colors else "tab:blue"
            ok, bad = r[~gone[r]], r[gone[r]]
            if len(ok):
                x, ys = _series(history, rows_of, members["member"][ok], "val_acc",
                                "examples_seen", True)  # fmt: skip
                drawn.append(draw_band(ax, x / n_train, ys, c, lw=1.6, band=band))
            mark_diverged(ax, [
                _diverged_at(history, rows_of, int(m), "examples_seen", n_train)
                for m in members["member"][bad]], c)  # fmt: skip
        shown += drawn
        n_gone = int(sum(gone[r].sum() for _, r in arm_list))
        note = f"{n_gone} diverged (x)" if n_gone else ""
        ax.set_title("\n".join(t for t in (title, note) if t), fontsize=9)
        ax.set_xlabel("epochs (examples seen / training set)")
        ax.grid(alpha=0.3)
    if shown:  # the upper part, where the curves differ (the panels share y)
        v = np.concatenate(shown)
        clip_to(axes[0], [v[v >= np.quantile(v, 0.1)]], bounds=(0.0, 1.0))
    axes[0].set_ylabel("validation accuracy")
    fig.suptitle(f"validation accuracy ({_seed_text(stats.arms(members), band)})",
                 fontsize=10)  # fmt: skip
    _finish_colours(fig, axes, colors)
    return fig


def _numeric_varying(members) -> list[str]:
    return [f for f in stats.varying_fields(members)
            if f in members and members[f].dtype.kind == "f"]  # fmt: skip


def _result_column(members) -> tuple[str, str]:
    col = stats.accuracy_column(members)
    return col, _RESULT_LABELS[col]


_RESULT_LABELS = {
    "test_acc": "test accuracy (final parameters)",
    "val_acc_at_best_loss": "validation accuracy at the lowest validation loss",
}


def line_fields(members, x: str, rows=None) -> list[str]:
    """The fields whose values tell apart the lines of a figure against
    ``x``: the varying fields but ``x``, less any that ``x`` and the others
    determine (an LR set by a scaling rule from the batch size: one line per
    rule, not per LR)."""
    keep = [f for f in stats.varying_fields(members, rows) if f != x]
    for f in reversed(list(keep)):
        others = [g for g in keep if g != f]
        cells = stats.arms(members, rows, fields=[x, *others])
        if not any(stats._varies(members, f, r) for _, r in cells):
            keep.remove(f)
    return keep


def _spans(members, x: str) -> bool:
    """Whether some line of the figure against ``x`` has two or more x values."""
    return any(
        stats._varies(members, x, r)
        for _, r in stats.arms(members, fields=line_fields(members, x))
    )


def accuracy_vs(out: str, field: str | None = None) -> Figure:
    """Final accuracy against one hyperparameter (``field``, default the
    batch size, else the LR): one line per value of the other varying fields
    (:func:`line_fields`: per LR, or per scaling rule where the rule sets the
    LR), the mean over seeds with 95% whiskers, every seed a faint dot; arms
    whose every seed diverged are an x on the bottom edge. Lines never share
    a colour: a legend up to six numeric values, a colorbar past them."""
    members, _ = load(out)
    numeric = _numeric_varying(members)
    field = field or next((f for f in ("batch_size", "lr") if f in numeric),
                          numeric[0] if numeric else None)  # fmt: skip
    if field is None:
        raise ValueError("accuracy_vs needs a numeric field that varies")
    col, ylabel = _result_column(members)
    gone = stats.diverged(members)
    rest = line_fields(members, field)
    lines = stats.arms(members, fields=rest)
    if len(rest) == 1:  # one field: its values (a colorbar past six numbers)
        colors = Colors(rest[0], members[rest[0]])
        colour_of = lambda values: colors(values[rest[0]])  # noqa: E731
    else:  # several: one colour per line, never repeated
        colors = Colors("line", [stats.label(v) for v, _ in lines])
        colour_of = lambda values: colors(stats.label(values))  # noqa: E731
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    xs_all = np.asarray(members[field], float)
    log = xs_all.min() > 0 and xs_all.max() / xs_all.min() >= 10
    handles, drawn = [], []
    uniq = sorted(set(xs_all))
    # Lines side by side at each x (a few % of the spacing), so whiskers and
    # dots of different lines do not overlap.
    spacing = np.diff(np.log(uniq) if log else uniq).min() if len(uniq) > 1 else 1
    shift = 0.12 * spacing / max(1, len(lines))
    for j, (values, r) in enumerate(lines):
        c = colour_of(values)
        pts = []
        dodge = (j - (len(lines) - 1) / 2) * shift if len(lines) <= 8 else 0.0
        for _, cell in stats.arms(members, r, fields=[field]):
            x = float(members[field][cell[0]])
            x = x * np.exp(dodge) if log else x + dodge
            ok = cell[~gone[cell]]
            mean, half, n = stats.seed_stats(members[col][ok])
            if n == 0:
                ax.plot([x], [0.0], "x", color=c, ms=8, mew=2, clip_on=False,
                        transform=ax.get_xaxis_transform())  # fmt: skip
                continue
            pts.append((x, mean, half))
            drawn += [members[col][ok], [mean - np.nan_to_num(half),
                                         mean + np.nan_to_num(half)]]  # fmt: skip
            ax.scatter(np.full(len(ok), x), members[col][ok], s=10, color=c,
                       alpha=0.35, lw=0)  # fmt: skip
        if pts:
            p = np.array(sorted(pts))
            ax.errorbar(p[:, 0], p[:, 1], yerr=np.nan_to_num(p[:, 2]), color=c,
                        marker="o", ms=4, capsize=3, lw=1.5)  # fmt: skip
            if rest and not colors.continuous:
                handles.append(plt.Line2D([], [], color=c, marker="o",
                                          label=stats.label(values)))  # fmt: skip
    if log:
        ax.set_xscale("log")
    if drawn:  # every healthy seed and whisker in view
        clip_to(ax, drawn, bounds=(0.0, 1.0))
    if field == "batch_size" or len(uniq) <= 8:
        ax.set_xticks(uniq, [f"{v:g}" for v in uniq])
        ax.minorticks_off()
    ax.set(xlabel=field.replace("_", " "), ylabel=ylabel)
    n = max(len(r) for _, r in stats.arms(members))
    title = f"{ylabel} vs {field.replace('_', ' ')}"
    ax.set_title(f"{title} (mean of {n} seeds ± 95% t-interval; dots: seeds)",
                 fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    if rest and colors.continuous:
        colors.colorbar(fig, ax)
    elif len(handles) > MAX_LEGEND:  # many lines: the legend beside the axes
        ax.legend(handles=handles, fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)  # fmt: skip
    elif handles:
        ax.legend(handles=handles, fontsize=8, loc="best")
    return fig


def summary(out: str) -> Figure:
    """One row per arm (members equal but for the seed), labelled by what
    varies across the sweep: the validation accuracy at the lowest
    validation loss and the final test accuracy (dots: seeds; tick: mean,
    whiskers: 95% t-interval), and the clean train/validation gaps (mean ±
    95%).
    The figure grows with the number of arms; diverged members are counted
    in the label, not plotted."""
    members, _ = load(out)
    arm_list = stats.arms(members)
    labels = [stats.label(v) for v, _ in arm_list]
    rows = [r for _, r in arm_list]
    diverged = stats.diverged(members)
    seeds = max(len(r) for r in rows)
    height = max(3.0, 0.32 * len(labels) + 1.4)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, height), sharey=True,
                                   layout="constrained")  # fmt: skip
    y = np.arange(len(labels))[::-1]
    metrics = [("val_acc_at_best_loss", "val. accuracy at the lowest val. loss",
                "tab:blue")]  # fmt: skip
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
            mean, half, _ = stats.seed_stats(v)
            means += [mean - np.nan_to_num(half), mean + np.nan_to_num(half)]
            ax1.plot(v, np.full(len(v), y[j] + dy), "o", color=color, ms=3, alpha=0.4)
            ax1.errorbar([mean], [y[j] + dy], xerr=[np.nan_to_num(half)], fmt="|",
                         color=color, ms=11, mew=2.5, capsize=3, elinewidth=1.2,
                         label=name if j == 0 else None)  # fmt: skip
    if means:  # every arm's whiskers on the axis; a far-off seed may leave it
        lo, hi = min(means), max(means)
        pad = 0.15 * (hi - lo) + 0.01
        ax1.set_xlim(max(0.0, lo - pad), min(1.0, hi + pad))
    ax1.set(yticks=y, yticklabels=[
        label + (f"  ({int(diverged[r].sum())} diverged)" if diverged[r].any() else "")
        for label, r in zip(labels, rows)
    ], xlabel="accuracy")  # fmt: skip
    whiskers = "; whiskers: 95% t-interval" if seeds > 1 else ""
    ax1.set_title(f"accuracy per arm (dots: {seeds} seed(s); tick: mean{whiskers})",
                  fontsize=10)  # fmt: skip
    ax1.grid(alpha=0.3, axis="x")
    for col, name, color, dy in (("gap_loss", "val loss − train loss", "tab:purple",
                                  -0.15),
                                 ("gap_acc", "train acc − val acc", "tab:orange",
                                  0.15)):  # fmt: skip
        for j, r in enumerate(rows):
            ok = r[~diverged[r] & np.isfinite(members[col][r])]
            if len(ok):
                mean, half, _ = stats.seed_stats(members[col][ok])
                ax2.barh(y[j] + dy, mean, height=0.28, xerr=np.nan_to_num(half),
                         capsize=2, color=color,
                         label=name if j == 0 else None)  # fmt: skip
    ax2.axvline(0, color="k", lw=0.8)
    spread = " ± 95%" if seeds > 1 else ""
    ax2.set(xlabel="gap (final parameters, eval mode)",
            title=f"overfitting gap (mean over seeds{spread})")  # fmt: skip
    ax2.grid(alpha=0.3, axis="x")
    handles = [h for ax in (ax1, ax2) for h in ax.get_legend_handles_labels()[0]]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
               fontsize=8, frameon=False)  # fmt: skip
    return fig


def model_comparison(out: str, smooth: int = 20) -> Figure:
    """Models side by side: the training loss (moving average over ``smooth``
    batches, thin) and validation loss (thick) against epochs, the
    validation accuracy, and the final clean train/validation gap per arm;
    the mean over each arm's seeds (a 95% band), one colour per model."""
    members, history = load(out)
    rows_of = _rows_by_member(history)
    gone = stats.diverged(members)
    n_train = train_images(out)
    arm_list = stats.arms(members)
    others = [f for f in stats.varying_fields(members) if f != "model"]
    combos = list(dict.fromkeys(stats._text(tuple(values[f] for f in others))
                                for values, _ in arm_list))  # fmt: skip
    if len(combos) <= len(STYLE_CYCLE):  # colour: the model; dashes: the rest
        colors = Colors("model", members["model"])
        styles = {v: STYLE_CYCLE[i] for i, v in enumerate(combos)}
    else:  # too many for dashes: one colour per arm, solid lines
        colors = Colors("arm", [stats.label(values) for values, _ in arm_list])
        styles = dict.fromkeys(combos, "-")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    losses, accs = [], []
    for values, r in arm_list:
        ok = members["member"][r[~gone[r]]]
        if not len(ok):
            continue
        c = (
            colors(values.get("model", members["model"][r[0]]))
            if colors.field == "model"
            else colors(stats.label(values))
        )
        ls = styles[stats._text(tuple(values[f] for f in others))]
        x, ys = _series(history, rows_of, ok, "train_loss", "examples_seen", False)
        losses.append(draw_band(axes[0], x / n_train, smooth_rows(ys, smooth), c,
                            lw=0.8, ls=ls, band=False))  # fmt: skip
        x, ys = _series(history, rows_of, ok, "val_loss", "examples_seen", True)
        losses.append(draw_band(axes[0], x / n_train, ys, c, lw=2.2, ls=ls))
        x, ys = _series(history, rows_of, ok, "val_acc", "examples_seen", True)
        accs.append(draw_band(axes[1], x / n_train, ys, c, lw=1.6, ls=ls,
                          label=stats.label(values)))  # fmt: skip
    title = "train (thin, moving average) and validation (thick) loss"
    axes[0].set(xlabel="epochs", ylabel="loss", yscale="log", title=title)
    clip_to(axes[0], losses, log=True)
    axes[1].set(xlabel="epochs", ylabel="validation accuracy",
                title="validation accuracy")  # fmt: skip
    if accs:
        v = np.concatenate(accs)
        clip_to(axes[1], [v[v >= np.quantile(v, 0.1)]], bounds=(0, 1))
    labels = [stats.label(v) for v, _ in arm_list]
    y = np.arange(len(arm_list))[::-1]
    for col, name, color, dy in (("gap_loss", "val loss − train loss", "tab:purple",
                                  -0.18),
                                 ("gap_acc", "train acc − val acc", "tab:orange",
                                  0.18)):  # fmt: skip
        stat = [stats.seed_stats(members[col][r[~gone[r]]])[:2] for _, r in arm_list]
        mean, half = np.array(stat).T
        axes[2].barh(y + dy, mean, height=0.34, xerr=np.nan_to_num(half),
                     color=color, label=name, capsize=2)  # fmt: skip
    axes[2].axvline(0, color="k", lw=0.8)
    axes[2].set_yticks(y, labels, fontsize=7)
    axes[2].set(title="overfitting gap (final parameters, mean ± 95%)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    if len(arm_list) <= 2 * MAX_LEGEND:
        axes[1].legend(fontsize=7)
    return fig


def _accuracy_axes(members) -> list[str]:
    """The numeric fields that get a figure of accuracy against them: the
    batch size first, then the LR, then the rest, at most two, each only
    where one of its lines spans two or more of its values."""
    numeric = sorted(_numeric_varying(members),
                     key=lambda f: (f != "batch_size", f != "lr"))  # fmt: skip
    return [f for f in numeric if _spans(members, f)][:2]


def save_all(out: str) -> list[str]:
    """Write the standard figures of a sweep into ``<out>/plots``; return paths.

    Chosen from the fields that vary, whatever the experiment: always the
    learning curves (the loss curves of each (model,) batch size, the
    validation accuracy against epochs) and the summary per arm; when the
    batch size varies, the final accuracy against it (one line per LR, or per
    scaling rule: :func:`line_fields`), and when another numeric
    hyperparameter varies, the accuracy against it
    (``accuracy_vs_<field>.png``, :func:`_accuracy_axes`); for a
    two-hyperparameter grid its heatmap; several models, side by side.
    """
    members, _ = load(out)
    names = list(dict.fromkeys(members["model"]))
    several = len(names) > 1
    figures = {}
    for model in names:
        for b in sorted(set(members["batch_size"][members["model"] == model])):
            name = f"loss_{model}_bs{int(b)}.png" if several else f"loss_bs{int(b)}.png"
            figures[name] = lambda _, b=b, m=model: loss_curves(
                out, b, m if several else None
            )
    if several:
        figures["model_comparison.png"] = model_comparison
    figures["val_accuracy.png"] = accuracy_curves
    for field in _accuracy_axes(members):
        figures[f"accuracy_vs_{field}.png"] = lambda o, f=field: accuracy_vs(o, f)
    if grid_fields(members):
        figures["heatmap.png"] = heatmap
    figures["summary.png"] = summary
    return save_figures(out, figures)
