"""Population-based training and Hyperband inside the program.

PBT that exploits nobody is the plain sweep; after an exploit the child
holds its parent's parameters bit for bit and its LR is the parent's times
the factor; the lineage reproduces from the seed; a run killed before and
after an exploit resumes to the same numbers and lineage. Hyperband halves
each bracket among its own members from its own first rung."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from jaxbatch import results, sweep
from jaxbatch.config import SweepConfig
from jaxbatch.engine.group import fetch
from jaxbatch.sweep.hooks import Hook

LRS = (0.003, 0.01, 0.03, 0.1, 0.3, 0.05, 0.02, 0.005)
SPE = 16  # 512 images / 32


def _cfg(**kw):
    base = dict(model="mlp", model_kwargs=(("hidden", (16,)),), batch_sizes=(32,),
                lrs=LRS, seeds=(0,), epochs=4, eval_every_epochs=0.5,
                strategy="vmap", schedule="constant")  # fmt: skip
    return SweepConfig(**{**base, **kw})


def _run(cfg, ds, out, **kw):
    sweep.run(cfg, str(out), progress=False, plots=False, dataset=ds, **kw)
    return results.read_members(str(out)), results.read_history(str(out))


def _lineage(out):
    with open(os.path.join(out, "lineage.csv")) as f:
        text = f.read()
    return text, results.read_csv(os.path.join(out, "lineage.csv"))


def _where(table, mask):
    return {k: v[mask] for k, v in table.items()}


class _Grab(Hook):
    """Every epoch's end (after PBT, before the checkpoint): the params and
    the LRs."""

    def __init__(self):
        self.params, self.lr = {}, {}

    def after_epoch(self, g, epoch):
        self.params[epoch + 1] = fetch(g.state.params)
        self.lr[epoch + 1] = np.asarray(g.hp["lr"])


def test_pbt_that_exploits_nobody_is_the_plain_sweep(fmnist, tmp_path):
    """3 members, quantile 0.25: floor(0.75) = 0 members copy anyone."""
    cfg = _cfg(lrs=LRS[:3])
    plain_m, plain_h = _run(cfg, fmnist, tmp_path / "plain")
    m, h = _run(cfg.replace(pbt="interval=1,quantile=0.25"), fmnist, tmp_path / "pbt")
    np.testing.assert_array_equal(m["final_val_loss"], plain_m["final_val_loss"])
    np.testing.assert_array_equal(h["train_loss"], plain_h["train_loss"])
    _, lin = _lineage(tmp_path / "pbt")
    assert (lin["member"] == lin["parent"]).all()
    assert sorted(set(lin["epoch"].astype(int))) == [0, 1, 2, 3]
    np.testing.assert_array_equal(m["pbt_lr"], m["lr"])
    assert (m["pbt_exploits"] == 0).all()


def test_an_exploit_copies_the_parent_and_perturbs_its_lr(fmnist, tmp_path):
    """quantile 0.25 of 8: the 2 worst by val_loss copy 2 of the best 2; the
    child's parameters equal the parent's bit for bit at that epoch's end,
    its LR is the parent's x 0.8 or x 1.25, and its next epoch's steps use
    it (the LR column of history.csv)."""
    grab = _Grab()
    m, h = _run(_cfg(pbt="interval=2,quantile=0.25"), fmnist, tmp_path / "p",
                hooks=[grab])  # fmt: skip
    _, lin = _lineage(tmp_path / "p")
    step = _where(lin, lin["epoch"].astype(int) == 2)
    children = _where(step, step["exploited"] == "True")
    assert len(children["member"]) == 2
    # the children are the two worst by the validation loss at epoch 2's end
    at2 = h["val_loss"][h["step"] == 2 * SPE]
    assert set(children["member"].astype(int)) == set(np.argsort(at2)[-2:])
    assert set(children["parent"].astype(int)) <= set(np.argsort(at2)[:2])
    for c, p, lr in zip(children["member"].astype(int), children["parent"].astype(int),
                        children["lr"]):  # fmt: skip
        leaves = jax.tree.leaves(grab.params[2])
        for leaf in leaves:
            np.testing.assert_array_equal(leaf[c], leaf[p])
        ratio = grab.lr[2][c] / np.float32(LRS[p])
        assert min(abs(ratio - 0.8), abs(ratio - 1.25)) < 1e-6, ratio
        np.testing.assert_allclose(lr, grab.lr[2][c], rtol=1e-6)
        mine = h["lr"][h["member"] == c]
        np.testing.assert_allclose(mine[2 * SPE :], grab.lr[2][c], rtol=1e-6)
        np.testing.assert_allclose(mine[: 2 * SPE], LRS[c], rtol=1e-6)
        assert float(m["pbt_lr"][c]) == pytest.approx(float(grab.lr[2][c]), rel=1e-6)
        assert int(m["pbt_exploits"][c]) == 1
    # the others keep their parameters apart (a member not exploited is not a copy)
    kept = [int(i) for i in step["member"][step["exploited"] == "False"]]
    leaf = jax.tree.leaves(grab.params[2])[0]
    assert len({leaf[i].tobytes() for i in kept}) == len(kept)


def test_the_lineage_reproduces_from_its_seed(fmnist, tmp_path):
    cfg = _cfg(pbt="interval=1,quantile=0.25,fields=lr:momentum", epochs=3)
    _run(cfg, fmnist, tmp_path / "a")
    _run(cfg, fmnist, tmp_path / "b")
    _run(cfg.replace(pbt="interval=1,quantile=0.25,fields=lr:momentum,seed=5"),
         fmnist, tmp_path / "c")  # fmt: skip
    a, lin = _lineage(tmp_path / "a")
    assert a == _lineage(tmp_path / "b")[0]
    assert a != _lineage(tmp_path / "c")[0]
    # momentum explored through 1 - momentum: 0.9 -> 0.92 or 0.875
    moved = _where(lin, lin["exploited"] == "True")
    assert set(np.round(moved["momentum"].astype(float), 6)) <= {
        0.92,
        0.875,
        0.9,
        0.936,
        0.84375,
    }


class _KillAfter(Hook):
    def __init__(self, epoch):
        self.epoch = epoch

    def after_epoch(self, g, epoch):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("kill", [2, 3])
def test_a_run_killed_at_an_exploit_resumes_to_the_same_numbers(fmnist, tmp_path, kill):
    """PBT at epoch 2's end; killed there before its checkpoint (2: the
    resume redoes epoch 2 and its exploit) or one epoch later (3: the
    exploit and its new LRs come back from the checkpoint)."""
    cfg = _cfg(pbt="interval=2,quantile=0.25,fields=lr:momentum")
    full_m, full_h = _run(cfg, fmnist, tmp_path / "full", hooks=[_KillAfter(0)])
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, fmnist, tmp_path / "k", hooks=[_KillAfter(kill)])
    m, h = _run(cfg, fmnist, tmp_path / "k", hooks=[_KillAfter(0)], resume=True)
    np.testing.assert_allclose(m["final_val_loss"], full_m["final_val_loss"], rtol=1e-6)
    np.testing.assert_allclose(h["lr"], full_h["lr"], rtol=1e-7)
    np.testing.assert_allclose(h["val_loss"], full_h["val_loss"], rtol=1e-6)
    assert _lineage(tmp_path / "k")[0] == _lineage(tmp_path / "full")[0]


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(pbt="quantile=0.6"), r"quantile must be in \(0, 0.5\]"),
        (dict(pbt="quantile=0"), r"quantile must be in \(0, 0.5\]"),
        (dict(pbt="interval=4"), "interval=4 is not before the last epoch"),
        (dict(pbt="fields=lr:batch_size"), "cannot explore 'batch_size'"),
        (dict(pbt="perturb=x"), "perturb must be positive factors"),
        (dict(pbt="resample=1.5"), "resample must be a probability"),
        (dict(pbt="every=2"), "pbt has no setting 'every'"),
        (dict(pbt="interval=1", successive_halving="eta=2"), "not both"),
        (dict(hyperband="eta=1"), "eta must be a number above 1"),
        (dict(hyperband="eta=2", search="random:4"), "leave out --search random:4"),
        (dict(hyperband="eta=3,min=2", epochs=5), "needs at least 6 epochs"),
        (dict(hyperband="eta=3", successive_halving="eta=3"), "not both"),
    ],
)
def test_bad_population_settings_are_one_line_errors(kw, message):
    with pytest.raises(ValueError, match=message) as err:
        _cfg(**kw)
    assert "\n" not in str(err.value)


def test_the_flags_read_into_the_config():
    from jaxbatch import cli

    parser = cli.build_parser("", {"quick": {}}, "sweep")
    args = parser.parse_args(["--pbt", "interval=2,quantile=0.25,perturb=0.8:1.25",
                              "--hyperband", "eta=3,min=1"])  # fmt: skip
    assert args.pbt == (("interval", 2), ("quantile", 0.25), ("perturb", "0.8:1.25"))
    cfg = _cfg(pbt=args.pbt)
    assert cfg.population.exploit["perturb"] == (0.8, 1.25)
    assert cfg.population.exploit["fields"] == ("lr",)
    assert args.hyperband == (("eta", 3), ("min", 1))


def test_hyperband_halves_each_bracket_from_its_own_first_rung(fmnist, tmp_path):
    """4 epochs, eta 2 (Li et al. with R = 4): bracket 2 draws 4 members
    ranked after epochs 1 and 2, bracket 1 draws 3 ranked after epoch 2,
    bracket 0 trains its 3 to the end; one group, one program."""
    cfg = SweepConfig(model="mlp", model_kwargs=(("hidden", (16,)),), batch_sizes=(32,),
                      seeds=(0,), epochs=4, eval_every_epochs=0.5, strategy="vmap",
                      hyperband="eta=2,min=1", lr_range=(1e-3, 0.3),
                      compaction="exact")  # fmt: skip
    assert [(b["bracket"], b["n"], b["rungs"]) for b in cfg.population.brackets(4)] == [
        (2, 4, (1, 2)), (1, 3, (2,)), (0, 3, ()),
    ]  # fmt: skip
    m, h = _run(cfg, fmnist, tmp_path / "hb")
    bracket = m["bracket"].astype(int)
    steps = m["steps"].astype(int) // SPE
    assert sorted(steps[bracket == 2]) == [1, 1, 2, 4]
    assert sorted(steps[bracket == 1]) == [2, 2, 4]
    assert sorted(steps[bracket == 0]) == [4, 4, 4]
    # bracket 1's survivor: the lowest validation loss of its 3 at epoch 2
    ones = np.flatnonzero(bracket == 1)
    at2 = np.array([h["val_loss"][(h["member"] == i) & (h["step"] == 2 * SPE)][0]
                    for i in ones])  # fmt: skip
    assert steps[ones[np.argmin(at2)]] == 4
    meta = results.read_json(os.path.join(tmp_path / "hb", "config.json"))
    assert meta["cost"]["groups"][0]["slots"] == [10, 8, 5, 5]  # 4+3+3, 2+3+3, 1+1+3


def test_the_ancestry_follows_each_exploit_back_to_its_parent():
    """Member 2 copied member 0 after epoch 2, and member 0 had copied member
    1 after epoch 1: epoch 1 was trained by 1's weights, epoch 2 by 0's,
    epochs 3-4 by 2's own."""
    from jaxbatch.plots.pbt import ancestry

    lineage = {
        "epoch": np.array([1, 1, 1, 2, 2, 2, 3, 3, 3]),
        "member": np.array([0, 1, 2] * 3),
        "parent": np.array([1, 1, 2, 0, 1, 0, 0, 1, 2]),
        "exploited": np.array(
            [
                "True",
                "False",
                "False",
                "False",
                "False",
                "True",
                "False",
                "False",
                "False",
            ]
        ),  # fmt: skip
    }
    assert ancestry(lineage, 2, 4) == [1, 0, 2, 2]
    assert ancestry(lineage, 1, 4) == [1, 1, 1, 1]


