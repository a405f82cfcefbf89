"""The schedule, batch-increase, LR-scaling and search comparisons: their member
lists, tiny end-to-end runs on synthetic data, and their figures."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from jaxbatch import data, plots, recipes, results, sweep
from jaxbatch.plots import search

TINY = dict(model="mlp", model_kwargs=(("hidden", (16,)),), eval_every=10**6, test=True)


@pytest.fixture(scope="module")
def ds():
    return data.load("synthetic", train_size=256, val_size=128, seed=0)


def _run(preset: dict, ds, out, **kw):
    config = sweep.SweepConfig(**{**preset, **TINY, **kw})
    sweep.run(config, str(out), progress=False, plots=False, dataset=ds)
    members = results.read_csv(os.path.join(out, "members.csv"))
    history = results.read_csv(os.path.join(out, "history.csv"))
    return members, history


def _figures(out, figures):
    for path in plots.save_figures(str(out), figures):
        assert os.path.getsize(path) > 10_000


def _presets():
    from experiments import (
        batch_increase,
        hparam_search,
        lr_scaling,
        schedule_comparison,
    )

    return [
        (m, p)
        for m in (schedule_comparison, batch_increase, lr_scaling, hparam_search)
        for p in ("quick", "paper")
    ]


@pytest.mark.parametrize("module,preset", _presets())
def test_every_preset_builds(module, preset):
    """Each preset validates every member before any data loads, and every
    arm of a comparison trains with at least three seeds."""
    members = sweep.SweepConfig(**module.EXPERIMENT.preset(preset)).resolved_members()
    if module.__name__.endswith("hparam_search"):  # trials, not seeds, repeat
        assert len(members) == 2 * module.N_TRIALS
        return
    arms = {}
    for m in members:
        arms.setdefault(m.replace(seed=0, tags=()), set()).add(m.seed)
    assert len(arms) >= 3 and min(len(s) for s in arms.values()) >= 3


# --- schedule comparison ------------------------------------------------------------


def test_schedules_train_in_one_group_and_follow_their_formulas(ds, tmp_path):
    from experiments import schedule_comparison as sc

    out = tmp_path / "sc"
    members, history = _run(sc.PRESETS["quick"], ds, out, epochs=8)
    names = list(dict.fromkeys(members["schedule_name"]))
    assert len(names) == 6 and len(members["member"]) == 18  # 6 schedules x 3 seeds
    assert set(members["group"]) == {0}  # every schedule in one compiled program
    n = len(ds.y_train)
    for name in names:
        m = int(members["member"][members["schedule_name"] == name][0])
        rows = history["member"] == m
        # the LR of an update is the schedule at the examples seen before it
        t = (history["examples_seen"][rows] - history["batch_size"][rows]) / n
        lr = history["lr"][rows]
        if name == "constant":
            expected = np.full_like(t, 0.1)
        elif name.startswith("plateau"):  # halvings of the peak, never undone
            halvings = np.log2(0.1 / lr)
            np.testing.assert_allclose(halvings, np.round(halvings), atol=1e-4)
            assert np.all(np.diff(lr) <= 0)
            continue
        elif name == "step x0.5/5ep":
            expected = 0.1 * 0.5 ** np.floor(t / 5 + 1e-9)
        elif name.startswith("step x0.1"):
            expected = 0.1 * 0.1 ** np.floor(t / 7 + 1e-9)
        elif name.startswith("exp"):
            expected = 0.1 * np.exp(-0.23 * t)
        else:
            expected = 0.1 / (1 + 1.0 * t)
        np.testing.assert_allclose(lr, expected, rtol=1e-5, err_msg=name)
    _figures(out, sc.FIGURES)


# --- batch increase -------------------------------------------------------------------


def test_growing_the_batch_matches_the_decay_with_fewer_updates(ds, tmp_path):
    from experiments import batch_increase as bi

    preset = {
        **bi.PRESETS["quick"],
        "recipes": recipes.product(bi.arms((1, 2), 2), seed=(0, 1)),
    }
    out = tmp_path / "bi"
    members, history = _run(preset, ds, out, epochs=3)
    steps = {a: members["steps"][members["arm"] == a] for a in set(members["arm"])}
    # batch 32 for 256 images: 8 updates an epoch; x2 at epochs 1 and 2
    assert set(steps["decay LR"]) == {8 + 8 + 8}
    assert set(steps["increase batch"]) == {8 + 4 + 2}
    assert set(steps["hybrid"]) == {8 + 8 + 4}
    ratios = {}
    for arm in steps:
        m = int(members["member"][members["arm"] == arm][0])
        rows = history["member"] == m
        assert history["examples_seen"][rows][-1] == 3 * len(ds.y_train)
        per_epoch = []
        for e in (1, 2, 3):
            r = rows & (history["epoch"] == e)
            per_epoch.append(
                float(np.mean(history["lr"][r] / history["batch_size"][r]))
            )
        ratios[arm] = per_epoch
    # the noise scale LR / batch size is the same in every arm at every epoch
    for arm in ratios:
        np.testing.assert_allclose(ratios[arm], ratios["decay LR"], rtol=1e-6)
    np.testing.assert_allclose(
        ratios["decay LR"], [0.05 / 32, 0.025 / 32, 0.0125 / 32], rtol=1e-6
    )
    _figures(out, bi.FIGURES)


# --- LR scaling ---------------------------------------------------------------------


def test_scaling_rules_and_warmup_start_from_the_base_lr(ds, tmp_path):
    from experiments import lr_scaling as ls

    preset = {
        **ls.PRESETS["quick"],
        "recipes": ls.scaling_members(32, (32, 64, 128), 0.01, 1),
        "seeds": (0, 1),
    }
    out = tmp_path / "ls"
    # constant after the warmup, to see the rules alone (the presets decay)
    members, history = _run(preset, ds, out, epochs=2, schedules=("constant",))
    for i in range(len(members["member"])):
        k, rule = int(members["k"][i]), str(members["scaling_rule"][i])
        factor = {"none": 1.0, "linear": k, "sqrt": math.sqrt(k)}[rule]
        assert members["lr"][i] == pytest.approx(0.01 * factor, rel=1e-3)
        rows = history["member"] == members["member"][i]
        lr = history["lr"][rows]
        if members["warmup_epochs"][i] > 0:
            # Goyal et al.: the warmup starts at LR / k, the small batch's LR
            # under the linear rule, and reaches the peak after one epoch
            assert lr[0] == pytest.approx(members["lr"][i] / k, rel=1e-3)
            assert lr[-1] == pytest.approx(members["lr"][i], rel=1e-3)
        else:
            np.testing.assert_allclose(lr, members["lr"][i], rtol=1e-3)
    assert set(members["k"]) == {1, 2, 4} and set(members["scaling_rule"]) == {
        "none",
        "linear",
        "sqrt",
    }
    assert len(members["member"]) == 2 + 2 * 3 * 2 * 2  # baseline + k x rule x warm
    _figures(out, ls.FIGURES)


# --- grid vs random search -------------------------------------------------------


def test_best_so_far_is_the_running_maximum_over_orders():
    curve = search.best_so_far([0.1, 0.5, 0.3, 0.2], n_perm=4000, seed=1)
    assert np.all(np.diff(curve["mean"]) >= 0)
    assert curve["mean"][-1] == curve["lo"][-1] == 0.5  # all trials: the best one
    # the first trial is a uniform draw: its expected best is the mean
    assert curve["mean"][0] == pytest.approx(0.275, abs=0.01)
    # best of two of four distinct values: E = (0.5*3 + 0.3*2 + 0.2*1) / 6
    assert curve["mean"][1] == pytest.approx((1.5 + 0.6 + 0.2) / 6, abs=0.01)


def test_grid_and_random_search_share_one_program_and_budget(ds, tmp_path):
    from experiments import hparam_search as hs

    members = hs.search_members(hs.N_TRIALS, draw_seed=0)
    grid = [m for m in members if dict(m.tags)["search"] == "grid"]
    rand = [m for m in members if dict(m.tags)["search"] == "random"]
    assert len(grid) == len(rand) == 81
    assert len({m.lr for m in grid}) == 9  # the grid tries only 9 LRs ...
    assert len({m.lr for m in rand}) == 81  # ... random search 81
    for m in rand:
        assert 1e-5 <= m.lr <= 1e-1 and 1e-7 <= m.weight_decay <= 1e-1
        assert 1e-3 <= 1 - m.momentum <= 1e-1 + 1e-9
    small = recipes.grid(lr=(0.01, 0.1), weight_decay=1e-4, momentum=(0.0, 0.9), seed=0)
    preset = {
        **hs.EXPERIMENT.preset("quick"),
        "recipes": [m.with_tags(search="grid") for m in small]
        + [
            m.with_tags(search="random")
            for m in recipes.random(hs.jax.random.PRNGKey(3), 4, seed=0)
        ],
    }
    out = tmp_path / "hs"
    got, _ = _run(preset, ds, out, epochs=1)
    assert set(got["group"]) == {0}
    assert list(got["search"]).count("grid") == list(got["search"]).count("random") == 4
    _figures(out, hs.FIGURES)
