"""The standard summary figure: one row per arm, seeds as dots, no layout
warnings however many members."""

from __future__ import annotations

import os
import warnings

import numpy as np

from jaxbatch import data, plots, sweep


def test_summary_has_a_row_per_arm_and_lays_out_cleanly(tmp_path):
    ds = data.load("synthetic", train_size=128, val_size=64, seed=0)
    config = sweep.SweepConfig(
        model="mlp", model_kwargs=(("hidden", (8,)),), batch_sizes=(32,),
        lrs=tuple(np.round(np.logspace(-3, 0, 12), 5)), seeds=(0, 1, 2),
        weight_decays=(0.0, 1e-3), epochs=1, eval_every=100, strategy="vmap",
    )  # fmt: skip
    out = str(tmp_path / "run")
    sweep.run(config, out, progress=False, plots=False, dataset=ds)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "constrained_layout not applied"
        fig = plots.summary(out)
        fig.savefig(tmp_path / "summary.png", dpi=60)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 24  # 12 LRs x 2 weight decays; the 3 seeds are dots
    assert all("lr " in t and "weight decay " in t for t in labels)
    assert not any("seed" in t or "batch size" in t for t in labels)  # constant


# --- figures that scale: a synthetic 40-arm, 3-seed results directory ------------


def _legend_entries(fig) -> int:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes]
    return sum(len(lg.get_texts()) for lg in legends if lg is not None)


def _colorbars(fig) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_standard_figures_scale_to_40_arms_of_3_seeds(tmp_path):
    from synthetic import write_run

    lrs = tuple(np.round(np.logspace(-3, 0, 20), 5))
    out = write_run(str(tmp_path / "run"), lrs=lrs)  # member 0 blows up to 1e24
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = plots.save_all(out)
        figs = {
            "loss": plots.loss_curves(out, 32),
            "acc": plots.accuracy_curves(out),
            "vs": plots.accuracy_vs(out),
            "heat": plots.heatmap(out),
        }
        for name, fig in figs.items():
            fig.savefig(tmp_path / f"{name}.png", dpi=50)  # lays out, or warns
    names = sorted(os.path.basename(p) for p in paths)
    assert names == ["accuracy_vs_batch_size.png", "accuracy_vs_lr.png",
                     "heatmap.png", "loss_bs256.png", "loss_bs32.png",
                     "summary.png", "val_accuracy.png"]  # fmt: skip
    # The diverged member does not set the limits: healthy losses are < 2.7.
    lo, hi = figs["loss"].axes[0].get_ylim()
    assert 0.1 < lo and hi < 4.0
    assert figs["acc"].axes[0].get_ylim()[1] <= 1.0
    # 20 LRs: a colorbar, not a 40-entry legend.
    for key in ("loss", "acc"):
        assert _colorbars(figs[key]) == ["learning rate"]
        assert _legend_entries(figs[key]) <= 4
    # Against the batch size, one line per LR: 20 of them, a colorbar.
    assert _colorbars(figs["vs"]) == ["learning rate"]
    vs_lr = plots.accuracy_vs(out, "lr")
    assert _legend_entries(vs_lr) == 2  # one line per batch size
    # The heatmap's cells are the arms' means over seeds.
    members = plots.load(out)[0]
    mesh = figs["heat"].axes[0].collections[0]  # one cell per arm
    image = np.ma.asarray(mesh.get_array()).reshape(2, 20)
    sel = (members["batch_size"] == 256) & (members["lr"] == lrs[3])
    assert image.shape == (2, 20)
    np.testing.assert_allclose(image[1, 3], members["test_acc"][sel].mean())


