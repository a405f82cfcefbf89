"""The comparisons of single folklore claims run end to end on tiny data:
their columns, figures and verdict in numbers."""

from __future__ import annotations

import os

import numpy as np

from jaxbatch import results

TINY = ["--dataset", "synthetic", "--train-size", "256", "--val-size", "128",
        "--no-progress"]  # fmt: skip


def test_momentum_runs_end_to_end(tmp_path):
    from experiments import momentum as exp

    out = tmp_path / "mom"
    exp.EXPERIMENT.main([*TINY, "--epochs", "2", "--out", str(out)])
    m = results.read_members(str(out))
    assert sorted(set(m["form"])) == ["fixed_effective_lr", "fixed_lr"]
    assert len(m["member"]) == 8 * 3  # 3 seeds
    # the momentum-0.9 member of fixed_effective_lr is fixed_lr's training
    shared = [str(v) for v in m["shares_training_of"] if str(v) not in ("", "nan")]
    assert len(shared) == 3  # one per seed
    eff = m["form"] == "fixed_effective_lr"
    assert np.allclose(m["lr"][eff] / (1 - m["momentum"][eff]), 0.1)
    for name in exp.FIGURES:
        assert os.path.getsize(out / "plots" / name) > 10_000
    verdict = results.read_json(os.path.join(out, "verdict.json"))["verdict"]
    assert verdict[0].startswith("Validation accuracy after 1 epoch")
    assert "spread" in verdict[2]


def test_overfitting_runs_end_to_end(tmp_path):
    """On an MLP (dropout, augmentation and weight decay as member data; half
    the hidden width; early stopping; the ensemble), tiny data."""
    from experiments import overfitting as exp

    out = tmp_path / "ovf"
    exp.EXPERIMENT.main([*TINY, "--model", "mlp", "--model-kwargs", "hidden=(16,)",
                         "--epochs", "2", "--out", str(out)])  # fmt: skip
    remedies = {r["remedy"] for r in exp.rows(str(out))}
    assert remedies == {
        "baseline", "augment", "dropout_0.5", "dropout_0.7", "weight_decay",
        "early_stopping", "half_width", "ensemble",
    }  # fmt: skip
    m = results.read_members(str(out / "remedies"))
    assert len(set(m["group"])) == 1  # every member-data remedy in one program
    assert os.path.getsize(out / "plots" / "overfitting_remedies.png") > 10_000
    verdict = results.read_json(os.path.join(out, "verdict.json"))["verdict"]
    assert verdict[0].startswith("Baseline: test accuracy")
    assert verdict[-1].startswith("Narrow the gap:")
