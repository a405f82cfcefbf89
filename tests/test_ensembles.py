"""Ensembles for free: the test accuracy of each arm's averaged prediction
equals a hand computation from the members' saved final weights."""

from __future__ import annotations

import os

import jax
import numpy as np

from jaxbatch import models, results, sweep
from jaxbatch.config import SweepConfig


def test_the_ensemble_accuracy_is_the_hand_computed_one(fmnist, tmp_path):
    kw = (("hidden", (16,)),)
    cfg = SweepConfig(model="mlp", model_kwargs=kw, batch_sizes=(32,), lrs=(0.02, 0.1),
                      seeds=(0, 1, 2), epochs=2, strategy="vmap")  # fmt: skip
    out = str(tmp_path / "e")
    sweep.run(cfg, out, progress=False, plots=False, dataset=fmnist)
    m = results.read_members(out)
    ens = results.read_csv(os.path.join(out, "ensembles.csv"))
    assert list(ens["seeds"]) == [3, 3]
    net = models.get_model("mlp", num_classes=10, hidden=(16,))
    x = (fmnist.x_test / 255.0 - fmnist.mean) / fmnist.std
    for row in range(2):
        ids = [int(i) for i in str(ens["members"][row]).split()]
        assert sorted({float(m["lr"][i]) for i in ids}) == [float(ens["lr"][row])]
        probs = []
        for i in ids:
            w = results.load_params(out, i)
            logits = net.apply({"params": w["params"]}, x.astype(np.float32))
            probs.append(np.asarray(jax.nn.softmax(logits, -1)))
        p = np.mean(probs, 0)
        want = np.mean(np.argmax(p, -1) == fmnist.y_test)
        assert abs(float(ens["ensemble_test_acc"][row]) - want) <= 1 / len(x)
        accs = [float(m["test_acc"][i]) for i in ids]
        np.testing.assert_allclose(float(ens["mean_test_acc"][row]), np.mean(accs),
                                   rtol=1e-6)  # fmt: skip


def test_no_ensemble_without_an_arm_of_two_seeds(fmnist, tmp_path):
    cfg = SweepConfig(model="mlp", model_kwargs=(("hidden", (16,)),),
                      batch_sizes=(32,), lrs=(0.02, 0.1), seeds=(0,), epochs=1,
                      strategy="vmap")  # fmt: skip
    out = str(tmp_path / "one")
    sweep.run(cfg, out, progress=False, plots=False, dataset=fmnist)
    assert not os.path.exists(os.path.join(out, "ensembles.csv"))
