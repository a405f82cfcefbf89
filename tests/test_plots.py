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
    assert names == ["accuracy_vs_lr.png", "heatmap.png", "loss_bs256.png",
                     "loss_bs32.png", "summary.png", "val_accuracy.png"]  # fmt: skip
    # The diverged member does not set the limits: healthy losses are < 2.7.
    lo, hi = figs["loss"].axes[0].get_ylim()
    assert 0.1 < lo and hi < 4.0
    assert figs["acc"].axes[0].get_ylim()[1] <= 1.0
    # 20 LRs: a colorbar, not a 40-entry legend.
    for key in ("loss", "acc"):
        assert _colorbars(figs[key]) == ["lr"]
        assert _legend_entries(figs[key]) <= 4
    assert _legend_entries(figs["vs"]) == 2  # one line per batch size
    # The heatmap's cells are the arms' means over seeds.
    members = plots.load(out)[0]
    image = figs["heat"].axes[0].get_images()[0].get_array()
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
