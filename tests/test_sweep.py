"""The sweep engine end to end: member == solo run, divergence, resume, schedule,
learning on real data, and early, clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxbatch import results, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_CNN = (("width", 0.25),)


def _config(**kw) -> sweep.SweepConfig:
    base = dict(
        experiment="test",
        model="simple_cnn",
        model_kwargs=SMALL_CNN,
        batch_sizes=(32,),
        lrs=(0.01, 0.02),
        epochs=1,
        eval_every=8,
        strategy="vmap",
    )
    return sweep.SweepConfig(**{**base, **kw})


def _run(config, ds, out):
    sweep.run(config, str(out), progress=False, plots=False, dataset=ds)
    return results.read_csv(os.path.join(out, "members.csv"))


def _row(members, **match):
    sel = np.ones(len(members["member"]), bool)
    for key, value in match.items():
        sel &= members[key] == value
    assert sel.sum() == 1, (match, members)
    return {k: v[sel][0] for k, v in members.items()}


def test_member_equals_solo_run(fmnist, tmp_path):
    both = _run(_config(lrs=(0.01, 0.02)), fmnist, tmp_path / "both")
    solo = _run(_config(lrs=(0.02,)), fmnist, tmp_path / "solo")
    a, b = _row(both, lr=0.02), _row(solo, lr=0.02)
    assert abs(a["final_val_loss"] - b["final_val_loss"]) < 1e-4
    assert abs(a["final_train_loss"] - b["final_train_loss"]) < 1e-4
    # and the two LRs really trained differently
    assert _row(both, lr=0.01)["final_val_loss"] != a["final_val_loss"]


def test_loop_member_is_its_solo_run_to_the_bit(fmnist, tmp_path):
    # `loop` calls the one-member program once per member: a member of a loop
    # sweep must equal the solo run (one member runs the plain program) exactly
    both = _run(_config(lrs=(0.01, 0.02), strategy="loop"), fmnist, tmp_path / "b")
    solo = _run(_config(lrs=(0.02,), strategy="unroll"), fmnist, tmp_path / "s")
    a, b = _row(both, lr=0.02), _row(solo, lr=0.02)
    assert a["final_val_loss"] == b["final_val_loss"]
    assert a["final_train_loss"] == b["final_train_loss"]
    assert _row(both, lr=0.01)["final_val_loss"] != a["final_val_loss"]


@pytest.mark.parametrize("strategy", ["map", "unroll", "loop", "chunk:2"])
def test_strategies_equal_vmap(fmnist, tmp_path, strategy):
    cfg = _config(model="mlp", model_kwargs=(("hidden", (32,)),), lrs=(0.01, 0.05, 0.1))
    ref = _run(cfg, fmnist, tmp_path / "vmap")
    other = _run(cfg.replace(strategy=strategy), fmnist, tmp_path / "x")
    np.testing.assert_array_equal(other["member"], ref["member"])  # padding hidden
    np.testing.assert_allclose(
        other["final_val_loss"], ref["final_val_loss"], atol=1e-5
    )


def test_diverging_member_is_flagged_and_isolated(fmnist, tmp_path):
    cfg = _config(model="mlp", model_kwargs=(("hidden", (32,)),), epochs=2)
    with_bad = _run(cfg.replace(lrs=(0.01, 1e4, 0.02)), fmnist, tmp_path / "a")
    without = _run(cfg, fmnist, tmp_path / "b")
    bad = _row(with_bad, lr=1e4)
    assert str(bad["diverged"]) == "True"
    assert np.isnan(bad["final_val_loss"])
    for lr in (0.01, 0.02):
        good, ref = _row(with_bad, lr=lr), _row(without, lr=lr)
        assert str(good["diverged"]) == "False"
        assert abs(good["final_val_loss"] - ref["final_val_loss"]) < 1e-5
        assert abs(good["max_val_acc"] - ref["max_val_acc"]) < 1e-6


def test_step_decay_in_history_matches_formula(fmnist, tmp_path):
    cfg = _config(model="mlp", model_kwargs=(("hidden", (16,)),), lrs=(0.05, 0.2),
                  epochs=4, gamma=0.5, decay_epochs=1.5)  # fmt: skip
    out = tmp_path / "run"
    _run(cfg, fmnist, out)
    hist = results.read_csv(os.path.join(out, "history.csv"))
    spe = 512 // 32
    step_size = round(1.5 * spe)
    for member, lr in ((0, 0.05), (1, 0.2)):
        rows = hist["member"] == member
        t = hist["step"][rows] - 1  # the LR used by update t (0-based)
        expected = lr * 0.5 ** np.floor(t / step_size)
        np.testing.assert_allclose(hist["lr"][rows], expected, rtol=1e-6)
        assert len(t) == 4 * spe


def test_training_lowers_validation_loss_on_fashion_mnist(fmnist, tmp_path):
    cfg = _config(lrs=(0.05,), epochs=3, eval_every=16)
    out = tmp_path / "run"
    members = _run(cfg, fmnist, out)
    hist = results.read_csv(os.path.join(out, "history.csv"))
    val = hist["val_loss"][np.isfinite(hist["val_loss"])]
    assert val[-1] < 0.8 * val[0]
    assert members["final_val_acc"][0] > 0.6  # 10 classes: chance is 0.1


def _cli(out, *extra):
    return [
        sys.executable, "-m", "experiments.alexnet_bs_sweep",
        "--dataset", "fashion_mnist",
        "--model", "mlp", "--model-kwargs", "hidden=(32,)", "--train-size", "256",
        "--val-size", "128", "--batch-sizes", "32,64", "--lrs", "0.01,0.02",
        "--eval-every", "4", "--seeds", "0", "--no-progress", "--no-plots",
        "--out", str(out), *extra,
    ]  # fmt: skip


def test_resume_after_sigkill_equals_uninterrupted_run(fmnist, tmp_path):
    epochs = ["--epochs", "10"]
    full = tmp_path / "full"
    subprocess.run(_cli(full, *epochs), cwd=ROOT, check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed, *epochs), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    marker = killed / "checkpoints" / "group_0" / "epoch_0002"
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "history.csv").exists()

    subprocess.run(_cli(killed, *epochs, "--resume"), cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    a = results.read_csv(os.path.join(full, "members.csv"))
    b = results.read_csv(os.path.join(killed, "members.csv"))
    for col in ("final_train_loss", "final_val_loss", "final_val_acc", "max_val_acc"):
        np.testing.assert_allclose(b[col], a[col], atol=1e-6, err_msg=col)
    ha = results.read_csv(os.path.join(full, "history.csv"))
    hb = results.read_csv(os.path.join(killed, "history.csv"))
    np.testing.assert_allclose(hb["train_loss"], ha["train_loss"], atol=1e-6)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(model="resnet9000"), "unknown model 'resnet9000'"),
        (dict(batch_sizes=(0,)), "batch_size must be a positive integer, got 0"),
        (dict(batch_sizes=(-32,)), "batch_size must be a positive integer, got -32"),
        (dict(lrs=(0.01, -0.1)), "lr must be positive and finite .* got lr=-0.1"),
        (dict(lrs=(0.0,)), "lr must be positive and finite .* got lr=0.0"),
        (dict(strategy="fast"), "unknown strategy 'fast'"),
    ],
)
def test_bad_config_raises_early(kw, message):
    with pytest.raises(ValueError, match=message):
        _config(**kw)


def test_unknown_dataset_and_oversized_batch_raise_before_compiling(fmnist, tmp_path):
    with pytest.raises(ValueError, match="no_such_set"):
        sweep.run(_config(dataset="no_such_set"), str(tmp_path / "a"), progress=False)
    with pytest.raises(ValueError, match="batch size 1024 is larger than the training"):
        sweep.run(_config(batch_sizes=(1024,)), str(tmp_path / "b"), dataset=fmnist)
    assert not (tmp_path / "b" / "checkpoints").exists()


def test_resume_with_other_config_is_refused(fmnist, tmp_path):
    out = tmp_path / "run"
    cfg = _config(model="mlp", model_kwargs=(("hidden", (16,)),))
    _run(cfg, fmnist, out)
    with pytest.raises(ValueError, match=r"different configuration: members.lrs"):
        sweep.run(cfg.replace(lrs=(0.1,)), str(out), resume=True,
                  dataset=fmnist)  # fmt: skip
    with pytest.raises(ValueError, match="already holds a run"):
        sweep.run(cfg, str(out), dataset=fmnist)


def test_config_round_trips_through_config_json(tmp_path):
    cfg = _config(
        models=("mlp", "simple_cnn"),
        model_options=(("mlp", (("hidden", (16, 8)),)),),
        lr_multipliers=(("bias", 2.0),),
        plateau_factor=0.5,
    )
    path = str(tmp_path / "c.json")
    results.write_json(path, {"config": cfg.to_dict()})
    assert sweep.SweepConfig.from_dict(results.read_json(path)["config"]) == cfg
