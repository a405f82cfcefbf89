"""A two-hyperparameter grid as a heatmap: one cell per arm, a panel per value
of other fields, one colour scale for all.

Each cell is the mean over the arm's healthy seeds of the run's accuracy
(test where there is a test split), annotated in percent with its 95%
half-width; an arm whose every seed diverged is marked. Log-spaced axes sit
at their log positions (a 0 one step below the rest), so lines of a fixed
ratio of the two fields (``ratio_lines``: LR / weight decay = 10^k) are
straight, and each panel's best cell is boxed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from jaxbatch import stats
from jaxbatch.plots.facets import (
    _copied,
    _distinct,
    _matching,
    _rows,
    _take,
    load_table,
)
from jaxbatch.plots.style import label_of, pct


def grid_fields(members) -> tuple[str, str] | None:
    """The two numeric fields of a two-hyperparameter grid (nothing else
    varies, each takes two or more values), else None."""
    varying = stats.varying_fields(members)
    numeric = [f for f in varying if members[f].dtype.kind == "f"]
    if len(varying) == 2 and len(numeric) == 2:
        order = sorted(numeric, key=lambda f: f != "batch_size")
        return order[0], order[1]
    return None


def _positions(values: list[float]) -> tuple[dict, bool]:
    """Cell centres: log10 positions for positive log-spaced values (a 0 one
    grid step below the rest), else the values' indices."""
    pos = [v for v in values if v > 0]
    if len(pos) >= 2 and len(pos) >= len(values) - 1 and max(pos) / min(pos) >= 10:
        logs = np.log10(pos)
        step = float(np.median(np.diff(logs)))
        return {v: (np.log10(v) if v > 0 else logs.min() - step) for v in values}, True
    return {v: float(i) for i, v in enumerate(values)}, False


def _edges(centres: list[float]) -> np.ndarray:
    c = np.asarray(centres, float)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def _tick(v: float, log: bool) -> str:
    if not log or v == 0:
        return f"{v:g}"
    e = int(np.floor(np.log10(v) + 1e-9))
    m = v / 10.0**e
    return f"$10^{{{e}}}$" if np.isclose(m, 1) else f"${m:.2g}{{\\cdot}}10^{{{e}}}$"


