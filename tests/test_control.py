"""Plateau and early-stopping rules wired into the engine, per member."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxbatch import data, results, schedules, sweep


@pytest.fixture(scope="module")
def ds():
    return data.load("synthetic", train_size=256, val_size=128, seed=0)


def _cfg(**kw):
    base = dict(
        experiment="test", model="mlp", model_kwargs=(("hidden", (16,)),),
        batch_sizes=(32,), lrs=(0.02, 0.5), epochs=6, eval_every=4,
        schedule="constant", strategy="vmap",
    )  # fmt: skip
    return sweep.SweepConfig(**{**base, **kw})


def _run(cfg, ds, out):
    sweep.run(cfg, str(out), progress=False, plots=False, dataset=ds)
    members = results.read_csv(os.path.join(out, "members.csv"))
    history = results.read_csv(os.path.join(out, "history.csv"))
    return members, history


def test_plateau_scale_lowers_each_members_lr(ds, tmp_path):
    cfg = _cfg(plateau_factor=0.5, plateau_patience=0, plateau_threshold=0.05)
    members, hist = _run(cfg, ds, tmp_path / "a")
    rule = schedules.ReduceOnPlateau(factor=0.5, patience=0, threshold=0.05)
    reduced = 0
    for member, lr in zip(members["member"], members["lr"]):
        rows = hist["member"] == member
        steps, lrs, val = hist["step"][rows], hist["lr"][rows], hist["val_loss"][rows]
        state, scale = rule.init(), np.ones_like(lrs)
        # Replay the rule on the member's own evaluations: from the step after
        # an evaluation on, the LR must carry that evaluation's scale.
        for step, value in zip(steps[np.isfinite(val)], val[np.isfinite(val)]):
            state = rule.update(state, value)
            scale[steps > step] = float(state.scale)
        np.testing.assert_allclose(lrs, lr * scale, rtol=1e-6)
        # members.csv reports the scale after the last evaluation
        final = members["lr_scale"][members["member"] == member][0]
        assert final == pytest.approx(float(state.scale), rel=1e-6)
        reduced += scale[-1] < 1
    assert reduced >= 1, "no member hit a plateau: the test proves nothing"


def test_early_stopped_member_is_frozen_and_others_go_on(ds, tmp_path):
    plain = _cfg(lrs=(0.02, 3.0), epochs=5)
    stopping = plain.replace(early_stop_patience=1)
    m0, h0 = _run(plain, ds, tmp_path / "plain")
    m1, h1 = _run(stopping, ds, tmp_path / "stop")
    stopped = m1["stopped"] == "True"
    assert stopped.any(), "no member stopped: the test proves nothing"
    for member in m1["member"]:
        rows = h1["member"] == member
        ref = h0["member"] == member
        loss, ref_loss = h1["train_loss"][rows], h0["train_loss"][ref]
        trained = np.isfinite(loss)
        # Up to its stop a member trains exactly as without the rule ...
        np.testing.assert_allclose(loss[trained], ref_loss[trained], rtol=1e-6)
        if stopped[m1["member"] == member][0]:
            # ... and after it, nothing: every later step is frozen.
            first_frozen = np.flatnonzero(~trained)[0]
            assert not trained[first_frozen:].any()
            val = h1["val_loss"][rows]
            done = np.flatnonzero(np.isfinite(val))
            assert int(m1["steps"][m1["member"] == member][0]) == first_frozen
            assert h1["step"][rows][done[-1]] <= first_frozen + 4
        else:
            assert trained.all()
