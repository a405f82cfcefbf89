"""What every figure of the package shares: the backend, colours, panels,
bands, axis limits, labels, and reading and saving a run's figures."""

from __future__ import annotations

import os
import sys

import matplotlib

# Headless (files only) by default; inside a Jupyter/Colab kernel the inline
# backend stays, so a returned Figure is drawn in the notebook.
if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")  # noqa: E402
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize

from jaxbatch import interrupts, results, stats


def load(out: str) -> tuple[dict, dict]:
    """``(members, history)`` columns of a results directory."""
    return results.read_members(out), results.read_history(out)


MAX_LEGEND = 6  # more values than this: a colormap and a colorbar, not a legend


MIN_BAND = 3  # seeds a 95% band needs


STYLE_CYCLE = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def distinct_colors(n: int) -> list:
    """``n`` colours, none repeated: tab10 up to ten, tab20 up to twenty,
    past that ``n`` evenly spaced samples of the turbo colormap."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("turbo")(x) for x in np.linspace(0.03, 0.97, n)]


def line_style(i: int) -> dict:
    """The ``i``-th of the line styles that tell apart lines of one colour:
    a dash pattern, and past six of them a marker too, so no two repeat."""
    k = len(STYLE_CYCLE)
    style = {"ls": STYLE_CYCLE[i % k]}
    if i >= k:
        style["marker"] = MARKERS[(i // k - 1) % len(MARKERS)]
    return style


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


class Colors:
    """The colour of each value of one field (``lr``, ``batch_size``, ...).

    Up to :data:`MAX_LEGEND` values: distinct tab10 colours and a legend.
    More numeric values: a continuous colormap (log-scaled when the values
    span a factor of 10 or more) and a colorbar instead of a legend, so a
    sweep of 20 learning rates draws one bar, not 40 legend entries. More
    names (arms, tags): :func:`distinct_colors`, never a colour twice.
    """

    def __init__(self, field: str, values):
        self.field = field
        uniq = list(dict.fromkeys(stats._text(v) for v in values))
        numeric = all(_is_number(v) for v in uniq)
        if numeric:
            uniq.sort(key=float)
        self.values = uniq
        self.continuous = numeric and len(uniq) > MAX_LEGEND
        if self.continuous:
            v = np.array(uniq, float)
            log = v.min() > 0 and v.max() / v.min() >= 10
            self.norm = (LogNorm if log else Normalize)(v.min(), v.max())
            self.cmap = plt.get_cmap("viridis")
        else:
            self._of = dict(zip(uniq, distinct_colors(len(uniq))))

    def __call__(self, value):
        key = stats._text(value)
        if self.continuous:
            return self.cmap(self.norm(float(key)))
        return self._of[key]

    @property
    def title(self) -> str:
        return label_of(self.field)

    def label(self, value) -> str:
        return f"{self.title} {stats._text(value)}"

    def colorbar(self, fig, axes) -> None:
        sm = ScalarMappable(norm=self.norm, cmap=self.cmap)
        fig.colorbar(sm, ax=axes, label=self.title, shrink=0.9, pad=0.01)

    def legend_handles(self, **kw) -> list:
        return [plt.Line2D([], [], color=self(v), label=self.label(v), **kw)
                for v in self.values]  # fmt: skip


def panel_grid(n: int, width: float = 4.6, height: float = 3.3, ncols: int = 3,
               sharey: bool = True):  # fmt: skip
    """``n`` panels in rows of at most ``ncols``; returns ``(fig, axes)``."""
    ncols = max(1, min(2 if n == 4 and ncols >= 3 else ncols, n))
    if n == 1:  # one panel: room for its legend beside it
        width = max(width, 6.5)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols + 1.5,
                             height * nrows + 0.9), squeeze=False, sharey=sharey,
                             layout="constrained")  # fmt: skip
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def mean_band(ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds (rows) and the half-width of the 95% t-interval per
    column (NaN where fewer than two seeds have a value)."""
    return stats.column_stats(ys)[:2]


def arm_colors(names) -> dict:
    """One colour per arm name, in order, never repeated within a figure."""
    names = list(dict.fromkeys(names))
    colors = Colors("arm", names)
    return {n: colors(n) for n in names}


def draw_band(ax, x, ys, color, *, band: bool = True, **kw):
    """The mean of the seeds' series ``ys`` [seeds, len(x)] and its band."""
    mean, half = mean_band(ys)
    keep = np.isfinite(mean)
    if band:  # where three or more seeds have a value (two give a t of 12.7)
        ok = keep & np.isfinite(half) & (np.isfinite(ys).sum(axis=0) >= MIN_BAND)
        ax.fill_between(x[ok], (mean - half)[ok], (mean + half)[ok], color=color,
                        alpha=0.2, lw=0)  # fmt: skip
    ax.plot(x[keep], mean[keep], color=color, **kw)
    return mean[keep]


