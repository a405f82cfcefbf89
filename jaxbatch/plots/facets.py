"""One figure builder for "this against that, with seeds as error bars".

``facet(run, x="weight_decay", y="weight_norm", panels="optimizer",
lines="weight_decay_mode")`` draws a panel per value of ``panels``, a line per
value of ``lines`` (coloured by ``colour``, by default the same field), each
point the mean over the members that differ only in their seed with its 95%
Student-t interval: whiskers where ``x`` is a hyperparameter, a band where it
is a clock of the history (``step``, ``epoch``, ``examples_seen``), and
intervals both ways where ``x`` is a result itself (then a point per arm).
Diverged members are left out and counted in their panel's title; colours
never repeat within a figure (a colormap and one colorbar past ten values).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from jaxbatch import results, stats
from jaxbatch.columns import RECIPE_COLUMNS
from jaxbatch.plots.style import (
    MARKERS,
    MIN_BAND,
    STYLE_CYCLE,
    Colors,
    clip_to,
    label_of,
    panel_grid,
    smooth_rows,
    text,
)

CLOCKS = ("step", "epoch", "examples_seen")


def _names(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _texts(values) -> np.ndarray:
    return np.asarray([text(v) for v in values], object)


def _take(table: Mapping, rows) -> dict:
    return {k: v[rows] for k, v in table.items()}


def _matching(table: Mapping, want: Mapping) -> np.ndarray:
    """Rows whose fields have the wanted values (or pass the predicates)."""
    hit = np.ones(len(table["member"]), bool)
    for field, value in want.items():
        v = table[field]
        hit &= (
            np.asarray(value(v), bool) if callable(value) else _texts(v) == text(value)
        )
    return hit


def load_table(
    source, names: Sequence[str], measured: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """The rows to draw: a run's ``members.csv``, or its ``history.csv`` with
    each member's fields joined in when a name is a history column; a mapping
    is a table already."""
    if isinstance(source, Mapping):
        table = {k: np.asarray(v) for k, v in source.items()}
        n = len(next(iter(table.values())))
        return {"member": np.arange(n), **table} if "member" not in table else table
    members = results.read_members(source)
    if all(n in members for n in names):
        return members
    # the members' fields (in members.csv's order, which the tag columns
    # follow), the history's own columns, and the history's for what is
    # measured on the axes (its per-step LR, not the member's peak)
    history = results.read_history(source)
    at = {int(m): i for i, m in enumerate(members["member"])}
    rows = np.asarray([at[int(m)] for m in history["member"]], int)
    table = {k: v[rows] for k, v in members.items()}
    table.update(
        {k: v for k, v in history.items() if k not in members or k in measured}
    )
    return table


def _distinct(table: Mapping, fields: Sequence[str]) -> list[tuple]:
    """The distinct values of ``fields``, in order (numbers ascending)."""
    if not fields:
        return [()]
    keys = list(dict.fromkeys(zip(*(_texts(table[f]) for f in fields))))
    try:
        return sorted(keys, key=lambda k: tuple(float(v) for v in k))
    except ValueError:
        return keys


def _rows(table: Mapping, fields: Sequence[str], key: tuple) -> np.ndarray:
    return np.flatnonzero(_matching(table, dict(zip(fields, key))))


def _log_spaced(values) -> bool:
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v != 0)]
    return bool(len(v)) and v.min() > 0 and v.max() / v.min() >= 10


def _zero_left(x: np.ndarray) -> tuple[np.ndarray, float | None]:
    """On a log axis a 0 sits one grid step left of the smallest value."""
    pos = np.unique(x[x > 0])
    if not (x == 0).any() or not len(pos):
        return x, None
    step = np.median(pos[1:] / pos[:-1]) if len(pos) > 1 else 10.0
    return np.where(x == 0, pos[0] / step, x), pos[0] / step


@dataclasses.dataclass
class _Plan:
    """What one ``facet`` call draws."""

    table: dict
    gone: np.ndarray
    base: dict | None
    baseline: Mapping
    x: str
    ys: list[str]
    panel_fields: list[str]
    line_field: str | None  # "y": the y columns overlaid
    colour_field: str | None
    colors: Colors | None
    clock: bool
    logx: bool
    zero: float | None  # where a 0 sits on a log x axis
    result_x: bool
    notes: dict = dataclasses.field(default_factory=dict)  # ax -> labels to place

    def lines(self) -> list:
        if self.line_field == "y":
            return list(self.ys)
        if self.line_field is None:
            return [None]
        return [k[0] for k in _distinct(self.table, [self.line_field])]

    def line_rows(self, rows: np.ndarray, value) -> np.ndarray:
        if self.line_field in (None, "y"):
            return rows
        return rows[_texts(self.table[self.line_field][rows]) == value]

    def colour(self, value, rows):
        if self.colors is None:
            return "tab:blue"
        if self.colour_field == self.line_field:
            return self.colors(value)
        return self.colors(self.table[self.colour_field][rows[0]])


def facet(
    source,
    *,
    x: str,
    y: str | Sequence[str],
    panels: str | Sequence[str] | None = None,
    lines: str | None = None,
    colour: str | None = None,
    where: Mapping | None = None,
    derive: Mapping[str, Callable] | None = None,
    copy_to_panels: tuple[Mapping, Sequence[str]] | None = None,
    baseline: Mapping | None = None,
    overlay: bool = False,
    annotate: str | None = None,
    logx: bool | None = None,
    logy: bool | None = None,
    smooth: int = 1,
    hlines: Sequence[tuple[float, str]] = (),
    vlines: Sequence[tuple[float, str]] = (),
    vspan: tuple[float, float, str] | None = None,
    title: str | None = None,
) -> Figure:
    """``y`` against ``x``: a panel per value of ``panels`` (and per ``y`` when
    it names several columns, unless ``overlay``: then they are the lines), a
    line per value of ``lines``, each point the mean over seeds with its 95%
    interval (see the module docstring).

    ``source``: a results directory or a table (``{column: values}``).
    ``where``: ``{field: value or predicate(values) -> mask}`` keeps rows;
    ``derive``: ``{name: fn(table) -> values}`` adds columns (e.g. LR /
    weight decay); ``copy_to_panels=(match, fields)`` repeats the rows that
    match in the panel of every value of ``fields`` (e.g. the members without
    decay in the panel of each decay mode); ``baseline``: the rows that match
    are drawn as a dotted level per line instead of points; ``annotate``:
    label each point with this field; ``smooth``: a moving average over that
    many points of each seed's curve; ``hlines``, ``vlines``: ``[(value,
    label)]`` reference lines; ``vspan``: ``(x0, x1, label)`` shaded.
    """
    plan = _plan(
        source,
        x,
        _names(y),
        _names(panels),
        lines,
        colour,
        where,
        derive,
        copy_to_panels,
        baseline,
        overlay,
        logx,
    )
    cells = [
        (k, v)
        for v in ([None] if overlay else plan.ys)
        for k in _distinct(plan.table, plan.panel_fields)
    ]
    n_keys = len(_distinct(plan.table, plan.panel_fields))
    several = len(plan.ys) > 1 and not overlay
    ncols = (n_keys if n_keys > 1 else len(plan.ys)) if several else 3
    fig, axes = panel_grid(len(cells), ncols=ncols, sharey=False)
    shown = {}  # per y column, every panel's values: one y range across them
    for ax, (key, yname) in zip(axes, cells):
        values = _draw_panel(ax, plan, key, yname, annotate, smooth)
        shown.setdefault(yname, []).extend(values)
        for value, _ in hlines:
            ax.axhline(value, color="0.25", ls="--", lw=1)
        for value, _ in vlines:
            ax.axvline(value, color="0.25", ls="-.", lw=1)
        if vspan:
            ax.axvspan(vspan[0], vspan[1], color="tab:red", alpha=0.1, lw=0)
    for ax, (_, yname) in zip(axes, cells):
        _style_axes(ax, plan, yname or plan.ys[0], shown[yname], logy)
        _place_notes(ax, plan.notes.get(ax, ()))
    _finish(fig, axes, plan, hlines, vlines, vspan, title)
    return fig


def _plan(
    source,
    x,
    ys,
    panel_fields,
    lines,
    colour,
    where,
    derive,
    copy,
    baseline,
    overlay,
    logx,
) -> _Plan:
    derive = derive or {}
    used = [x, *ys, *panel_fields, *_names(lines), *_names(colour), *(where or {})]
    table = load_table(
        source,
        [n for n in used if n not in derive],
        [n for n in (x, *ys) if n not in derive],
    )
    table = _take(table, _matching(table, where or {}))
    if not len(table["member"]):
        raise ValueError(
            f"facet: no rows match where={dict(where or {})}; check the values "
            "against members.csv"
        )
    for name, fn in derive.items():
        table[name] = np.asarray(fn(table), float)
    if copy:
        table = _copied(table, *copy, panel_fields)
    gone = (
        np.asarray(stats.diverged(table), bool)
        if "diverged" in table
        else np.zeros(len(table["member"]), bool)
    )
    base = None
    if baseline:
        hit = _matching(table, baseline)
        base = {**_take(table, hit), "_gone": gone[hit]}
        table, gone = _take(table, ~hit), gone[~hit]
    line_field = "y" if overlay and len(ys) > 1 else lines
    colour_field = colour or line_field
    colors = None
    if colour_field == "y":
        colors = Colors("y", ys)
    elif colour_field:
        colors = Colors(colour_field, table[colour_field])
    clock = x in CLOCKS
    fields = set(RECIPE_COLUMNS) | set(stats.tag_columns(table)) | {"model", *derive}
    xs = np.asarray(table[x], float)
    logx = (not clock and _log_spaced(xs)) if logx is None else logx
    return _Plan(
        table=table,
        gone=gone,
        base=base,
        baseline=dict(baseline or {}),
        x=x,
        ys=ys,
        panel_fields=panel_fields,
        line_field=line_field,
        colour_field=colour_field,
        colors=colors,
        clock=clock,
        logx=logx,
        zero=_zero_left(xs)[1] if logx else None,
        # a result on x is averaged per arm; a table without seeds (an
        # analysis's own rows) is drawn row by row
        result_x=not clock and x not in fields and "seed" in table,
    )


def _copied(table: dict, match: Mapping, across: Sequence[str], panels=()) -> dict:
    """The rows that ``match`` repeated with every value of the fields
    ``across`` that the other rows take in the same panel (e.g. the members
    without decay in the panel of each decay mode of their optimizer)."""
    hit = _matching(table, match)
    rest = [f for f in panels if f not in across]
    out = {k: [v[~hit]] for k, v in table.items()}
    for field in across:
        for i in np.flatnonzero(hit):
            same = ~hit & _matching(table, {f: table[f][i] for f in rest})
            for value in dict.fromkeys(_texts(table[field][same])):
                for k, v in table.items():
                    out[k].append(
                        np.asarray([value], object) if k == field else v[i : i + 1]
                    )
    return {k: np.concatenate(v) for k, v in out.items()}


def _draw_panel(ax, plan: _Plan, key, yname, annotate, smooth) -> list:
    rows = _rows(plan.table, plan.panel_fields, key)
    shown = []
    for j, value in enumerate(plan.lines()):
        sel = plan.line_rows(rows, value)
        sel = sel[~plan.gone[sel]]
        if not len(sel):
            continue
        column = value if plan.line_field == "y" else yname
        c = plan.colour(value, sel)
        if plan.colour_field == plan.line_field or plan.line_field is None:
            style = {"ls": "-", "marker": "o"}
        else:  # one colour for several lines: styles tell them apart
            style = {"ls": STYLE_CYCLE[j % len(STYLE_CYCLE)], "marker": MARKERS[j % 8]}
        draw = _draw_curve if plan.clock else _draw_points
        shown.append(draw(ax, plan, sel, column, c, style, annotate, smooth))
        if plan.base is not None:
            _draw_baseline(ax, plan, key, value, column, c)
    gone = plan.gone[rows]
    n_gone = (
        len(set(plan.table["member"][rows][gone])) if plan.clock else int(gone.sum())
    )
    parts = [", ".join(f"{label_of(f)} {v}" for f, v in zip(plan.panel_fields, key))]
    if yname is not None and len(plan.ys) > 1:
        parts.append(label_of(yname))
    if n_gone:
        parts.append(f"{n_gone} diverged (not drawn)")
    ax.set_title("\n".join(p for p in parts if p), fontsize=9)
    return shown


def _draw_curve(ax, plan: _Plan, sel, column, c, style, annotate, smooth) -> np.ndarray:
    """The seeds' series aligned on the clock: their mean and a 95% band where
    enough seeds have a value."""
    t, xv, yv = plan.table, np.asarray(plan.table[plan.x][sel], float), None
    yv = np.asarray(t[column][sel], float)
    keys = np.unique(xv[np.isfinite(yv)])
    if not len(keys):
        return np.array([])
    series = {}
    for m, a, b in zip(t["member"][sel], xv, yv):
        if np.isfinite(b):
            series.setdefault(m, {})[a] = b
    ys = smooth_rows(
        np.array([[s.get(k, np.nan) for k in keys] for s in series.values()]), smooth
    )
    mean, half, n = stats.column_stats(ys)
    ok = np.isfinite(half) & (n >= MIN_BAND)
    if ok.any():
        ax.fill_between(
            keys[ok], (mean - half)[ok], (mean + half)[ok], color=c, alpha=0.2, lw=0
        )
    ax.plot(keys, mean, color=c, ls=style["ls"], lw=1.6)
    return mean[np.isfinite(mean)]


def _draw_points(
    ax, plan: _Plan, sel, column, c, style, annotate, smooth
) -> np.ndarray:
    """Per value of ``x`` (or, for a result on ``x``, per arm) the mean over
    seeds with its interval, every seed a faint dot."""
    t = _take(plan.table, sel)
    xv = np.asarray(t[plan.x], float)
    yv = np.asarray(t[column], float)
    if plan.logx and plan.zero is not None:
        xv = np.where(xv == 0, plan.zero, xv)
    if plan.result_x:
        groups = [r for _, r in stats.arms(t)]
    else:
        groups = [np.flatnonzero(_texts(xv) == v) for v in dict.fromkeys(_texts(xv))]
    pts = []
    for r in groups:
        mx, hx, _ = stats.seed_stats(xv[r])
        my, hy, n = stats.seed_stats(yv[r])
        if n and np.isfinite(mx):
            if n < MIN_BAND:  # the seeds are the dots; no interval from 2
                hx = hy = np.nan
            pts.append((mx, my, hx, hy, r))
            if len(r) > 1:
                ax.scatter(xv[r], yv[r], s=9, color=c, alpha=0.3, lw=0)
    if not pts:
        return np.array([])
    pts.sort(key=lambda p: p[0])
    px, py, hx, hy = (np.array([p[k] for p in pts], float) for k in range(4))
    ax.errorbar(
        px,
        py,
        yerr=np.nan_to_num(hy),
        xerr=np.nan_to_num(hx) if plan.result_x else None,
        color=c,
        ls=style["ls"],
        marker=style["marker"],
        ms=4,
        capsize=3,
        lw=1.5,
    )
    for p in pts if annotate else ():
        value = text(t[annotate][p[4][0]])
        plan.notes.setdefault(ax, []).append(
            (p[0], p[1], f"{label_of(annotate)} {value}", c)
        )
    return np.concatenate([py - np.nan_to_num(hy), py + np.nan_to_num(hy), yv])


def _place_notes(ax, notes, room: float = 16.0) -> None:
    """Label points, leaving out a label that would sit within ``room``
    pixels of one already placed."""
    placed = []
    for x, y, what, c in notes:
        at = ax.transData.transform((x, y))
        if all(np.hypot(*(at - q)) > room for q in placed):
            placed.append(at)
            ax.annotate(
                what,
                (x, y),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=7,
                color=c,
            )


def _draw_baseline(ax, plan: _Plan, key, value, column, c) -> None:
    base = plan.base
    rows = _rows(base, plan.panel_fields, key)
    if plan.line_field not in (None, "y"):
        rows = rows[_texts(base[plan.line_field][rows]) == value]
    rows = rows[~base["_gone"][rows]]
    if len(rows):
        level = np.nanmean(np.asarray(base[column][rows], float))
        ax.axhline(level, color=c, ls=":", lw=1.3)


def _style_axes(ax, plan: _Plan, yname: str, shown: list, logy: bool | None) -> None:
    if plan.logx:
        ax.set_xscale("log")
        xs = np.asarray(plan.table[plan.x], float)
        if plan.zero is not None and not plan.result_x:
            ticks = [plan.zero, *np.unique(xs[xs > 0])]
            ax.set_xticks(ticks, ["0", *(f"{v:g}" for v in ticks[1:])])
            ax.minorticks_off()
    values = [v for v in shown if len(v)]
    if logy is None:
        logy = bool(values) and _log_spaced(np.concatenate(values))
    if logy:
        ax.set_yscale("log")
    if values:
        share = yname.endswith(("acc", "_frac"))
        clip_to(ax, values, log=logy, bounds=(0.0, 1.0) if share else (None, None))
    ax.set_xlabel(label_of(plan.x))
    ax.set_ylabel(_y_label(plan) if plan.line_field == "y" else label_of(yname))
    ax.grid(alpha=0.3, which="both")


def _y_label(plan: _Plan) -> str:
    """Overlaid columns share an axis: their common last word ("loss" for
    training and test loss), or their labels joined."""
    labels = [label_of(v) for v in plan.ys]
    last = {lab.split()[-1] for lab in labels}
    return last.pop() if len(last) == 1 else " / ".join(labels)


def _finish(fig, axes, plan: _Plan, hlines, vlines, vspan, title) -> None:
    """The colour key, the key of the reference marks, and the title."""
    colors = plan.colors
    if colors is not None and colors.continuous:
        colors.colorbar(fig, axes)
    elif colors is not None:
        handles = colors.legend_handles(lw=2, marker="o")
        if plan.colour_field not in (None, "y"):
            alive = set(_texts(plan.table[plan.colour_field][~plan.gone]))
            for h, v in zip(handles, colors.values):
                if v not in alive:
                    h.set_label(f"{h.get_label()} (all diverged)")
        if plan.colour_field == "y":
            for h in handles:
                h.set_label(label_of(h.get_label().removeprefix("y ")))
        fig.legend(
            handles=handles, loc="outside right upper", fontsize=8, frameon=False
        )
    marks = [
        plt.Line2D([], [], color="0.25", ls="--", lw=1, label=what)
        for _, what in hlines
    ]
    marks += [
        plt.Line2D([], [], color="0.25", ls="-.", lw=1, label=what)
        for _, what in vlines
    ]
    if vspan:
        marks.append(
            plt.Rectangle((0, 0), 1, 1, color="tab:red", alpha=0.1, label=vspan[2])
        )
    if plan.base is not None:
        what = ", ".join(f"{label_of(k)} {text(v)}" for k, v in plan.baseline.items())
        marks.append(plt.Line2D([], [], color="0.25", ls=":", label=f"dotted: {what}"))
    if plan.colour_field not in (None, plan.line_field):
        for j, value in enumerate(plan.lines()):
            marks.append(
                plt.Line2D(
                    [],
                    [],
                    color="0.3",
                    ls=STYLE_CYCLE[j % 6],
                    marker=MARKERS[j % 8],
                    label=f"{label_of(plan.line_field)} {value}",
                )
            )
    if marks:
        fig.legend(
            handles=marks,
            loc="outside lower center",
            ncols=min(4, len(marks)),
            fontsize=8,
            frameon=False,
        )
    one_row = np.unique(plan.table["member"], return_index=True)[1]  # per member
    arms = stats.arms(_take(plan.table, one_row)) if len(one_row) else []
    seeds = max((len(r) for _, r in arms), default=0)
    spread = "band" if plan.clock else "whiskers"
    if "seed" not in plan.table:
        note = ""
    elif seeds >= MIN_BAND:
        note = f"\n(mean of {seeds} seeds, {spread}: 95% t-interval)"
    elif seeds > 1:
        note = f"\n(mean of {seeds} seeds" + (
            ", dots: each seed)" if not plan.clock else ")"
        )
    else:
        note = "\n(one seed)"
    what = title or (
        " and ".join(label_of(v) for v in plan.ys) + f" against {label_of(plan.x)}"
    )
    fig.suptitle(f"{what}{note}", fontsize=10)
