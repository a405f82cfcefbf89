"""The probe experiments (LR range test, batch generalization, update ratio) on
tiny synthetic data, their suggestion rules and their figures."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxbatch import data, lr_range, plots, results, sweep

TINY = [
    "--dataset", "synthetic", "--train-size", "256", "--val-size", "128",
    "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def ds():
    return data.load("synthetic", train_size=256, val_size=128, seed=0)


def _figures(out, figures):
    for path in plots.save_figures(str(out), figures):
        assert os.path.getsize(path) > 10_000


@pytest.mark.parametrize("name", ["lr_range_test", "batch_generalization",
                                  "update_ratio"])  # fmt: skip
@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_presets_build(name, preset):
    import importlib

    module = importlib.import_module(f"experiments.{name}")
    if name == "lr_range_test":  # two sweeps: the rising-LR runs and the grid
        preset_ = module.EXPERIMENT.preset(preset)
        rising = lr_range.range_members(module.RANGE_MIN, 10.0, seeds=module.SEEDS)
        lrs = lr_range.log_grid(module.GRID_MIN, 10.0)
        grid = lr_range.grid_members(lrs, module.SEEDS)
        assert len(sweep.SweepConfig(**preset_, recipes=rising).recipes) == 3
        members = sweep.SweepConfig(**preset_, recipes=grid).resolved_members()
        assert len(members) == 3 * len(lrs)
        return
    config = sweep.SweepConfig(**module.EXPERIMENT.preset(preset))
    assert len(config.resolved_members()) >= 3 * 3  # >= 3 arms x 3 seeds


# --- the suggestion rules -----------------------------------------------------------


def test_classic_rule_ignores_an_early_spike():
    """A loss that is flat, falls to its minimum at LR 0.1 and explodes after
    1, with a spike early on: the minimum and the divergence are found where
    they are, not at the spike."""
    lr = np.logspace(-7, 1, 400)
    x = np.log10(lr)
    loss = np.where(x < -3, 2.3, 2.3 - 1.8 * (x + 3) / 2)  # falls from 1e-3 ...
    loss = np.where(x > -1, 0.5 + 8 * (x + 1) ** 2, loss)  # ... rises after 0.1
    spiked = loss.copy()
    spiked[30:33] = 40.0  # an early spike
    plain, got = (
        lr_range.suggest_classic(lr, loss),
        lr_range.suggest_classic(lr, spiked),
    )
    assert got["min_loss_lr"] == plain["min_loss_lr"]
    assert got["suggested_lr"] == pytest.approx(got["min_loss_lr"] / 10)
    # the centred average does not lag: the minimum is at 0.1 (a step is 1.05x)
    assert 0.1 / 1.15 < got["min_loss_lr"] < 0.1 * 1.15
    # the raw loss passes 4x its minimum (2.0) at 10 ** -(1 - sqrt(1.5 / 8))
    assert got["diverge_lr"] == pytest.approx(10 ** -(1 - np.sqrt(1.5 / 8)), rel=0.15)
    diverging = loss.copy()
    diverging[300:] = np.nan
    assert lr_range.suggest_classic(lr, diverging)["diverge_lr"] == lr[300]


def _quadratic_range_test(steps, h, noise=0.3, seed=0, lo=1e-7, hi=10.0):
    """Gradient descent on ``h / 2 * x**2`` from ``x = 1`` with the LR rising
    exponentially from ``lo`` to ``hi`` over ``steps`` steps; the loss is read
    before each step with multiplicative noise (as a minibatch would). The
    loss falls while ``|1 - lr h| < 1`` and grows after: its minimum and its
    divergence are at the stability limit ``lr = 2 / h``. Past ``|x| > 1e100``
    the loss is NaN (a diverged member's)."""
    rng = np.random.default_rng(seed)
    lrs = lo * (hi / lo) ** (np.arange(steps) / (steps - 1))
    x, loss = 1.0, np.full(steps, np.nan)
    for i, lr in enumerate(lrs):
        if abs(x) > 1e100:
            break
        loss[i] = 0.5 * h * x * x * np.exp(noise * rng.standard_normal())
        x *= 1.0 - lr * h
    return lrs, loss


@pytest.mark.parametrize("steps", [126, 314, 1000])
@pytest.mark.parametrize("h", [4.0, 100.0])
def test_classic_rule_finds_a_quadratics_stability_limit(steps, h):
    """The known answer: the minimum and the divergence at 2 / h, whatever the
    run's length. (fastai's causal beta=0.98 average put the minimum 6-7x
    above 2 / h here: its 49-step lag is 1.2-3 decades of LR.)"""
    for seed in range(3):
        lr, loss = _quadratic_range_test(steps, h, seed=seed)
        got = lr_range.suggest_classic(lr, loss)
        close = 10**0.1  # a tenth of a decade (the grid's steps are half-decades)
        assert 2 / h / close <= got["min_loss_lr"] <= 2 / h * close, got
        # past 2 / h the loss grows by (lr h - 1) ** 2 a step, from 1: it needs
        # up to 4 steps of the LR to reach 4x its minimum
        late = max(close, 1e8 ** (4 / (steps - 1)))
        assert 2 / h / close <= got["diverge_lr"] <= 2 / h * late, got
        assert got["diverge_lr"] > got["min_loss_lr"]
        # minimum / 10: a tenth of the stability limit, below the optimum 1 / h
        assert got["suggested_lr"] == pytest.approx(got["min_loss_lr"] / 10)


def test_smoothing_has_no_lag_and_scales_with_the_run():
    assert [lr_range.smoothing_window(n) for n in (2, 40, 126, 314, 2000)] == [
        1, 3, 7, 17, 101,
    ]  # fmt: skip
    # a linear trend: every step whose window fits is its own average
    n = 314
    ramp = 3.0 - 0.005 * np.arange(n)
    s = lr_range.smooth(ramp)
    np.testing.assert_allclose(s[8:-8], ramp[8:-8], rtol=1e-12)
    assert s[0] < ramp[0]  # at the start the window is one-sided
    # the ends average what exists; nothing reaches past a NaN
    np.testing.assert_allclose(lr_range.smooth([1.0, 2.0, 3.0, 4.0], 3),
                               [1.5, 2.0, 3.0, 3.5])  # fmt: skip
    got = lr_range.smooth([1.0, 2.0, 3.0, np.nan, 5.0], 3)
    np.testing.assert_allclose(got[:3], [1.5, 2.0, 2.5])
    assert np.isnan(got[3:]).all()
    # values far below the first ones keep their precision
    tiny = np.concatenate([np.full(100, 2.0), np.full(200, 1e-20)])
    assert lr_range.smooth(tiny)[200] == pytest.approx(1e-20, rel=1e-9)
    with pytest.raises(ValueError, match="window=4"):
        lr_range.smooth(ramp, 4)


def test_grid_rule_picks_the_lowest_loss_and_the_first_failure():
    lrs = [0.01, 0.01, 0.1, 0.1, 1.0, 1.0, 3.0, 3.0]
    loss = [0.9, 0.8, 0.4, 0.5, 0.3, 2.9, 0.1, 0.2]
    diverged = [False, False, False, False, False, False, True, False]
    got = lr_range.suggest_grid(lrs, loss, diverged, start_loss=np.log(10))
    assert got["suggested_lr"] == 0.1  # mean 0.45; LR 1.0's is 1.6
    # LR 1.0's 1.6 is below the start and 4 x 0.45; 3.0 diverged
    assert got["diverge_lr"] == 3.0
    got = lr_range.suggest_grid(lrs, loss, diverged, start_loss=1.0)
    assert got["diverge_lr"] == 1.0  # now its mean 1.6 ended above the start
    # a short run: the lowest LR has barely left the start (2.33 > ln 10 = 2.30)
    # and is slow, not diverged; the highest blew up to 4x the best
    lrs = [1e-5, 1e-5, 1e-3, 1e-3, 1e-1, 1e-1]
    loss = [2.33, 2.35, 0.5, 0.6, 2.3, 2.5]
    got = lr_range.suggest_grid(lrs, loss, [False] * 6, start_loss=2.31)
    assert got["suggested_lr"] == 1e-3 and got["diverge_lr"] == 0.1


def test_log_grid_spaces_half_decades():
    assert lr_range.log_grid(1e-3, 1.0) == (
        0.001,
        0.00316,
        0.01,
        0.0316,
        0.1,
        0.316,
        1.0,
    )
    with pytest.raises(ValueError, match="0 < lo < hi"):
        lr_range.log_grid(1e-3, float("inf"))


# --- the experiments ------------------------------------------------------------------


def test_lr_range_experiment_writes_both_forms(tmp_path):
    from experiments import lr_range_test as lrt

    out = tmp_path / "lrr"
    lrt.EXPERIMENT.main([*TINY, "--epochs", "1", "--eval-every", "100", "--no-plots",
              "--lr-max", "1", "--out", str(out)])  # fmt: skip
    summary = results.read_json(os.path.join(out, "lr_range.json"))
    assert summary["suggested_lr"] == summary["grid"]["suggested_lr"]
    # --lr-max is the top of both forms: the grid's half-decades end at 1
    assert summary["grid"]["lrs"] == list(lr_range.log_grid(lrt.GRID_MIN, 1.0))
    assert summary["suggested_lr"] in summary["grid"]["lrs"]
    assert len(summary["classic"]["per_seed"]) == len(lrt.SEEDS)
    # the classic run's LR rises exponentially from 1e-7 to 1 over the run
    hist = results.read_csv(os.path.join(out, "range", "history.csv"))
    rows = hist["member"] == 0
    t = (hist["examples_seen"][rows] - hist["batch_size"][rows]) / 256
    np.testing.assert_allclose(hist["lr"][rows], 1e-7 * 1e7**t, rtol=1e-4)
    _figures(out, lrt.FIGURES)


def test_lr_range_figure_draws_raw_and_smoothed_loss(ds, tmp_path):
    """Each seed's raw loss per step (faint) beside the smoothed curve the
    rule reads (bold), built from a classic and a grid run."""
    from jaxbatch.plots import special

    seeds = (0, 1)
    tiny = dict(model="mlp", model_kwargs=(("hidden", (16,)),), batch_sizes=(32,),
                epochs=1, eval_every=100, train_eval_size=128)  # fmt: skip
    out = str(tmp_path / "lrr")
    forms = {
        "range": lr_range.range_members(1e-5, 10.0, seeds=seeds),
        "grid": lr_range.grid_members((1e-3, 1e-1, 10.0), seeds),
    }
    for name, members in forms.items():
        config = sweep.SweepConfig(**tiny, recipes=members)
        sweep.run(config, os.path.join(out, name), progress=False, plots=False,
                  dataset=ds)  # fmt: skip
    lr_range.analyse(os.path.join(out, "range"), os.path.join(out, "grid"), out)
    fig = special.lr_range_test(out)
    lines = fig.axes[0].get_lines()
    raw = [ln for ln in lines if ln.get_alpha() == 0.3]
    smoothed = [ln for ln in lines if ln.get_linewidth() == 2.2]
    curves = lr_range.classic_curves(os.path.join(out, "range"))
    assert len(raw) == len(smoothed) == len(curves) == len(seeds)
    for c, r, sm in zip(curves, raw, smoothed, strict=True):
        np.testing.assert_allclose(r.get_ydata(), c["loss"])
        np.testing.assert_allclose(sm.get_ydata(), lr_range.smooth(c["loss"]))
    labels = [ln.get_label() for ln in lines]
    assert any("raw loss" in x for x in labels)
    assert any("smoothed" in x for x in labels)


def test_batch_generalization_records_sharpness_and_the_line(ds, tmp_path):
    from experiments import batch_generalization as bg

    tiny = dict(
        model_kwargs=(("hidden", (16,)),), batch_sizes=(16, 64), seeds=(0, 1),
        epochs=1, train_eval_size=128, probe_size=128, interpolate=(0, 2),
    )  # fmt: skip
    config = sweep.SweepConfig(**{**bg.PRESETS["quick"], **tiny})
    out = str(tmp_path / "bg")
    sweep.run(config, out, progress=False, plots=False, dataset=ds)
    members = results.read_csv(os.path.join(out, "members.csv"))
    for col in ("sharpness_eig", "sharpness_eps", "sharpness_eps_0.001",
                "sharpness_eps_0.0005"):  # fmt: skip
        assert np.all(members[col] > 0), col
    # a larger box cannot find a smaller loss increase
    assert np.all(members["sharpness_eps_0.001"] >= members["sharpness_eps_0.0005"])
    line = results.read_csv(os.path.join(out, "interpolation.csv"))
    assert len(line["alpha"]) == 31
    _figures(out, bg.FIGURES)


def test_update_ratio_grows_with_the_lr(ds, tmp_path):
    from experiments import update_ratio as ur

    tiny = dict(
        model_kwargs=(("hidden", (16, 8)),), lrs=(0.003, 0.03), seeds=(0, 1), epochs=2
    )
    config = sweep.SweepConfig(**{**ur.PRESETS["quick"], **tiny})
    out = str(tmp_path / "ur")
    sweep.run(config, out, progress=False, plots=False, dataset=ds)
    members = results.read_csv(os.path.join(out, "members.csv"))
    low = members["update_ratio"][members["lr"] == 0.003]
    high = members["update_ratio"][members["lr"] == 0.03]
    assert high.min() > 3 * low.max()  # 10x the LR: a several times larger ratio
    _figures(out, ur.FIGURES)


# --- batch timing, BatchNorm, small batches, critical batch ---------------------------


def test_batch_timing_rows_follow_from_the_measured_update(tmp_path):
    from experiments import batch_timing as bt

    out = str(tmp_path / "bt")
    bt.EXPERIMENT.main(["--models", "mlp", "--batch-sizes", "1,8", "--n-train", "100",
             "--min-time", "0.01", "--no-progress", "--out", out])  # fmt: skip
    table = results.read_csv(os.path.join(out, "timing.csv"))
    assert list(table["batch_size"]) == [1, 8]
    np.testing.assert_allclose(
        table["s_per_epoch"],
        table["ms_per_update"] / 1e3 * np.ceil(100 / table["batch_size"]),
    )
    np.testing.assert_allclose(
        table["examples_per_s"], table["batch_size"] / (table["ms_per_update"] / 1e3)
    )
    assert np.all(table["compile_s"] > 0) and np.all(table["ms_per_update"] > 0)
    _figures(out, bt.FIGURES)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--batch-sizes", "0,8"], "positive integers"),
        (["--batch-sizes", "a"], "--batch-sizes takes integers"),
        (["--models", "nope"], "unknown model 'nope'"),
        (["--min-time", "-1"], "--min-time must be positive"),
    ],
)
def test_batch_timing_bad_flags_are_one_line(flags, message, tmp_path, capsys):
    from experiments import batch_timing as bt

    with pytest.raises(SystemExit) as exit_:
        bt.EXPERIMENT.main([*flags, "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_bn_and_small_batch_experiments_run_and_draw(ds, tmp_path):
    from experiments import bn_small_batch as bn
    from experiments import small_batch as sb

    tiny = dict(model_kwargs=(("width", 0.25),), batch_sizes=(4, 16), seeds=(0, 1),
                epochs=1, strategy="vmap")  # fmt: skip
    out = str(tmp_path / "bn")
    sweep.run(sweep.SweepConfig(**{**bn.PRESETS["quick"], **tiny}), out,
              progress=False, plots=False, dataset=ds)  # fmt: skip
    members = results.read_csv(os.path.join(out, "members.csv"))
    assert set(members["model"]) == {"simple_cnn", "simple_cnn_bn"}
    # the linear rule: LR 0.02 at batch 64 -> 0.02 * b / 64
    np.testing.assert_allclose(members["lr"], 0.02 * members["batch_size"] / 64)
    _figures(out, bn.FIGURES)
    recipes_ = sb.small_batch_members((2, 16), (2.0**-9, 2.0**-5))
    out = str(tmp_path / "sb")
    config = sweep.SweepConfig(
        **{**sb.PRESETS["quick"], "recipes": recipes_, "seeds": (0, 1),
           "model_kwargs": (("hidden", (16,)),), "epochs": 1}
    )  # fmt: skip
    sweep.run(config, out, progress=False, plots=False, dataset=ds)
    members = results.read_csv(os.path.join(out, "members.csv"))
    np.testing.assert_allclose(members["lr"], members["batch_size"] * members["eta"])
    _figures(out, sb.FIGURES)


def test_fit_recovers_the_critical_batch_of_an_exact_curve():
    from jaxbatch import critical

    b = np.array([8, 32, 128, 512, 2048])
    s_min, b_crit = critical.fit_steps(b, 300 * (1 + 100 / b))
    assert s_min == pytest.approx(300) and b_crit == pytest.approx(100)
    with pytest.raises(ValueError, match="at least two"):
        critical.fit_steps(b, [10.0, np.nan, np.nan, np.nan, np.nan])


def test_critical_batch_counts_steps_to_the_target(ds, tmp_path):
    from experiments import critical_batch as cb
    from jaxbatch import critical

    tiny = dict(model_kwargs=(("hidden", (16,)),), batch_sizes=(8, 64),
                lrs=(0.03, 0.1), epochs=2, probe_size=64, seeds=(0, 1))  # fmt: skip
    out = str(tmp_path / "cb")
    sweep.run(sweep.SweepConfig(**{**cb.PRESETS["quick"], **tiny}), out,
              progress=False, plots=False, dataset=ds)  # fmt: skip
    history = results.read_csv(os.path.join(out, "history.csv"))
    target = 0.5
    got = critical.steps_to_target(out, target)
    for m, step in got["members"].items():
        rows = (history["member"] == m) & np.isfinite(history["val_acc"])
        reached = history["step"][rows][history["val_acc"][rows] >= target]
        assert step == (reached[0] if len(reached) else np.nan) or (
            np.isnan(step) and not len(reached)
        )
    report = critical.analyse(out, target)
    assert report["batch_sizes"] == [8, 64]
    assert np.isfinite(report["b_simple_measured"]) and report["b_simple_measured"] > 0
    _figures(out, cb.FIGURES)


@pytest.mark.parametrize("top", ["0", "1e-9"])
def test_lr_range_refuses_an_lr_max_below_its_grid(top, tmp_path, capsys):
    from experiments import lr_range_test as lrt

    with pytest.raises(SystemExit) as info:
        lrt.EXPERIMENT.main([*TINY, "--lr-max", top, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1, err
    assert "--lr-max" in err
    assert not os.path.exists(tmp_path / "r" / "range" / "members.csv")