def clip_to(ax, values, *, log: bool = False, bounds=(None, None)) -> None:
    """Set the y limits from ``values`` (the healthy members' curves), so a
    diverged member, or one spike, cannot stretch the axis to 1e24."""
    v = np.concatenate([np.ravel(a) for a in values] or [[]])
    v = v[np.isfinite(v)]
    if log:
        v = v[v > 0]
    if not len(v):
        return
    lo, hi = float(v.min()), float(np.quantile(v, 0.995))
    if log:
        lo, hi = lo / 1.25, hi * 1.25
    else:
        pad = 0.06 * (hi - lo) or 0.01
        lo, hi = lo - pad, hi + pad
    if bounds[0] is not None:
        lo = max(lo, bounds[0])
    if bounds[1] is not None:
        hi = min(hi, bounds[1])
    ax.set_ylim(lo, hi)


def mark_diverged(ax, xs, color) -> None:
    """An x at the top of the axis where each diverged member stopped."""
    for x in xs:
        ax.plot([x], [1.0], "x", color=color, ms=8, mew=2, clip_on=False,
                transform=ax.get_xaxis_transform(), zorder=5)  # fmt: skip


def smooth_rows(ys: np.ndarray, window: int) -> np.ndarray:
    """A trailing moving average of each row (NaNs stay NaN)."""
    if window <= 1:
        return ys
    out = np.full_like(ys, np.nan)
    for i, y in enumerate(ys):
        ok = np.isfinite(y)
        c = np.cumsum(np.where(ok, y, 0.0))
        k = np.cumsum(ok)
        s = c - np.concatenate([np.zeros(window), c[:-window]])
        n = k - np.concatenate([np.zeros(window), k[:-window]])
        out[i] = np.where(ok & (n > 0), s / np.maximum(n, 1), np.nan)
    return out


def train_images(out: str) -> int:
    """The training images of a run (its ``config.json``)."""
    return int(results.read_json(os.path.join(out, "config.json"))["data"]["n_train"])


def save_figures(out: str, figures: dict) -> list[str]:
    """Save ``{file name: fn(out) -> Figure}`` into ``<out>/plots``; return paths."""
    plot_dir = os.path.join(out, "plots")
    results.makedirs(plot_dir)
    paths = []
    for name, make in figures.items():
        interrupts.check()  # a signal stops between figures, not inside one
        fig = make(out)
        path = os.path.join(plot_dir, name)
        try:
            with results.atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=120, format=os.path.splitext(name)[1][1:] or "png")
        finally:
            plt.close(fig)
        paths.append(path)
    return paths


def text(value) -> str:
    """A field's value as the figures write it (``0.01``, ``64``, ``l2``)."""
    return stats._text(value)


def pct(value: float) -> str:
    """An accuracy in percent points, one decimal."""
    return f"{100 * value:.1f}"


# Readable names of the columns the figures draw; other names lose their
# underscores (``weight_decay`` -> "weight decay").
LABELS = {
    "test_acc": "test accuracy",
    "test_loss": "test loss",
    "best_test_acc": "test accuracy (best weights)",
    "train_eval_acc": "training accuracy (final parameters)",
    "train_eval_loss": "training loss (final parameters)",
    "final_val_acc": "final validation accuracy",
    "final_val_loss": "final validation loss",
    "val_acc_at_best_loss": "validation accuracy at the lowest validation loss",
    "max_val_acc": "highest validation accuracy (any evaluation)",
    "min_val_loss": "lowest validation loss (any evaluation)",
    "val_acc": "validation accuracy",
    "val_loss": "validation loss (cross-entropy)",
    "train_loss": "training loss",
    "train_acc": "training accuracy",
    "gap_acc": "train − validation accuracy",
    "gap_loss": "validation − train loss",
    "lr": "learning rate",
    "lr_over_wd": "LR / weight decay",
    "train_minus_test": "train − test accuracy",
    "weight_norm": "final weight norm ‖w‖₂",
    "near_zero_frac": "fraction of weights with |w| < 1e-3",
    "sharpness_eig": "Hessian top eigenvalue",
    "sharpness_eps": "ε-sharpness (% loss increase)",
    "update_ratio": "update / weight ratio",
    "examples_seen": "examples seen",
    "eta": "base LR η̃ = LR / batch size",
    "alpha": "α",
    "step": "iteration (parameter updates)",
    "ms_per_update": "ms per update",
    "s_per_epoch": "s per epoch",
    "examples_per_s": "examples per second",
}


def label_of(name) -> str:
    if name is None:
        return ""
    name = str(name)
    head, sep, part = name.partition("/")  # a probe's layer: update_ratio/Dense_0
    if sep:
        return f"{label_of(head)}, {part}"
    return LABELS.get(name, name.replace("_", " "))
