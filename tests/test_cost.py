"""The cost of a sweep before it runs: XLA's FLOP count of a step against a
hand count of its matrix products, and a dry run that trains nothing."""

from __future__ import annotations

import os
import types

import jax
import pytest

from jaxbatch import data, engine, sweep
from jaxbatch.engine import auto
from jaxbatch.experiment import Experiment
from jaxbatch.sweep import cost


def _matmul_flops(batch: int, sizes) -> float:
    """Forward and backward matrix products of an MLP step: 2 b n m for each
    product; the backward pass has the weight gradients and the gradients
    of every hidden layer's input (not of the images)."""
    fwd = sum(2 * batch * n * m for n, m in zip(sizes, sizes[1:]))
    dw = fwd
    dx = sum(2 * batch * n * m for n, m in zip(sizes[1:], sizes[2:]))
    return fwd + dw + dx


@pytest.mark.parametrize("batch", [32, 128])
def test_step_flops_match_a_hand_count_of_the_matrix_products(batch):
    ds = data.load("synthetic", train_size=512, val_size=64, seed=0)
    config = sweep.SweepConfig(
        model="mlp", model_kwargs=(("hidden", (256,)),), batch_sizes=(batch,),
        lrs=(0.1, 0.2, 0.3), epochs=2, eval_every=100,
    )  # fmt: skip
    c = sweep.run(config, "unused", dataset=ds, dry_run=True)
    assert not os.path.exists("unused")  # a dry run writes nothing
    (g,) = c["groups"]
    pixels = ds.x_train[0].size
    hand = _matmul_flops(batch, (pixels, 256, ds.num_classes))
    # the products dominate; activations, loss and the SGD update add a little
    assert hand <= g["flops_per_member_step"] <= 1.15 * hand
    assert g["members"] == 3 and g["steps"] == 2 * (512 // batch)
    assert c["flops"] == pytest.approx(g["flops_per_member_step"] * 3 * g["steps"])
    for name, seconds in c["estimates_s"].items():
        peak = cost.REFERENCE_DEVICES[name]
        assert seconds == pytest.approx(c["flops"] / (peak * cost.ASSUMED_UTILISATION))


def test_dry_run_from_the_command_line_prints_the_cost(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--dataset", "synthetic", "--model", "mlp", "--train-size", "256",
            "--val-size", "64", "--batch-sizes", "32,64", "--lrs", "0.1",
            "--epochs", "1", "--out", str(out), "--dry-run"]  # fmt: skip
    Experiment(name="dry", doc="a test", claim="a test", presets={"quick": {}}).main(
        argv
    )
    text = capsys.readouterr().out
    assert "cost:" in text and "group 2:" in text and "H100" in text
    assert not out.exists()


def test_auto_prefers_the_cheaper_compile_only_on_a_tie():
    from jaxbatch.engine import pick_strategy

    ms = {"unroll": 190.0, "vmap": 205.0, "map": 198.0}
    compile_s = {"unroll": 60.0, "vmap": 12.0, "map": 20.0}
    assert pick_strategy(ms, compile_s) == "map"  # within 5%, 3x cheaper
    assert (
        pick_strategy({"unroll": 100.0, "map": 120.0}, {"unroll": 60.0, "map": 1.0})
        == "unroll"
    )
    assert (
        pick_strategy({"unroll": 100.0, "map": 103.0}, {"unroll": 10.0, "map": 8.0})
        == "unroll"
    )


class _FakeTrial:
    """A compiled candidate whose every later window takes ``ms`` per step."""

    def __init__(self, ms: float):
        self.ms, self.calls = ms, 0
        self.spec = types.SimpleNamespace(steps_per_call=1)

    def window(self, calls: int = 1) -> float:
        self.calls += calls
        return self.ms * calls / 1e3


def test_auto_times_close_candidates_again_and_keeps_the_truly_fastest():
    # the first look had unroll 3% ahead (a lucky window); longer looks show
    # vmap 20% faster. map was far behind and is not timed again.
    timings = {"unroll": 100.0, "vmap": 103.0, "map": 300.0}
    trials = {
        "unroll": _FakeTrial(110.0),
        "vmap": _FakeTrial(88.0),
        "map": _FakeTrial(1),
    }
    auto._confirm_close(timings, trials, steps=2)
    assert timings == {"unroll": 100.0, "vmap": 88.0, "map": 300.0}
    assert trials["map"].calls == 0
    # each close candidate ran windows for CONFIRM_S at least
    assert trials["unroll"].calls * 0.110 >= auto.CONFIRM_S
    assert trials["vmap"].calls * 0.088 >= auto.CONFIRM_S
    assert engine.pick_strategy(timings, {}) == "vmap"

    # no runner-up within CLOSE_MARGIN: nothing is timed again
    far = {"unroll": 100.0, "vmap": 150.0}
    lone = {"unroll": _FakeTrial(1), "vmap": _FakeTrial(1)}
    auto._confirm_close(far, lone, steps=2)
    assert far == {"unroll": 100.0, "vmap": 150.0} and lone["unroll"].calls == 0


def test_cpu_candidates_loop_where_unroll_is_not_compiled():
    assert jax.default_backend() == "cpu"
    # map (a rolled loop) lost to unroll in every CPU cell measured
    assert engine.default_candidates(None, 16) == ("unroll", "vmap")
    # past 16 members unrolling compiles too long; a loop of calls compiles one
    assert engine.default_candidates(None, 24) == ("loop", "vmap", "map")
