"""BatchNorm under the sweep: every member keeps and updates its own statistics."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from jaxbatch import data, engine, results, sweep

# A small CNN with a BatchNorm after each convolution: the statistics are the
# engine's business (the "batch_stats" collection), the same for every net;
# tests/test_models.py trains the MobileNets themselves.
MODEL = "simple_cnn_bn"
KW = (("width", 0.25),)


@pytest.fixture(scope="module")
def ds():
    return data.load("synthetic", train_size=192, val_size=64, seed=0)


def _spec(ds):
    return engine.TrainSpec(
        model=MODEL, model_kwargs=KW, num_classes=ds.num_classes,
        image_shape=ds.image_shape, n_train=ds.n_train, batch_size=32,
        eval_batch_size=64,
    )  # fmt: skip


def test_members_keep_their_own_batch_stats(ds):
    spec = _spec(ds)
    hp = engine.stack_hparams([dict(lr=0.05, seed=s) for s in (0, 1, 2)])
    fns = engine.group_fns(spec)
    train = engine.device_train_data(ds.x_train, ds.y_train, ds.mean, ds.std)
    val = engine.device_eval_data(ds.x_val, ds.y_val, ds.mean, ds.std, 64)
    state0 = fns.start_epoch(fns.init(hp), hp)
    stats0 = jax.device_get(state0.batch_stats)
    state, _ = engine.run_steps(fns, spec, state0, hp, train, 2)
    stats = jax.device_get(state.batch_stats)
    means = [leaf for leaf in jax.tree.leaves(stats)]
    # training moved the running statistics ...
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(stats0), means))
    # ... differently for each member (own init, own data order, own batches)
    first = means[0]
    assert not np.allclose(first[0], first[1]) and not np.allclose(first[1], first[2])
    # evaluation uses the running statistics and changes nothing
    ev1 = engine.eval_members(fns, spec, state, val)
    ev2 = engine.eval_members(fns, spec, state, val)
    np.testing.assert_array_equal(ev1["val_loss"], ev2["val_loss"])
    for a, b in zip(jax.tree.leaves(jax.device_get(state.batch_stats)), means):
        np.testing.assert_array_equal(a, b)


def test_batchnorm_member_equals_solo_run(ds, tmp_path):
    # Members called one after another (`loop`) run the very program of a solo
    # run, running statistics included, so a member must equal its solo run to
    # the bit. (Vmapped convolutions round differently, and a BatchNorm net at
    # init amplifies such a change: a MobileNet turned a 1e-6 change of its LR
    # into 6e-3 of its loss within three steps, measured.)
    cfg = sweep.SweepConfig(
        experiment="test", model=MODEL, model_kwargs=KW,
        batch_sizes=(32,), lrs=(0.01, 0.05), epochs=1, eval_every=6,
        eval_batch_size=64, strategy="loop",
    )  # fmt: skip
    solo = cfg.replace(lrs=(0.05,), strategy="unroll")
    for c, name in ((cfg, "all"), (solo, "solo")):
        sweep.run(c, str(tmp_path / name), progress=False, plots=False, dataset=ds)
    a = results.read_csv(os.path.join(tmp_path, "all", "members.csv"))
    b = results.read_csv(os.path.join(tmp_path, "solo", "members.csv"))
    assert a["final_val_loss"][1] == b["final_val_loss"][0]
    assert a["final_train_loss"][1] == b["final_train_loss"][0]
    assert a["final_val_loss"][0] != a["final_val_loss"][1]  # LRs really differ


def test_frozen_members_keep_parameters_and_statistics_exactly(ds):
    """A stopped member and a diverged one do not change while the others train."""
    spec = _spec(ds)
    hp = engine.stack_hparams([dict(lr=lr, seed=0) for lr in (0.05, 0.05, 1e12)])
    fns = engine.group_fns(spec)
    train = engine.device_train_data(ds.x_train, ds.y_train, ds.mean, ds.std)
    state = fns.start_epoch(fns.init(hp), hp)
    state, _ = engine.run_steps(fns, spec, state, hp, train, 1)
    state = state.replace(stopped=np.array([False, True, False]))
    state, _ = engine.run_steps(fns, spec, state, hp, train, 2)
    assert np.asarray(state.diverged).tolist() == [False, False, True]
    before = jax.device_get((state.params, state.batch_stats))
    state, metrics = engine.run_steps(fns, spec, state, hp, train, 2)
    after = jax.device_get((state.params, state.batch_stats))
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(a[1:], b[1:])  # frozen: bit for bit
    moved = [not np.array_equal(a[0], b[0]) for a, b in zip(
        jax.tree.leaves(before), jax.tree.leaves(after))]  # fmt: skip
    assert all(moved)  # member 0 trains on: every parameter and statistic moved
    loss = np.asarray(metrics["loss"])
    assert np.isfinite(loss[0]).all() and np.isnan(loss[1:]).all()