def heatmap(
    source,
    fields: tuple[str, str] | None = None,
    *,
    panels: str | Sequence[str] | None = None,
    where: Mapping | None = None,
    copy_to_panels: tuple[Mapping, Sequence[str]] | None = None,
    metric: str | None = None,
    ratio_lines: Sequence[int] = (),
    span: float | None = None,
) -> Figure:
    """The mean of ``metric`` (default the run's accuracy) on the grid of
    ``fields`` (``(y, x)``; default the two numeric fields that vary), a panel
    per value of ``panels``.

    ``where``, ``copy_to_panels``: as for :func:`~jaxbatch.plots.facet`;
    ``ratio_lines``: draw x / y = 10^k for each k (log axes); ``span``: the
    colours cover this much below the best cell (lower ones saturate).
    """
    panel_fields = [panels] if isinstance(panels, str) else list(panels or ())
    table = load_table(source, [])
    table = _take(table, _matching(table, where or {}))
    if copy_to_panels:
        table = _copied(table, *copy_to_panels, panel_fields)
    auto = fields is None
    fields = fields or grid_fields(table)
    if fields is None:
        raise ValueError("heatmap needs exactly two numeric fields that vary")
    fy, fx = fields
    if auto and len(set(table[fx])) < len(set(table[fy])):  # the longer axis across
        fx, fy = fy, fx
    col = metric or stats.accuracy_column(table)
    gone = stats.diverged(table)
    keys = _distinct(table, panel_fields)
    cells = []  # per panel: its axis values (of its own members), means, labels
    for k in keys:
        rows = _rows(table, panel_fields, k)
        xs = sorted(set(np.asarray(table[fx][rows], float)))
        ys = sorted(set(np.asarray(table[fy][rows], float)))
        cells.append((xs, ys, *_cells(table, gone, rows, fy, fx, ys, xs, col)))
    means = [c[2] for c in cells if np.isfinite(c[2]).any()]
    top = max(np.nanmax(m) for m in means) if means else 1.0
    low = (
        (min(np.nanmin(m) for m in means) if means else 0.0)
        if span is None
        else top - span
    )
    widest = max(len(c[0]) for c in cells)
    ncols = min(len(keys), 2 if len(keys) == 4 else 3)
    nrows = -(-len(keys) // ncols)
    cell = min(1.1, 11.0 / max(1, widest * ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        squeeze=False,
        layout="constrained",
        figsize=(
            max(5.5, (cell * widest + 1.4) * ncols + 1.4),
            (0.55 * max(len(c[1]) for c in cells) + 1.6) * nrows,
        ),
    )
    for ax in axes.ravel()[len(keys) :]:
        ax.set_visible(False)
    style = dict(vmin=low, vmax=top, ratio_lines=ratio_lines, rotate=cell < 0.8)
    for ax, key, (xs, ys, grid, labels) in zip(axes.ravel(), keys, cells):
        image = _panel(ax, xs, ys, grid, labels, **style)
        ax.set(xlabel=label_of(fx), ylabel=label_of(fy))
        title = ", ".join(f"{label_of(f)} {v}" for f, v in zip(panel_fields, key))
        ax.set_title(title, fontsize=9)
    n = max(len(r) for _, r in stats.arms(table)) if len(table["member"]) else 0
    fig.colorbar(image, ax=axes, label=label_of(col), shrink=0.85)
    box = "; red box: each panel's best" if len(keys) > 1 else "; red box: the best"
    fig.suptitle(
        f"{label_of(col)}, % (mean of {n} seeds ± 95% half-width{box})", fontsize=10
    )
    if ratio_lines and all(_positions(c[0])[1] and _positions(c[1])[1] for c in cells):
        handles = [
            plt.Line2D(
                [],
                [],
                color="0.3",
                lw=2,
                ls=ls,
                label=f"{label_of(fx)} / {label_of(fy)} = $10^{k}$",
            )
            for k, ls in zip(ratio_lines, ("--", ":"))
        ]
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=len(handles),
            fontsize=8,
            frameon=False,
        )
    return fig


def _panel(ax, xs, ys, grid, labels, *, vmin, vmax, ratio_lines, rotate):
    """One panel's cells, their labels, the best cell's box and the ratio
    lines; returns the mesh (for the colorbar)."""
    xpos, xlog = _positions(xs)
    ypos, ylog = _positions(ys)
    xe, ye = _edges([xpos[v] for v in xs]), _edges([ypos[v] for v in ys])
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
    mesh = ax.pcolormesh(
        xe, ye, np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax
    )
    for (i, j), t in np.ndenumerate(labels):
        dark = np.isfinite(grid[i, j]) and grid[i, j] < vmin + 0.6 * (vmax - vmin)
        ax.text(
            xpos[xs[j]],
            ypos[ys[i]],
            t,
            ha="center",
            va="center",
            fontsize=7.5,
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
    if xlog and ylog:
        _ratio_lines(ax, ratio_lines, xe, ye, 0.0 in ys)
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ax.set_xticks(
        [xpos[v] for v in xs],
        [_tick(v, xlog) for v in xs],
        rotation=45 if rotate else 0,
    )
    ax.set_yticks([ypos[v] for v in ys], [_tick(v, ylog) for v in ys])
    return mesh


def _cells(table, gone, rows, fy, fx, ys, xs, col):
    """``(means [ys, xs], labels)`` of one panel's rows."""
    grid = np.full((len(ys), len(xs)), np.nan)
    labels = np.full(grid.shape, "", object)
    sub = _take(table, rows)
    for values, r in stats.arms(sub, fields=[fy, fx]):
        i, j = ys.index(float(values[fy])), xs.index(float(values[fx]))
        ok = r[~gone[rows][r]]
        mean, half, n = stats.seed_stats(np.asarray(sub[col], float)[ok])
        grid[i, j] = mean
        spread = "" if np.isnan(half) or len(xs) > 12 else f"\n±{pct(half)}"
        labels[i, j] = "diverged" if n == 0 else f"{pct(mean)}{spread}"
    return grid, labels


def _ratio_lines(ax, ks, xe, ye, has_zero_row: bool) -> None:
    """Lines of x / y = 10^k in log10 positions (above a 0 row)."""
    x = np.linspace(xe[0], xe[-1], 50)
    floor = ye[1] if has_zero_row else ye[0]
    if has_zero_row:
        ax.axhline(ye[1], color="k", lw=1.2)
    for k, ls in zip(ks, ("--", ":")):
        y = x - k
        keep = (y >= floor) & (y <= ye[-1])
        if keep.sum() > 1:
            ax.plot(x[keep], y[keep], color="white", lw=2, ls=ls)
