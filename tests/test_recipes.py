"""Members as recipes: schedules and weight-decay modes as per-member data,
batch-size phases, whole epochs, clean final numbers, member files, search
builders, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxbatch import data, recipes, results, schedules, sweep
from jaxbatch.experiment import Experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLP = (("hidden", (16,)),)


@pytest.fixture(scope="module")
def ds():
    return data.load("synthetic", train_size=500, val_size=100, seed=0)


def _cfg(**kw) -> sweep.SweepConfig:
    base = dict(
        experiment="test", model="mlp", model_kwargs=MLP, batch_sizes=(64,),
        lrs=(0.05,), epochs=3, eval_every=5, strategy="vmap",
    )  # fmt: skip
    return sweep.SweepConfig(**{**base, **kw})


def _run(cfg, ds, out):
    sweep.run(cfg, str(out), progress=False, plots=False, dataset=ds)
    members = results.read_csv(os.path.join(out, "members.csv"))
    history = results.read_csv(os.path.join(out, "history.csv"))
    return members, history


def _rows(members, **match):
    sel = np.ones(len(members["member"]), bool)
    for key, value in match.items():
        sel &= members[key] == value
    return {k: v[sel] for k, v in members.items()}


# --- schedules through the command line --------------------------------------


def _closed_form(
    kind, lr, t, *, gamma, decay_epochs, milestones, k, power, epochs, lr_max=10.0
):
    """The LR after t epochs (float64), from the textbook formulas."""
    if kind == "constant" or kind == "plateau":
        return np.full_like(t, lr)
    if kind == "step":
        return lr * gamma ** np.floor(t / decay_epochs + 1e-9)
    if kind == "multistep":
        return lr * gamma ** np.sum(t[:, None] >= np.asarray(milestones) - 1e-9, 1)
    if kind == "exponential":
        return lr * np.exp(-k * t)
    if kind == "inverse_time":
        return lr / (1 + k * t) ** power
    if kind == "cosine":
        return lr * 0.5 * (1 + np.cos(np.pi * np.minimum(t / epochs, 1)))
    if kind == "range":  # exponential rise from lr to lr_max over the run
        return lr * (lr_max / lr) ** (t / epochs)
    raise AssertionError(kind)


def test_history_lr_equals_closed_form_for_every_kind_via_cli(tmp_path):
    out = tmp_path / "run"
    kinds = ("constant", "step", "multistep", "exponential", "inverse_time", "cosine",
             "range")  # fmt: skip
    argv = [
        "--dataset", "synthetic", "--train-size", "300", "--val-size", "64",
        "--model", "mlp", "--model-kwargs", "hidden=(8,)", "--batch-sizes", "64",
        "--lrs", "0.1", "--schedule", ",".join(kinds), "--gamma", "0.5",
        "--decay-epochs", "1.5", "--milestones", "0.5,1,2.5", "--decay-rate", "0.7",
        "--power", "0.5", "--lr-max", "3", "--epochs", "4", "--eval-every", "100",
        "--strategy", "vmap", "--no-progress", "--no-plots", "--out", str(out),
    ]  # fmt: skip
    Experiment(
        name="alexnet_bs_sweep", doc="", claim="a test", presets={"quick": {}}
    ).main(argv)
    members = results.read_csv(out / "members.csv")
    hist = results.read_csv(out / "history.csv")
    assert list(members["schedule"]) == list(kinds)  # one group, one program
    assert set(members["group"]) == {0}
    for member, kind in zip(members["member"], members["schedule"]):
        rows = hist["member"] == member
        # the LR of an update comes from the examples seen before it
        before = hist["examples_seen"][rows] - hist["batch_size"][rows]
        t = before / 300
        expected = _closed_form(
            kind, 0.1, t, gamma=0.5, decay_epochs=1.5, milestones=(0.5, 1, 2.5), k=0.7,
            power=0.5, epochs=4, lr_max=3.0,
        )  # fmt: skip
        np.testing.assert_allclose(
            hist["lr"][rows], expected, rtol=2e-6, atol=1e-8, err_msg=kind
        )
    decayed = {k: hist["lr"][hist["member"] == m][-1] for m, k in
               zip(members["member"], members["schedule"])}  # fmt: skip
    assert len({round(v, 6) for v in decayed.values()}) == len(kinds)


def test_warmup_is_linear_from_start_factor(ds, tmp_path):
    member = recipes.Member(schedule="constant", warmup_epochs=1.0, warmup_start=0.25)
    _, hist = _run(_cfg(recipes=(member,), epochs=2), ds, tmp_path / "w")
    t = (hist["examples_seen"] - hist["batch_size"]) / 500
    expected = 0.05 * (0.25 + 0.75 * np.minimum(t, 1.0))
    np.testing.assert_allclose(hist["lr"], expected, rtol=2e-6)


# --- mixed groups equal solo runs ----------------------------------------------


def test_step_member_among_exponential_and_inverse_time_equals_solo(ds, tmp_path):
    mixed = (
        recipes.Member(schedule="exponential", decay_rate=0.5),
        recipes.Member(schedule="step", gamma=0.5, decay_epochs=1.0),
        recipes.Member(schedule="inverse_time", decay_rate=1.0),
    )
    m, _ = _run(_cfg(recipes=mixed), ds, tmp_path / "mixed")
    s, _ = _run(_cfg(recipes=mixed[1:2]), ds, tmp_path / "solo")
    assert set(m["group"]) == {0}
    step = _rows(m, schedule="step")
    assert abs(step["final_val_loss"][0] - s["final_val_loss"][0]) <= 1e-4
    assert abs(step["test_loss"][0] - s["test_loss"][0]) <= 1e-4
    assert len(set(np.round(m["final_val_loss"], 6))) == 3  # really different


def test_l2_member_among_decoupled_members_equals_solo(ds, tmp_path):
    mixed = (
        recipes.Member(weight_decay=0.01, weight_decay_mode="decoupled"),
        recipes.Member(weight_decay=0.01, weight_decay_mode="l2"),
        recipes.Member(weight_decay=0.05, weight_decay_mode="decoupled"),
    )
    # Adam, where the two modes differ (under plain SGD they coincide).
    kw = dict(optimizer="adam", lrs=(0.003,), schedule="constant")
    m, _ = _run(_cfg(recipes=mixed, **kw), ds, tmp_path / "mixed")
    s, _ = _run(_cfg(recipes=mixed[1:2], **kw), ds, tmp_path / "solo")
    assert set(m["group"]) == {0}
    l2 = _rows(m, weight_decay_mode="l2")
    assert abs(l2["final_val_loss"][0] - s["final_val_loss"][0]) <= 1e-4
    dec = _rows(m, weight_decay_mode="decoupled", weight_decay=0.01)
    assert abs(dec["final_val_loss"][0] - l2["final_val_loss"][0]) > 1e-4


# --- batch-size phases and whole epochs ------------------------------------------


def test_whole_epochs_and_batch_size_phases(ds, tmp_path):
    members = (
        recipes.Member(schedule="multistep", milestones=(1, 2), gamma=0.5),
        recipes.Member(schedule="constant", batch_milestones=(1, 2), batch_factor=2),
    )
    m, hist = _run(_cfg(recipes=members, batch_sizes=(32,)), ds, tmp_path / "p")
    assert list(m["batch_schedule"]) == ["", "x2 at 1 2"]
    assert set(m["group"]) == {0, 1}  # the batch-size sequence is a program
    for member in (0, 1):
        rows = hist["member"] == member
        seen, epoch, bs = (
            hist[k][rows] for k in ("examples_seen", "epoch", "batch_size")
        )
        ends = [seen[epoch == e][-1] for e in (1, 2, 3)]
        assert ends == [500, 1000, 1500]  # every epoch is whole, remainder included
    rows = hist["member"] == 1
    for e, size in ((1, 32), (2, 64), (3, 128)):
        sizes = hist["batch_size"][rows & (hist["epoch"] == e)]
        assert sizes[0] == size
        assert sizes[-1] == 500 % size  # the smaller last batch
    # same examples, fewer updates for the batch-increasing member
    assert m["examples_seen"][1] == m["examples_seen"][0] == 1500
    assert m["steps"][1] == 16 + 8 + 4 < m["steps"][0] == 3 * 16


def test_drop_last_drops_the_remainder(ds, tmp_path):
    _, hist = _run(_cfg(drop_last=True, epochs=1), ds, tmp_path / "d")
    assert set(hist["batch_size"]) == {64}
    assert hist["examples_seen"][-1] == 7 * 64


def _phase_cli(out, *extra):
    return [
        sys.executable, "-m", "experiments.alexnet_bs_sweep", "--dataset", "synthetic",
        "--train-size", "400", "--val-size", "64", "--model", "mlp", "--model-kwargs",
        "hidden=(16,)", "--batch-sizes", "16", "--batch-milestones", "3",
        "--batch-factor", "4", "--lrs", "0.02,0.05", "--schedule", "constant",
        "--epochs", "40", "--eval-every", "10", "--strategy", "vmap", "--seeds", "0",
        "--no-progress", "--no-plots", "--out", str(out), *extra,
    ]  # fmt: skip


def test_resume_inside_second_phase_equals_uninterrupted(tmp_path):
    full = tmp_path / "full"
    subprocess.run(_phase_cli(full), cwd=ROOT, check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_phase_cli(killed), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    marker = killed / "checkpoints" / "group_0" / "epoch_0005"  # phase 2 began at 4
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    subprocess.run(_phase_cli(killed, "--resume"), cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    a = results.read_csv(full / "members.csv")
    b = results.read_csv(killed / "members.csv")
    for col in ("final_val_loss", "test_loss", "train_eval_loss", "steps"):
        np.testing.assert_allclose(b[col], a[col], atol=1e-6, err_msg=col)
    ha, hb = (results.read_csv(d / "history.csv") for d in (full, killed))
    np.testing.assert_allclose(hb["train_loss"], ha["train_loss"], atol=1e-6)
    np.testing.assert_array_equal(hb["batch_size"], ha["batch_size"])
    assert {16, 64} <= set(ha["batch_size"])


# --- clean final numbers --------------------------------------------------------------


def test_final_numbers_come_from_the_final_parameters(ds, tmp_path):
    m, hist = _run(_cfg(lrs=(0.02, 0.1)), ds, tmp_path / "c")
    for i in range(2):
        assert np.isfinite(m["test_acc"][i]) and np.isfinite(m["train_eval_acc"][i])
        # the gaps come from the clean numbers, not from running batch means
        assert m["gap_loss"][i] == pytest.approx(
            m["final_val_loss"][i] - m["train_eval_loss"][i], abs=1e-6
        )
        assert m["gap_acc"][i] == pytest.approx(
            m["train_eval_acc"][i] - m["final_val_acc"][i], abs=1e-6
        )
        # the last evaluation of the validation set is at the end of training
        rows = hist["member"] == m["member"][i]
        val = hist["val_loss"][rows]
        assert np.isfinite(val[-1]) and val[-1] == pytest.approx(m["final_val_loss"][i])
    # train_eval is the final parameters in eval mode: on a training set that
    # is also the validation set, it gives the last validation numbers exactly
    cfg = _cfg(epochs=1, train_eval_size=100)
    m3, _ = _run(cfg, _first(ds), tmp_path / "same")
    assert m3["train_eval_loss"][0] == pytest.approx(m3["final_val_loss"][0], rel=1e-6)
    assert m3["train_eval_acc"][0] == pytest.approx(m3["final_val_acc"][0], rel=1e-6)


def _first(ds):
    """A dataset whose validation set is its whole (100-image) training set."""
    return data.Dataset(**{**ds.__dict__, "x_train": ds.x_train[:100],
                           "y_train": ds.y_train[:100], "x_val": ds.x_train[:100],
                           "y_val": ds.y_train[:100]})  # fmt: skip


# --- member lists: files, search, scaling ---------------------------------------------


def test_members_file_rows_come_back_in_members_csv(ds, tmp_path):
    path = tmp_path / "members.csv"
    path.write_text(
        "batch_size,lr,schedule,decay_rate,weight_decay,weight_decay_mode,seed,tag:arm\n"
        "32,0.05,exponential,0.3,0.001,l2,3,a\n"
        "64,0.02,inverse_time,0.5,0.002,decoupled,4,b\n"
    )
    m, _ = _run(_cfg(members_file=str(path)), ds, tmp_path / "f")
    assert list(m["arm"]) == ["a", "b"]
    np.testing.assert_array_equal(m["batch_size"], [32, 64])
    np.testing.assert_array_equal(m["lr"], [0.05, 0.02])
    assert list(m["schedule"]) == ["exponential", "inverse_time"]
    np.testing.assert_array_equal(m["decay_rate"], [0.3, 0.5])
    np.testing.assert_array_equal(m["weight_decay"], [0.001, 0.002])
    assert list(m["weight_decay_mode"]) == ["l2", "decoupled"]
    np.testing.assert_array_equal(m["seed"], [3, 4])
    jpath = tmp_path / "members.json"
    jpath.write_text(json.dumps([{"batch_size": 32, "lr": 0.07, "seed": 9}]))
    members = _cfg(members_file=str(jpath)).resolved_members()
    assert (members[0].lr, members[0].seed, members[0].batch_size) == (0.07, 9, 32)


def test_random_search_and_lr_scaling_build_the_member_list():
    cfg = _cfg(search="random:5", batch_sizes=(32, 64), seeds=(0, 1))
    members = cfg.resolved_members()
    assert len(members) == 5 * 2 * 2
    lrs = np.array([m.lr for m in members])
    assert ((lrs >= 1e-5) & (lrs <= 1e-1)).all() and len(set(lrs)) == 5
    assert all(1e-3 <= 1 - m.momentum <= 1e-1 for m in members)
    scaled = _cfg(lrs=(0.1,), batch_sizes=(32, 128, 512), lr_scaling="sqrt",
                  base_batch_size=32).resolved_members()  # fmt: skip
    assert [m.lr for m in scaled] == pytest.approx([0.1, 0.2, 0.4])
    linear = recipes.scale_lr(recipes.grid(lr=0.1, batch_size=(32, 256)), "linear", 32)
    assert [m.lr for m in linear] == pytest.approx([0.1, 0.8])
    assert dict(linear[1].tags) == {"scaling_rule": "linear"}


def test_log_uniform_draws_stay_in_range_and_reject_reversed_range():
    x = np.asarray(schedules.log_uniform(jax.random.PRNGKey(0), 1e-4, 1e-2, 1000))
    assert x.min() >= 1e-4 and x.max() <= 1e-2
    # log-uniform: each decade holds about half the draws
    assert 0.4 < np.mean(x < 1e-3) < 0.6
    with pytest.raises(ValueError, match="low <= high"):
        schedules.log_uniform(jax.random.PRNGKey(0), 1e-2, 1e-4, 5)


# --- bad input: one line, exit 2, nothing left behind -----------------------------


BAD = [
    (["--gamma", "-1"], "gamma is the LR factor"),
    (["--gamma", "0"], "gamma is the LR factor"),
    (["--gamma", "nan"], "gamma is the LR factor"),
    (["--gamma", "1.5"], "gamma is the LR factor"),
    (["--plateau-factor", "1.5"], "plateau_factor must be in"),
    (["--warmup-start", "2"], "warmup_start must be in"),
    (["--lrs", "1e-40"], "lr must be positive and finite in float32"),
    (["--lrs", "1e300"], "lr must be positive and finite in float32"),
    (["--lrs", "nan"], "lr must be positive and finite in float32"),
    (["--lrs", "0.01,0.01"], "lrs lists \\[0.01\\] twice"),
    (["--seeds", "0,0"], "seeds lists \\[0\\] twice"),
    (["--lrs", ","], "lrs needs at least one value"),
    (["--schedule", "cosinus"], "unknown schedule 'cosinus'"),
    (["--schedule", "exponential", "--decay-rate", "0"], "needs decay_rate k > 0"),
    (["--control-metric", "val_f1"], "unknown control_metric 'val_f1'"),
    (["--lr-multipliers", "bias=-1"], "lr multiplier for 'bias' must be >= 0"),
    (["--lr-multipliers", "Conv_9=2"], "pattern 'Conv_9' matches no parameter"),
    (["--search", "random:x"], "search must be 'grid' or 'random:N'"),
    (["--lr-scaling", "linear"], "--lr-scaling needs --base-batch-size"),
    (["--members", "/nonexistent.csv"], "no such file"),
]


@pytest.mark.parametrize(("flags", "message"), BAD, ids=[" ".join(f) for f, _ in BAD])
def test_bad_input_is_one_line_and_leaves_no_unusable_out(flags, message, tmp_path,
                                                         capsys):  # fmt: skip
    out = tmp_path / "out"
    base = [
        "--dataset", "synthetic", "--train-size", "64", "--val-size", "32", "--model",
        "mlp", "--model-kwargs", "hidden=(8,)", "--batch-sizes", "32", "--epochs", "1",
        "--strategy", "vmap", "--no-progress", "--no-plots", "--out", str(out),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        Experiment(name="test", doc="", claim="a test", presets={"quick": {}}).main(
            base + flags
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    # the command line names the flag beside the field ("gamma (--gamma) is");
    # these patterns are the library's messages
    bare = __import__("re").sub(r" \(--[a-z-]+\)", "", err)
    assert __import__("re").search(message, bare), err
    # --out is left usable: a correct run goes through afterwards
    Experiment(name="test", doc="", claim="a test", presets={"quick": {}}).main(base)
    assert (out / "members.csv").exists()


def test_lr_multipliers_as_dict_are_accepted(ds, tmp_path):
    cfg = _cfg(lr_multipliers={"bias": 2.0}, epochs=1)
    assert cfg.lr_multipliers == (("bias", 2.0),)
    m, _ = _run(cfg, ds, tmp_path / "m")
    assert np.isfinite(m["final_val_loss"][0])
