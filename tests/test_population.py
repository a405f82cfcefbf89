"""Population control inside the program: successive halving and compaction.

A member that survives every rung equals its solo run; a member dropped at a
rung has its numbers at that epoch; once members stop for good the group
trains the others only, on fewer slots; a run killed after a rung resumes
to the same numbers."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxbatch import recipes, results, sweep
from jaxbatch.config import SweepConfig
from jaxbatch.sweep.hooks import Hook
from jaxbatch.sweep.population import slot_count

LRS = (0.003, 0.01, 0.03, 0.1, 0.3, 0.05)


def _cfg(**kw):
    base = dict(model="mlp", model_kwargs=(("hidden", (16,)),), batch_sizes=(32,),
                lrs=LRS, seeds=(0,), epochs=4, eval_every_epochs=0.5,
                strategy="vmap")  # fmt: skip
    return SweepConfig(**{**base, **kw})


def _run(cfg, ds, out, **kw):
    sweep.run(cfg, str(out), progress=False, plots=False, dataset=ds, **kw)
    meta = results.read_json(os.path.join(out, "config.json"))
    return results.read_members(str(out)), results.read_history(str(out)), meta


def test_halving_keeps_the_best_and_each_member_has_its_plain_numbers(fmnist, tmp_path):
    """eta=2 from epoch 1: 6 -> 3 -> 1 members (rungs at epochs 1 and 2).
    The survivor equals the plain sweep's member; every dropped member's
    history is the plain one's up to its rung, and its final numbers are the
    plain member's at that epoch's evaluation."""
    plain_m, plain_h, _ = _run(_cfg(), fmnist, tmp_path / "plain")
    m, h, meta = _run(_cfg(successive_halving="eta=2,first=1"), fmnist, tmp_path / "sh")
    spe = 16  # 512 images / 32
    steps = m["steps"].astype(int)
    assert sorted(steps) == [spe, spe, spe, 2 * spe, 2 * spe, 4 * spe]
    # the rung ranks by the validation loss of the epoch's end
    ends = {e: plain_h["val_loss"][(plain_h["step"] == e * spe)] for e in (1, 2)}
    first = np.argsort(ends[1])[:3]
    assert set(np.flatnonzero(steps > spe)) == set(first)
    survivor = int(np.flatnonzero(steps == 4 * spe)[0])
    assert survivor == first[np.argmin(ends[2][first])]
    assert m["stopped"][survivor] == "False"
    np.testing.assert_allclose(
        m["final_val_loss"][survivor], plain_m["final_val_loss"][survivor], rtol=1e-5
    )
    for i in range(len(LRS)):
        mine, theirs = h["member"] == i, plain_h["member"] == i
        n = steps[i]
        np.testing.assert_allclose(
            h["train_loss"][mine][:n], plain_h["train_loss"][theirs][:n], rtol=1e-5
        )
        assert np.isnan(h["train_loss"][mine][n:]).all()
        at_stop = plain_h["val_loss"][theirs][n - 1]  # the evaluation at its rung
        np.testing.assert_allclose(m["final_val_loss"][i], at_stop, rtol=1e-5)
        assert np.isfinite(m["test_acc"][i])
    # compaction: 6 slots, then 4 (3 members padded to a power of two), then 1
    assert meta["cost"]["groups"][0]["slots"] == [6, 4, 1, 1]
    c = meta["cost"]["compute"]
    assert c["member_steps"] == steps.sum()
    assert c["computed_steps"] == spe * (6 + 4 + 1 + 1)
    assert c["every_member_steps"] == spe * 6 * 4
    np.testing.assert_allclose(c["saved_share"], 1 - 12 / 24)
    # the verdict and the report say it
    from jaxbatch import report

    line = report.standard_verdict(str(tmp_path / "sh"))[-1]
    assert line.startswith(f"Compute: {spe * 12:,} member-steps computed"), line
    assert "50% fewer than the 384 of training every member" in line
    assert "(50% saved by stopped members)" in report._compute_text(meta)


def test_compaction_leaves_early_stopped_and_diverged_numbers_unchanged(
    fmnist, tmp_path
):
    """Early stopping (tiny LRs stop at once) and a diverging LR: the members
    compacted away, the numbers those of the run without compaction."""
    cfg = dict(lrs=(1e-7, 2e-7, 40.0, 0.05), epochs=3,
               early_stop_patience_epochs=1.0)  # fmt: skip
    off_m, off_h, off = _run(_cfg(**cfg, compaction="off"), fmnist, tmp_path / "off")
    on_m, on_h, on = _run(_cfg(**cfg, compaction="exact"), fmnist, tmp_path / "on")
    assert off["cost"]["groups"][0]["slots"] == [4, 4, 4]
    assert on["cost"]["groups"][0]["slots"][-1] < 4  # the stopped ones are gone
    assert on_m["diverged"][2] == "True" and off_m["diverged"][2] == "True"
    for col in ("stopped", "diverged", "steps", "best_val_step"):
        np.testing.assert_array_equal(on_m[col], off_m[col], err_msg=col)
    for col in ("final_val_loss", "test_acc", "best_test_acc", "train_eval_loss"):
        np.testing.assert_allclose(on_m[col], off_m[col], rtol=1e-5, err_msg=col)
    for col in ("train_loss", "val_loss", "lr"):
        np.testing.assert_allclose(on_h[col], off_h[col], rtol=1e-5, err_msg=col)


class _KillAfter(Hook):
    """Interrupt the run once epoch ``epoch`` (1-based) has been checkpointed."""

    name = "kill_after"

    def __init__(self, epoch):
        self.epoch = epoch

    def after_epoch(self, g, epoch):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("kill", [1, 2])
def test_a_run_killed_at_a_rung_resumes_to_the_same_numbers(fmnist, tmp_path, kill):
    """Killed right after the checkpoint of a rung's epoch (1: the first rung
    decided and saved; 2: on fewer slots, the second one too)."""
    cfg = _cfg(successive_halving="eta=2,first=1")
    full_m, full_h, _ = _run(cfg, fmnist, tmp_path / "full", hooks=[_KillAfter(0)])
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, fmnist, tmp_path / "k", hooks=[_KillAfter(kill)])
    m, h, meta = _run(cfg, fmnist, tmp_path / "k", hooks=[_KillAfter(0)], resume=True)
    for col in ("stopped", "steps"):
        np.testing.assert_array_equal(m[col], full_m[col], err_msg=col)
    np.testing.assert_allclose(m["final_val_loss"], full_m["final_val_loss"], rtol=1e-6)
    np.testing.assert_allclose(h["val_loss"], full_h["val_loss"], rtol=1e-6)
    assert meta["cost"]["groups"][0]["slots"] == [6, 4, 1, 1]


@pytest.mark.parametrize(
    "value, message",
    [
        ("eta=1", "eta must be a number above 1"),
        ("eta=3,first=4", "first=4 is not before the last epoch"),
        ("eta=3,first=0.5", "first must be a whole number of epochs"),
        ("eta=3,rung=2", "has no setting 'rung'"),
        ("eta=3,metric=acc", "unknown successive_halving metric 'acc'"),
        ("eta", "is not KEY=VALUE"),
    ],
)
def test_bad_halving_settings_are_one_line_errors(value, message):
    with pytest.raises(ValueError, match=message):
        _cfg(successive_halving=value)


def test_rungs_and_slot_counts():
    assert _cfg(successive_halving="eta=3,first=1", epochs=27).population.rungs(27) == (
        1, 3, 9,
    )  # fmt: skip
    assert _cfg(successive_halving={"eta": 2, "first": 2}, epochs=9).population.rungs(
        9
    ) == (2, 4, 8)
    assert [slot_count(n, 1, "pow2") for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 16]
    assert [slot_count(n, 4, "pow2") for n in (1, 5, 9)] == [4, 8, 16]
    assert [slot_count(n, 4, "exact") for n in (1, 5, 9)] == [4, 8, 12]


def test_the_flag_reads_into_the_config():
    from jaxbatch import cli

    parser = cli.build_parser("", {"quick": {}}, "sweep")
    args = parser.parse_args(["--successive-halving", "eta=3,first=2,metric=val_acc"])
    assert args.successive_halving == (("eta", 3), ("first", 2), ("metric", "val_acc"))
    members = [recipes.Member(lr=0.1)]
    cfg = SweepConfig(model="mlp", recipes=members, epochs=5,
                      successive_halving=args.successive_halving)  # fmt: skip
    assert cfg.population.halving == {"eta": 3.0, "first": 2, "metric": "val_acc"}


DEVICES = """
import json, sys
import jax
from jaxbatch import data, results, sweep
assert jax.device_count() == 8, jax.devices()
ds = data.load("synthetic", train_size=256, val_size=64, seed=0)
cfg = sweep.SweepConfig(
    experiment="t", model="mlp", model_kwargs=(("hidden", (16,)),),
    batch_sizes=(32,), lrs=tuple(0.01 * 1.3 ** i for i in range(10)), epochs=3,
    eval_every_epochs=0.5, strategy="vmap", compile_cache=False,
    successive_halving="eta=2,first=1")
