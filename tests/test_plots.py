"""The standard summary figure: one row per arm, seeds as dots, no layout
warnings however many members."""

from __future__ import annotations

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