def test_few_arms_get_a_legend_and_bands(tmp_path):
    from synthetic import write_run

    out = write_run(str(tmp_path / "run"), lrs=(0.01, 0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.accuracy_curves(out)
        fig.savefig(tmp_path / "acc.png", dpi=50)
    assert _colorbars(fig) == []
    assert _legend_entries(fig) == 2  # lr 0.01, lr 0.1
    bands = [c for ax in fig.axes for c in ax.collections]
    assert len(bands) >= 3  # the 95% bands (the diverged arm keeps 2 seeds: none)


# --- figures chosen from what varies ---------------------------------------------


def _curve_colours(fig) -> list[str]:
    """The colours of the drawn curves (lines of two or more points)."""
    from matplotlib.colors import to_hex

    return [
        to_hex(ln.get_color())
        for ax in fig.axes
        for ln in ax.get_lines()
        if len(ln.get_xdata()) > 1 and ln.get_linestyle() not in ("None", "")
    ]


def test_a_batch_size_sweep_gets_accuracy_against_batch_size(tmp_path):
    from synthetic import write_run

    out = write_run(str(tmp_path / "run"), lrs=(0.1,), batch_sizes=(16, 64, 256),
                    diverge=None)  # fmt: skip
    names = sorted(os.path.basename(p) for p in plots.save_all(out))
    assert names == ["accuracy_vs_batch_size.png", "loss_bs16.png", "loss_bs256.png",
                     "loss_bs64.png", "summary.png", "val_accuracy.png"]  # fmt: skip
    fig = plots.accuracy_vs(out)
    assert fig.axes[0].get_xlabel() == "batch size"
    (line,) = _data_lines(fig.axes[0])
    members = plots.load(out)[0]
    for b, y in zip(line.get_xdata(), line.get_ydata()):  # each point: its seeds' mean
        sel = members["batch_size"] == b
        np.testing.assert_allclose(y, members["test_acc"][sel].mean())


def test_a_scaling_rule_is_a_line_where_it_sets_the_lr(tmp_path):
    """Two rules over batch sizes: the LR is the rule's (equal at the base
    batch), so the figure against the batch size has one line per rule, not
    one per LR; nothing else, so no figure against the LR (no line of it
    spans two LRs at a batch size)."""
    from synthetic import write_run

    def rule(b, lr):
        name = "linear" if lr > 0.5 else "same LR"
        return name, 0.1 * (b / 16 if name == "linear" else 1.0)

    out = write_run(str(tmp_path / "run"), lrs=(0.1, 1.0), batch_sizes=(16, 64, 256),
                    diverge=None, tag=("rule", rule))  # fmt: skip
    fig = plots.accuracy_vs(out)
    assert fig.axes[0].get_xlabel() == "batch size"
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sorted(legend) == ["rule linear", "rule same LR"]
    names = {os.path.basename(p) for p in plots.save_all(out)}
    assert "accuracy_vs_batch_size.png" in names
    assert "accuracy_vs_lr.png" not in names


def test_fifteen_arms_never_share_a_colour(tmp_path):
    """15 named arms (tags), each at two batch sizes: every figure that
    draws them gives each arm its own colour."""
    from synthetic import write_run

    lrs = tuple(np.round(np.linspace(0.02, 0.3, 15), 4))
    out = write_run(str(tmp_path / "run"), lrs=lrs, diverge=None,
                    tag=("arm", lambda b, lr: f"arm {lrs.index(lr):02d}"))  # fmt: skip
    from jaxbatch.plots import comparisons

    figs = {
        "loss": plots.loss_curves(out, 32),
        "acc": plots.accuracy_curves(out),
        "vs": plots.accuracy_vs(out, "batch_size"),
        "curves": comparisons.metric_curves(out, "arm"),
    }
    for name, fig in figs.items():
        colours = _curve_colours(fig)
        # loss curves: train and validation per arm; the others one per
        # (arm, panel or batch size): 15 colours in every case
        assert len(set(colours)) == 15, name
        fig.savefig(tmp_path / f"{name}.png", dpi=40)
    names = {os.path.basename(p) for p in plots.save_all(out)}
    assert "accuracy_vs_batch_size.png" in names
    assert "accuracy_vs_lr.png" not in names  # the arm sets the LR


def test_past_twenty_names_colours_stay_distinct():
    from matplotlib.colors import to_hex

    from jaxbatch.plots.style import Colors

    for n in (3, 10, 15, 20, 33):
        colors = Colors("arm", [f"arm {i}" for i in range(n)])
        assert not colors.continuous
        assert len({to_hex(colors(f"arm {i}")) for i in range(n)}) == n


# --- the faceted figure builder ---------------------------------------------------


def _data_lines(ax):
    """The mean lines of a facet panel (errorbar caps are markers only)."""
    return [ln for ln in ax.get_lines() if ln.get_linestyle() not in ("None", "")]


def test_facet_draws_panels_lines_and_bands_as_asked(tmp_path):
    from matplotlib.collections import PolyCollection
    from synthetic import write_run

    lrs = (0.01, 0.03, 0.1, 0.3)
    out = write_run(
        str(tmp_path / "run"), lrs=lrs
    )  # member 0 (bs 32, lr 0.01) diverges
    members = plots.load(out)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no layout or numerical warnings
        final = plots.facet(out, x="lr", y="test_acc", panels="batch_size")
        curves = plots.facet(out, x="step", y="val_loss", panels="batch_size",
                             lines="lr")  # fmt: skip
        many = plots.facet(
            out, x="lr_x_b", y=("test_acc", "train_eval_acc"), lines="batch_size",
            derive={"lr_x_b": lambda m: m["lr"] * m["batch_size"]},
        )  # fmt: skip
        for name, fig in (("final", final), ("curves", curves), ("many", many)):
            fig.savefig(tmp_path / f"{name}.png", dpi=50)
    # a panel per batch size; its one line is each LR's mean over healthy seeds
    panels = [ax for ax in final.axes if ax.get_title()]
    assert [ax.get_title().split("\n")[0] for ax in panels] == [
        "batch size 32", "batch size 256"]  # fmt: skip
    assert "1 diverged" in panels[0].get_title()
    gone = members["diverged"].astype(str) == "True"
    for ax, b in zip(panels, (32, 256)):
        (line,) = _data_lines(ax)
        want = [members["test_acc"][(members["batch_size"] == b) & (members["lr"] == lr)
                                    & ~gone].mean() for lr in lrs]  # fmt: skip
        np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-12)
        np.testing.assert_allclose(line.get_xdata(), lrs)
        assert ax.get_xscale() == "log"  # 0.01 .. 0.3 spans 30x
    # curves: a line per LR in each panel, a 95% band where three seeds have a
    # value (the arm with the diverged member has two: no band)
    axes = [ax for ax in curves.axes if ax.get_title()]
    assert [len(_data_lines(ax)) for ax in axes] == [4, 4]
    bands = [sum(isinstance(c, PolyCollection) for c in ax.collections) for ax in axes]
    assert bands == [3, 4]
    assert _legend_entries(curves) == 4 and _colorbars(curves) == []
    # two results: a panel each, the batch sizes as lines in both, on the
    # derived x (LR x batch size)
    axes = [ax for ax in many.axes if ax.get_title()]
    assert len(axes) == 2 and all(len(_data_lines(ax)) == 2 for ax in axes)
    np.testing.assert_allclose(_data_lines(axes[0])[1].get_xdata(),
                               [256 * lr for lr in lrs])  # fmt: skip


def test_facet_past_ten_values_draws_one_colorbar(tmp_path):
    from synthetic import write_run

    lrs = tuple(np.round(np.logspace(-3, 0, 12), 5))
    out = write_run(str(tmp_path / "run"), lrs=lrs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.facet(out, x="batch_size", y="test_acc", lines="lr")
        fig.savefig(tmp_path / "f.png", dpi=50)
    assert _colorbars(fig) == ["learning rate"] and _legend_entries(fig) == 0
    colours = [tuple(ln.get_color()) for ln in _data_lines(fig.axes[0])]
    assert len(colours) == 12 and len(set(colours)) == 12  # never repeated


def test_facet_of_a_result_against_a_result_averages_each_arm(tmp_path):
    from synthetic import write_run

    out = write_run(str(tmp_path / "run"), lrs=(0.01, 0.1), diverge=None)
    members = plots.load(out)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.facet(out, x="train_eval_acc", y="test_acc", lines="batch_size",
                          annotate="lr")  # fmt: skip
        fig.savefig(tmp_path / "f.png", dpi=50)
    lines = _data_lines(fig.axes[0])
    assert len(lines) == 2  # batch sizes; a point per LR, the mean of its seeds
    sel = (members["batch_size"] == 32) & (members["lr"] == 0.1)
    assert np.isclose(lines[0].get_xdata(), members["train_eval_acc"][sel].mean()).any()
    assert any(t.get_text() == "learning rate 0.1" for t in fig.axes[0].texts)


def test_facet_of_a_table_without_seeds_draws_every_row():
    # an analysis's own table (interpolation.csv): no seeds, a point per row
    alpha = np.linspace(-1.0, 2.0, 7)
    table = {"alpha": alpha, "train_loss": (alpha - 0.2) ** 2 + 0.5,
             "test_loss": (alpha - 0.1) ** 2 + 0.6}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.facet(table, x="alpha", y=("train_loss", "test_loss"),
                          overlay=True)  # fmt: skip
    lines = _data_lines(fig.axes[0])
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_xdata(), alpha)
    np.testing.assert_allclose(lines[0].get_ydata(), table["train_loss"])
    np.testing.assert_allclose(lines[1].get_ydata(), table["test_loss"])
    assert fig.axes[0].get_ylabel() == "loss"
    assert "seed" not in fig.get_suptitle()  # no "mean of N seeds" for plain rows