def test_the_pbt_experiment_runs_end_to_end(tmp_path):
    """experiments.pbt on tiny data: its three arms, a lineage per
    population, both figures and the verdict in numbers."""
    from experiments import pbt as exp

    out = tmp_path / "pbt"
    exp.EXPERIMENT.main(["--dataset", "synthetic", "--train-size", "256",
                         "--val-size", "128", "--epochs", "3", "--no-progress",
                         "--out", str(out)])  # fmt: skip
    from jaxbatch.plots.pbt import picks

    rows = picks(str(out))
    assert sorted({r["arm"] for r in rows}) == ["fixed", "hand_tuned", "pbt"]
    steps = {r["arm"]: r["computed_steps"] for r in rows}
    assert steps["pbt"] == steps["fixed"] == steps["hand_tuned"]  # equal compute
    for r in range(exp.SIZES["quick"][1]):
        _, lin = _lineage(out / f"pbt_{r}")
        assert (lin["exploited"] == "True").sum() == 2 * 3  # 3 of 12, at epochs 1, 2
    for name in exp.EXPERIMENT.figures:
        assert os.path.getsize(out / "plots" / name) > 10_000
    verdict = results.read_json(os.path.join(out, "verdict.json"))["verdict"]
    assert "PBT against the tuned step schedule" in verdict[1]
    assert "decays in" in verdict[2]


