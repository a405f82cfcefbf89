"""A member two arms share (the batch-16 start of "same LR" and of "linear
scaling") trains once and belongs to both arms; a true twin is refused."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxbatch import data, recipes, results, stats, sweep
from jaxbatch.config import SweepConfig

M = recipes.Member


def _arms(seeds=(0, 1)):
    """Two scaling rules from batch 16 at LR 0.05: their base member is one
    recipe listed under two tags."""
    return [
        M(batch_size=16, lr=0.05, tags={"rule": "same LR"}),
        M(batch_size=64, lr=0.05, tags={"rule": "same LR"}),
        M(batch_size=16, lr=0.05, tags={"rule": "linear"}),
        M(batch_size=64, lr=0.2, tags={"rule": "linear"}),
    ]


def test_a_shared_member_is_planned_once_and_a_twin_is_refused():
    config = SweepConfig(model="mlp", recipes=_arms(), seeds=(0, 1), epochs=1)
    listed = config.resolved_members()
    assert len(listed) == 8  # 4 recipes x 2 seeds, in order
    # the linear arm's batch-16 members (4, 5) train as the same-LR arm's (0, 1)
    assert config.shared_members() == {4: 0, 5: 1}
    twin = [M(lr=0.1, tags={"arm": "a"}), M(lr=0.1, tags={"arm": "a"})]
    with pytest.raises(ValueError, match="members 0 and 1 are identical"):
        SweepConfig(model="mlp", recipes=twin)
    # other tags do not excuse a field the optimizer ignores
    ignored = [M(lr=0.1, momentum=0.0, tags={"arm": "a"}),
               M(lr=0.1, momentum=0.9, tags={"arm": "b"})]  # fmt: skip
    with pytest.raises(ValueError, match="momentum .*adam does not use"):
        SweepConfig(model="mlp", optimizer="adam", recipes=ignored)


def test_a_shared_member_trains_once_and_is_a_member_of_both_arms(tmp_path):
    ds = data.load("synthetic", train_size=256, val_size=128, seed=0)
    config = SweepConfig(
        model="mlp", model_kwargs=(("hidden", (16,)),), recipes=_arms(),
        seeds=(0, 1), epochs=2, eval_every=4, strategy="vmap",
    )  # fmt: skip
    out = str(tmp_path / "run")
    sweep.run(config, out, progress=False, plots=False, dataset=ds)
    meta = results.read_json(os.path.join(out, "config.json"))
    trained = [m for g in meta["groups"] for m in g["members"]]
    assert sorted(trained) == [0, 1, 2, 3, 6, 7]  # 6 trainings for 8 members
    assert {k: v for g in meta["groups"] for k, v in g["shared"].items()} == {
        "4": 0, "5": 1,
    }  # fmt: skip
    assert sum(g["members"] for g in meta["cost"]["groups"]) == 6

    members = results.read_members(out)
    history = results.read_history(out)
    assert list(members["member"]) == list(range(8))
    row = {int(m): i for i, m in enumerate(members["member"])}
    for shared, base in ((4, 0), (5, 1)):
        a, b = row[shared], row[base]
        assert members["rule"][a] == "linear" and members["rule"][b] == "same LR"
        assert members["shares_training_of"][a] == base
        for col in ("test_acc", "final_val_loss", "final_train_loss", "steps"):
            assert members[col][a] == members[col][b], col
        ha, hb = history["member"] == shared, history["member"] == base
        assert ha.sum() == hb.sum() > 0
        np.testing.assert_array_equal(history["train_loss"][ha],
                                      history["train_loss"][hb])  # fmt: skip
        np.testing.assert_array_equal(history["val_acc"][ha], history["val_acc"][hb])
        assert os.path.exists(os.path.join(out, "params", f"member_{shared}.msgpack"))
    # Each rule is an arm with its own batch-16 cell, seeds 0 and 1.
    cells = {(v["rule"], int(v["batch_size"])): len(r) for v, r in
             stats.arms(members, fields=["rule", "batch_size"])}  # fmt: skip
    assert cells == {("same LR", 16): 2, ("same LR", 64): 2,
                     ("linear", 16): 2, ("linear", 64): 2}  # fmt: skip
