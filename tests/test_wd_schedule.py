"""Weight decay on a schedule: the coefficient each step applies is the
closed form, logged in history.csv as ``weight_decay`` when it varies; a
constant sweep's program and tables are as before."""

from __future__ import annotations

import numpy as np
import pytest

from jaxbatch import recipes, results, sweep
from jaxbatch.config import SweepConfig

M = recipes.Member


def _run(members, ds, out, **kw):
    cfg = SweepConfig(model="mlp", model_kwargs=(("hidden", (16,)),), batch_sizes=(32,),
                      recipes=members, epochs=2, eval_every=8, strategy="vmap",
                      schedule="constant", **kw)  # fmt: skip
    sweep.run(cfg, str(out), progress=False, plots=False, dataset=ds)
    return results.read_members(str(out)), results.read_history(str(out))


def test_the_applied_coefficient_is_the_closed_form(fmnist, tmp_path):
    members = [
        M(lr=0.05, weight_decay=0.0, weight_decay_schedule="linear",
          weight_decay_end=1e-3),
        M(lr=0.05, weight_decay=1e-4, weight_decay_schedule="exponential",
          weight_decay_end=1e-2, weight_decay_mode="decoupled"),
        M(lr=0.05, weight_decay=5e-4),
    ]  # fmt: skip
    m, h = _run(members, fmnist, tmp_path / "wd")
    total = 2 * 512
    for i, (start, end, kind) in enumerate(
        [(0.0, 1e-3, "linear"), (1e-4, 1e-2, "exponential"), (5e-4, 5e-4, "linear")]
    ):
        rows = h["member"] == i
        t = (
            h["examples_seen"][rows] - h["batch_size"][rows]
        ) / total  # before the step
        want = (
            start + (end - start) * t
            if kind == "linear"
            else start * (end / start) ** t
        )
        np.testing.assert_allclose(h["weight_decay"][rows], want, rtol=1e-5, atol=1e-12)
    assert list(m["weight_decay_schedule"][:2]) == ["linear", "exponential"]
    assert str(m["weight_decay_schedule"][2]) in ("", "nan")  # constant: unused


def test_one_step_at_the_start_equals_the_constant_start(fmnist, tmp_path):
    """A run of a single step applies the start's coefficient: a member
    decaying from 0.01 to 1 equals the constant 0.01 after it."""
    from jaxbatch import data

    one = data.Dataset(**{**fmnist.__dict__, "x_train": fmnist.x_train[:32],
                          "y_train": fmnist.y_train[:32]})  # fmt: skip
    members = [M(lr=0.1, weight_decay=0.01),
               M(lr=0.1, weight_decay=0.01, weight_decay_schedule="linear",
                 weight_decay_end=1.0)]  # fmt: skip
    cfg = SweepConfig(model="mlp", model_kwargs=(("hidden", (16,)),), batch_sizes=(32,),
                      recipes=members, epochs=1, strategy="vmap",
                      schedule="constant")  # fmt: skip
    sweep.run(cfg, str(tmp_path / "one"), progress=False, plots=False, dataset=one)
    m = results.read_members(str(tmp_path / "one"))
    assert m["final_val_loss"][0] == m["final_val_loss"][1]


def test_a_constant_sweep_logs_no_weight_decay_column(fmnist, tmp_path):
    _, h = _run([M(lr=0.05, weight_decay=1e-4)], fmnist, tmp_path / "c")
    assert "weight_decay" not in h


@pytest.mark.parametrize(
    "member, message",
    [
        (M(lr=0.1, weight_decay_schedule="cosine"), "unknown weight_decay_schedule"),
        (M(lr=0.1, weight_decay=0.0, weight_decay_schedule="exponential",
           weight_decay_end=1e-3), "needs a positive start and end"),
        (M(lr=0.1, weight_decay_schedule="linear", weight_decay_end=-1.0),
         "weight_decay_end must be >= 0"),
    ],
)  # fmt: skip
def test_bad_schedules_are_one_line_errors(member, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig(model="mlp", recipes=[member])


def test_the_experiment_runs_end_to_end(tmp_path):
    from experiments import weight_decay_schedule as exp

    out = tmp_path / "wds"
    exp.EXPERIMENT.main(["--dataset", "synthetic", "--train-size", "256",
                         "--val-size", "128", "--epochs", "2", "--no-progress",
                         "--out", str(out)])  # fmt: skip
    m = results.read_members(str(out))
    assert sorted(set(m["wd_schedule"])) == ["constant", "decreasing", "increasing",
                                             "none"]  # fmt: skip
    import os

    for name in exp.FIGURES:
        assert os.path.getsize(out / "plots" / name) > 10_000
    verdict = results.read_json(os.path.join(out, "verdict.json"))["verdict"]
    assert "Final parameter norm by arm" in verdict[-1]