DEVICES = """
import json, sys
import jax
from jaxbatch import data, results, sweep
assert jax.device_count() == 8, jax.devices()
ds = data.load("synthetic", train_size=256, val_size=64, seed=0)
cfg = sweep.SweepConfig(
    experiment="t", model="mlp", model_kwargs=(("hidden", (16,)),),
    batch_sizes=(32,), lrs=tuple(0.01 * 1.3 ** i for i in range(8)), epochs=3,
    eval_every_epochs=0.5, strategy="vmap", compile_cache=False,
    pbt="interval=1,quantile=0.25,fields=lr:momentum")
out = {}
for name, devices in (("1", 1), ("4", 4)):
    path = f"{sys.argv[1]}/d{name}"
    sweep.run(cfg.replace(devices=devices), path, progress=False, plots=False,
              dataset=ds)
    m = results.read_members(path)
    out[name] = {"val": m["final_val_loss"].tolist(),
                 "lineage": open(path + "/lineage.csv").read()}
print(json.dumps(out))
"""


def test_pbt_over_devices_equals_one_device(tmp_path):
    """The exploit's copy keeps the member axis split over 4 devices: the
    numbers and the lineage are those of 1 device."""
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    proc = subprocess.run([sys.executable, "-c", DEVICES, str(tmp_path)], cwd=root,
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["4"]["lineage"] == out["1"]["lineage"]
    assert "True" in out["1"]["lineage"]
    np.testing.assert_allclose(out["4"]["val"], out["1"]["val"], rtol=1e-5)
