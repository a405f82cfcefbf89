"""The throughput benchmark: its records, its ratios, and the PyTorch reference."""

from __future__ import annotations

import json

import pytest

from benchmarks import sweep_throughput as bench
from jaxbatch import engine, models

try:
    import torch
except ImportError:
    torch = None

REQUIRED = {
    "model",
    "batch_size",
    "members",
    "strategy",
    "examples_per_s",
    "compile_s",
    "device",
    "step_ms",
    "ms_per_member_step",
    "speedup_vs_sequential",
    "backend",
    "jax_version",
}
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


def test_main_writes_records_for_every_strategy_and_member_count(tmp_path):
    strategies = ["vmap", "sequential"] + (["torch"] if torch else [])
    path = tmp_path / "bench.json"
    argv = ["--models", "mlp", "--members", "1,2", "--steps", "3", "--repeats", "1"]
    argv += ["--batch-size", "16", "--strategies", ",".join(strategies)]
    records = bench.main([*argv, "--json", str(path)])

    assert json.loads(path.read_text()) == records
    got = sorted((r["members"], r["strategy"]) for r in records)
    assert got == sorted((k, s) for k in (1, 2) for s in strategies)
    for r in records:
        assert REQUIRED <= set(r), REQUIRED - set(r)
        assert r["model"] == "mlp" and r["batch_size"] == 16
        assert r["model_kwargs"] == {"hidden": [100]}
        assert r["examples_per_s"] > 0 and r["compile_s"] > 0
        # examples/s is summed over members: K * batch per group step.
        per_s = r["members"] * 16 * 1e3 / r["step_ms"]
        assert r["examples_per_s"] == pytest.approx(per_s, rel=0.01)
        assert r["ms_per_member_step"] == pytest.approx(
            r["step_ms"] / r["members"], rel=0.01
        )
        if r["strategy"] == "sequential":
            assert r["speedup_vs_sequential"] == 1.0
        if torch:
            assert r["speedup_vs_torch"] > 0
    one = {r["strategy"]: r for r in records if r["members"] == 1}
    for key in ("model", "model_kwargs", "batch_size", "steps", "device"):
        assert one["vmap"][key] == one["sequential"][key]
    if torch:
        assert {r["torch_version"] for r in records if r["strategy"] == "torch"} == {
            torch.__version__
        }


def test_missing_torch_and_auto_are_skipped_with_a_note(monkeypatch, capsys):
    monkeypatch.setattr(bench, "_torch", lambda: None)
    monkeypatch.delattr(engine, "auto_strategy", raising=False)
    records = bench.main(
        ["--models", "mlp", "--members", "1", "--strategies", "torch,auto"]
    )
    assert records == []
    out = capsys.readouterr().out
    assert "skipped (pip install torch)" in out
    assert "auto_strategy not available" in out


def test_default_strategies_add_map_for_the_mlp_only():
    assert "map" in bench.strategies_for("mlp", None)
    assert "map" not in bench.strategies_for("simple_cnn", None)
    assert bench.strategies_for("simple_cnn", ["vmap"]) == ["vmap"]


def test_best_window_keeps_the_fastest_and_stops_at_the_budget():
    times = iter([3.0, 1.0, 2.0, 0.5])
    assert bench.best_window(lambda: next(times), repeats=3, budget_s=100) == (1.0, 3)
    times = iter([3.0, 1.0])
    assert bench.best_window(lambda: next(times), repeats=3, budget_s=2.0) == (3.0, 1)


@needs_torch
@pytest.mark.parametrize(
    "name, kw",
    [
        ("mlp", {"hidden": (100,)}),
        ("simple_cnn", {"width": 0.25}),
        ("alexnet_small", {"width": 0.25}),
    ],
)
def test_torch_reference_has_the_jaxbatch_parameter_count(name, kw):
    from benchmarks import torch_reference

    module = models.get_model(name, num_classes=10, **kw)
    ours = models.param_count(module, (28, 28, 1))
    theirs = torch_reference.param_count(
        torch_reference.make_model(name, 10, (28, 28, 1), **kw)
    )
    assert theirs == ours


@needs_torch
def test_torch_reference_step_lowers_the_loss():
    from benchmarks import torch_reference

    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (256,), generator=gen)
    # Class c lights up image row c: linearly separable, learnt in a few steps.
    x = torch.zeros(256, 1, 28, 28, dtype=torch.uint8)
    x[torch.arange(256), 0, y] = 255
    torch.manual_seed(0)
    model = torch_reference.make_model("mlp", 10, hidden=(32,))
    losses = torch_reference.train_steps(
        model, x, y, 40, 32, 0.01, 0.9, mean=0.5, std=0.3
    )
    assert losses.shape == (40,)
    assert losses[-5:].mean() < 0.5 * losses[:5].mean()


def test_ratios_compare_within_one_model_batch_and_member_count():
    def rec(members, strategy, per_s):
        return dict(
            model="mlp",
            model_kwargs={},
            batch_size=32,
            members=members,
            strategy=strategy,
            examples_per_s=per_s,
        )

    records = [rec(4, "vmap", 300.0), rec(4, "sequential", 100.0), rec(4, "torch", 150)]
    records += [rec(16, "vmap", 50.0)]  # no baseline at 16 members
    bench.add_ratios(records)
    assert [r["speedup_vs_sequential"] for r in records] == [3.0, 1.0, 1.5, None]
    assert [r["speedup_vs_torch"] for r in records] == [2.0, 0.667, 1.0, None]


def test_chunks_that_do_not_divide_the_members_are_skipped():
    assert "do not split" in bench._skip_reason("chunk:4", 6, torch)
    assert bench._skip_reason("chunk:2", 4, torch) is None
    assert bench._skip_reason("vmap", 3, torch) is None


def test_auto_check_looks_again_at_the_candidates_auto_timed():
    from benchmarks import auto_check

    r = auto_check.child("mlp", 2, batch_size=16, seconds=0.05)
    assert set(r["look_ms"]) <= set(r["first_look_ms"])
    assert set(r["first_look_ms"]) == set(engine.default_candidates(None, 2))
    assert r["chosen"] in r["look_ms"] and r["fastest"] in r["look_ms"]
    assert r["ratio"] == pytest.approx(
        r["look_ms"][r["chosen"]] / r["look_ms"][r["fastest"]], rel=1e-2
    )
    with pytest.raises(SystemExit):
        auto_check.parse_args(["--members", "1"])  # auto does not decide for 1