out = {}
runs = (("1", 1, "vmap"), ("4", 4, "vmap"), ("loop2", 2, "loop"))
for name, devices, strategy in runs:
    path = f"{sys.argv[1]}/d{name}"
    sweep.run(cfg.replace(devices=devices, strategy=strategy), path, progress=False,
              plots=False, dataset=ds)
    m = results.read_members(path)
    c = results.read_json(path + "/config.json")["cost"]["groups"][0]
    out[name] = {"val": m["final_val_loss"].tolist(), "steps": m["steps"].tolist(),
                 "slots": c["slots"]}
print(json.dumps(out))
"""


def test_compaction_over_devices_keeps_the_member_axis_split(tmp_path):
    """10 members halved to 5 and 2: on 4 devices (padded to 12) 12 -> 8 -> 4
    slots (whole blocks of 4), and on 2 devices under ``loop``; the numbers
    those of 1 device."""
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    proc = subprocess.run([sys.executable, "-c", DEVICES, str(tmp_path)], cwd=root,
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["1"]["slots"] == [10, 8, 2]  # 5 then 2 survivors, padded to pow2
    assert out["4"]["slots"] == [12, 8, 4]  # whole blocks of 4
    assert out["loop2"]["slots"] == [10, 8, 2]
    for name in ("4", "loop2"):
        assert out[name]["steps"] == out["1"]["steps"], name
        np.testing.assert_allclose(out[name]["val"], out["1"]["val"], rtol=1e-5)


def test_the_planned_compute_of_halving_is_what_exact_compaction_runs():
    """experiments.successive_halving sizes its equal-compute search by the
    plan: 6 members, eta 2, 4 epochs: 6 + 3 + 1 + 1 member-epochs, the
    slots exact compaction runs (pow2 runs 6, 4, 1, 1)."""
    from experiments.successive_halving import planned_member_epochs

    assert planned_member_epochs(6, 4, eta=2) == 11
    assert planned_member_epochs(27, 9, eta=3) == 27 + 9 * 2 + 3 * 6
    assert sum(slot_count(n, 1, "exact") for n in (6, 3, 1, 1)) == 11
