"""Weight decay modes, starting from trained weights, frozen layers, per-layer
LR multipliers, and early stopping that keeps the best weights."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbatch import data, engine, recipes, results, sweep

MLP = (("hidden", (16,)),)


@pytest.fixture(scope="module")
def ds():
    return data.load("synthetic", train_size=256, val_size=64, seed=0)


def _cfg(**kw) -> sweep.SweepConfig:
    base = dict(
        experiment="test", model="mlp", model_kwargs=MLP, batch_sizes=(32,),
        lrs=(0.05,), epochs=2, eval_every=4, strategy="vmap", schedule="constant",
    )  # fmt: skip
    return sweep.SweepConfig(**{**base, **kw})


def _run(cfg, ds, out):
    sweep.run(cfg, str(out), progress=False, plots=False, dataset=ds)
    return results.read_csv(os.path.join(out, "members.csv"))


def _params(out, member, which="final"):
    return results.load_params(str(out), member, which)["params"]


def _max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # fmt: skip


@pytest.mark.parametrize(
    ("optimizer", "momentum", "same"),
    [("sgd", 0.0, True), ("sgd", 0.9, False), ("adam", 0.0, False)],
)
def test_l2_and_decoupled_agree_only_for_plain_sgd(ds, tmp_path, optimizer,
                                                   momentum, same):  # fmt: skip
    members = [
        recipes.Member(weight_decay=0.05, weight_decay_mode=mode, momentum=momentum)
        for mode in ("l2", "decoupled")
    ]
    lr = 0.05 if optimizer == "sgd" else 0.003
    _run(_cfg(recipes=members, optimizer=optimizer, lrs=(lr,)), ds, tmp_path / "r")
    diff = _max_diff(_params(tmp_path / "r", 0), _params(tmp_path / "r", 1))
    if same:
        assert diff < 1e-6  # (g + wd w) lr == g lr + wd lr w, up to rounding
    else:
        assert diff > 1e-4


def _relabelled(ds, classes=5):
    """The same images with fewer classes: a task that needs a new head."""
    return data.Dataset(**{
        **ds.__dict__, "y_train": ds.y_train % classes, "y_val": ds.y_val % classes,
        "y_test": ds.y_test % classes, "num_classes": classes,
        "class_names": tuple(str(c) for c in range(classes)),
    })  # fmt: skip


def test_init_from_evaluates_exactly_as_the_source_member(ds, tmp_path):
    src = tmp_path / "src"
    members = _run(_cfg(lrs=(0.02, 0.05)), ds, src)
    cfg = _cfg(init_from=f"{src}:1", lrs=(0.01,), seeds=(7,))
    group = sweep.plan_groups(cfg, ds)[0]
    fns = engine.group_fns(group.spec)
    base = jax.tree.map(jnp.asarray, results.load_params(str(src), 1))
    state = fns.init(group.hp, base)  # zero steps of training
    evals = sweep.device_data(ds, group.spec, cfg).evals
    ev = engine.eval_members(fns, group.spec, state, evals["val"])
    assert ev["val_loss"][0] == pytest.approx(members["final_val_loss"][1], abs=1e-6)
    assert ev["val_acc"][0] == pytest.approx(members["final_val_acc"][1], abs=1e-6)
    # without a member, the best one by validation accuracy
    best = int(members["member"][np.argmax(members["val_acc_at_best_loss"])])
    assert results.parse_run_member(str(src)) == (str(src), best)


def test_new_head_and_frozen_layer(ds, tmp_path):
    src = tmp_path / "src"
    _run(_cfg(), ds, src)
    out = tmp_path / "ft"
    five = _relabelled(ds)
    _run(_cfg(init_from=f"{src}:0", freeze=("Dense_0",)), five, out)
    before, after = _params(src, 0), _params(out, 0)
    # the frozen trunk is bit-identical after training; the head is new
    np.testing.assert_array_equal(
        after["Dense_0"]["kernel"], before["Dense_0"]["kernel"]
    )
    np.testing.assert_array_equal(after["Dense_0"]["bias"], before["Dense_0"]["bias"])
    assert after["Dense_1"]["kernel"].shape == (16, 5)
    assert before["Dense_1"]["kernel"].shape == (16, 10)


def test_layer_update_is_multiplier_times_plain_update(ds):
    # float32 differences of parameters near 0.1 carry rounding near 1e-8
    cfg = _cfg(momentums=(0.0,))
    spec = sweep.plan_groups(cfg, ds)[0].spec
    train = engine.device_train_data(ds.x_train, ds.y_train, ds.mean, ds.std)

    def one_step(mults):
        s = spec.__class__(**{**spec.__dict__, "multiplier_patterns": tuple(mults)})
        m = recipes.Member(lr=0.05, momentum=0.0, seed=0, schedule="constant",
                           lr_multipliers=mults)  # fmt: skip
        m = cfg.resolve(m, 0)
        hp = engine.stack_hparams(
            [sweep.member_hparams(m, ds.n_train, 2, tuple(mults))]
        )
        fns = engine.group_fns(s)
        state = fns.start_epoch(fns.init(hp), hp)
        p0 = jax.device_get(state.params)
        state, _ = fns.train_one(state, hp, train)
        return jax.tree.map(lambda a, b: a - b, jax.device_get(state.params), p0)

    plain = one_step({})
    scaled = one_step({"Dense_0": 0.1, "bias": 2.0})
    for layer in ("Dense_0", "Dense_1"):
        for leaf in ("kernel", "bias"):
            mult = (0.1 if layer == "Dense_0" else 1.0) * (
                2.0 if leaf == "bias" else 1.0
            )
            np.testing.assert_allclose(
                scaled[layer][leaf], mult * plain[layer][leaf], rtol=1e-5, atol=1e-8
            )


def test_best_numbers_equal_an_evaluation_of_the_restored_best_weights(ds, tmp_path):
    small = data.load("synthetic", train_size=64, val_size=64, seed=1)
    cfg = _cfg(lrs=(0.3, 1.0), epochs=12, eval_every=2, early_stop_patience=2,
               control_metric="val_loss")  # fmt: skip
    out = tmp_path / "es"
    members = _run(cfg, small, out)
    group = sweep.plan_groups(cfg, small)[0]
    fns = engine.group_fns(group.spec)
    evals = sweep.device_data(small, group.spec, cfg).evals
    state = fns.init(group.hp)
    for i in range(2):
        best = jax.tree.map(jnp.asarray, results.load_params(str(out), i, "best"))
        restored = state.replace(
            params=jax.tree.map(lambda s, b, i=i: s.at[i].set(b), state.params,
                                best["params"]),
        )  # fmt: skip
        ev = engine.eval_members(fns, group.spec, restored, evals["val"])
        # no min_delta: the kept evaluation is the one of the lowest loss
        assert ev["val_loss"][i] == pytest.approx(members["min_val_loss"][i], abs=1e-6)
        assert ev["val_acc"][i] == pytest.approx(
            members["val_acc_at_best_loss"][i], abs=1e-6
        )
        test = engine.eval_members(fns, group.spec, restored, evals["test"])
        assert test["val_acc"][i] == pytest.approx(
            members["best_test_acc"][i], abs=1e-6
        )
    assert (members["stopped"] == "True").any(), "nothing stopped: proves nothing"
