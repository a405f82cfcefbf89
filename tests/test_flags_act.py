"""Every flag means what it says: a flag an experiment's ``--help`` lists
changes what it plans, a flag it cannot use is refused in one line, and a
hyperparameter no member's optimizer or schedule reads is never varied."""

import importlib
import os

import numpy as np
import pytest

from jaxbatch import data, recipes, results, sweep
from jaxbatch.config import SweepConfig

EXPERIMENTS = (
    "alexnet_bs_sweep", "batch_generalization", "batch_increase", "bn_small_batch",
    "critical_batch", "early_stopping", "finetune", "hparam_search", "lr_range_test",
    "lr_scaling", "model_zoo_sweep", "schedule_comparison", "small_batch",
    "pbt", "successive_halving", "update_ratio", "weight_decay",
    "weight_decay_schedule", "momentum", "overfitting",
)  # fmt: skip
# A value for each member flag that differs from every preset's.
ALTERNATIVE = {
    "batch_sizes": ("--batch-sizes", "48"),
    "lrs": ("--lrs", "0.03"),
    "seeds": ("--seeds", "7"),
    "momentums": ("--momentums", "0.5"),
    "weight_decays": ("--weight-decays", "0.003"),
    "schedules": ("--schedule", "exponential"),
    "weight_decay_modes": ("--weight-decay-mode", "decoupled"),
    "gamma": ("--gamma", "0.3"),
    "decay_epochs": ("--decay-epochs", "1.5"),
    "decay_rate": ("--decay-rate", "0.7"),
    "warmup_epochs": ("--warmup-epochs", "1"),
    "optimizer": ("--optimizer", "rmsprop"),
    "epochs": ("--epochs", "13"),
}
# Reasons that depend on other values (another flag can make the field act):
# --help keeps such a flag, the command refuses it with these values.
# A preset that names members to interpolate between (batch_generalization)
# refuses a flag that renumbers them until --interpolate is given too.
DEPENDS = ("does not use", "no member", "is off", "interpolate names members")


def _experiment(name):
    return importlib.import_module(f"experiments.{name}").EXPERIMENT


def _plan(exp, argv):
    return [
        (c.to_dict(), [m.to_dict() for m in c.resolved_members()])
        for c in exp.plan(argv)
    ]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_each_listed_flag_changes_the_plan_and_the_others_are_refused(name):
    exp = _experiment(name)
    listed = exp.help_fields()
    base = _plan(exp, [])
    for field, (flag, value) in ALTERNATIVE.items():
        if field in listed:
            try:
                changed = _plan(exp, [flag, value])
            except ValueError as err:
                assert any(d in str(err) for d in DEPENDS), (name, flag, err)
                continue
            assert changed != base, (name, flag)
        else:
            with pytest.raises(ValueError, match="does not act|changes nothing"):
                exp.plan([flag, value])


def test_seeds_replicate_every_arm_and_batch_sizes_replace_the_axis():
    sc = _experiment("schedule_comparison")
    [config] = sc.plan(["--seeds", "0,1", "--batch-sizes", "32,128"])
    members = config.resolved_members()
    arms = {dict(m.tags)["schedule_name"] for m in members}
    assert len(members) == len(arms) * 2 * 2
    assert {(m.batch_size, m.seed) for m in members} == {
        (b, s) for b in (32, 128) for s in (0, 1)
    }
    ls = _experiment("lr_scaling")
    [config] = ls.plan(["--batch-sizes", "16,64", "--seeds", "3"])
    members = config.resolved_members()
    assert {m.batch_size for m in members} == {16, 64}
    assert {m.seed for m in members} == {3}
    linear = [m for m in members if dict(m.tags).get("scaling_rule") == "linear"]
    assert {m.lr for m in linear} == {0.04}  # 0.01 x 64/16


def test_a_flag_outside_the_experiment_is_one_line_and_exit_2(tmp_path, capsys):
    sb = _experiment("small_batch")
    with pytest.raises(SystemExit) as exit_:
        sb.main(["--lrs", "0.1", "--out", str(tmp_path / "x"), "--no-progress"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lrs changes nothing" in err[0], err
    assert not os.path.exists(tmp_path / "x" / "config.json")


@pytest.mark.parametrize(
    "flag", ["--early-stop-patience", "--early-stop-patience-epochs"]
)
def test_a_patience_the_stages_set_is_refused_in_either_unit(flag):
    """early_stopping sets each arm's patience in evaluations; the flag of
    either unit is refused as the arms', not met with "give one of them"."""
    es = _experiment("early_stopping")
    with pytest.raises(ValueError, match=f"^{flag} changes nothing .*sets its own"):
        es.plan([flag, "2"])


def test_explicit_members_are_crossed_with_the_lists_given_beside_them():
    m = recipes.Member
    config = SweepConfig(
        model="mlp", recipes=[m(lr=0.1), m(lr=0.2, seed=5)], seeds=(0, 1)
    )
    got = [(r.lr, r.seed) for r in config.resolved_members()]
    assert got == [(0.1, 0), (0.1, 1), (0.2, 5)]
    alone = SweepConfig(model="mlp", recipes=[m(lr=0.1)])  # defaults: not crossed
    assert [(r.batch_size, r.seed) for r in alone.resolved_members()] == [(32, 0)]


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(optimizer="adam", momentums=(0.0, 0.9)), "momentum .*adam does not use"),
        (dict(schedule="cosine", recipes=[{"gamma": 0.1}, {"gamma": 0.5}]),
         "gamma .*schedule cosine does not use"),
        (dict(optimizer="sgd", recipes=[{"b2": 0.99}, {"b2": 0.999}]),
         "b2 .*optimizer sgd does not use"),
        (dict(weight_decays=(0.0,), weight_decay_modes=("l2", "decoupled")),
         "weight_decay_mode .*weight decay 0 does not use"),
    ],
)  # fmt: skip
def test_varying_what_the_optimizer_or_schedule_ignores_is_refused(values, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig(model="mlp", batch_sizes=(32,), lrs=(0.01,), **values)


def test_members_csv_leaves_what_a_member_ignores_empty(tmp_path):
    config = SweepConfig(
        model="mlp", model_kwargs=(("hidden", (8,)),), batch_sizes=(64,),
        lrs=(0.001,), optimizer="adam", schedule="constant", epochs=1,
        eval_every=10**6,
    )  # fmt: skip
    ds = data.load("synthetic", train_size=256, val_size=128, seed=0)
    out = str(tmp_path / "run")
    sweep.run(config, out, progress=False, plots=False, dataset=ds)
    members = results.read_csv(os.path.join(out, "members.csv"))
    for col in ("momentum", "gamma", "decay_epochs", "warmup_start", "lr_max"):
        assert np.isnan(members[col]).all(), col
    assert members["b1"][0] == 0.9 and members["lr"][0] == 0.001


def test_crossing_holds_for_every_model_of_a_multi_model_sweep():
    m = recipes.Member
    config = SweepConfig(
        models=("mlp", "simple_cnn"), recipes=[m(lr=0.1)], seeds=(0, 1)
    )
    got = [(r.model, r.seed) for r in config.resolved_members()]
    assert got == [("mlp", 0), ("mlp", 1), ("simple_cnn", 0), ("simple_cnn", 1)]
