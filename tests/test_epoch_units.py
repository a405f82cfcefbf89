"""Evaluation cadence and patience in epochs: members of different batch sizes
(different groups, different steps per epoch) evaluate at the same epochs and
wait as many epochs for an improvement; the two units of one setting are
refused together."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from jaxbatch import data, results, sweep
from jaxbatch.sweep import Hook, rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TRAIN = 512


@pytest.fixture(scope="module")
def ds():
    return data.load("synthetic", train_size=N_TRAIN, val_size=128, seed=0)


def _cfg(**kw):
    # An LR so small that the validation loss cannot improve by min_delta:
    # every member's best evaluation is its first, and the rules must act.
    base = dict(
        experiment="test", model="mlp", model_kwargs=(("hidden", (16,)),),
        batch_sizes=(16, 64), lrs=(1e-7,), epochs=3, schedule="constant",
        strategy="vmap", early_stop_min_delta=1e-3, test=False,
    )  # fmt: skip
    return sweep.SweepConfig(**{**base, **kw})


def _run(cfg, ds, out, hooks=()):
    sweep.run(cfg, str(out), progress=False, plots=False, dataset=ds, hooks=hooks)
    members = results.read_csv(os.path.join(out, "members.csv"))
    history = results.read_csv(os.path.join(out, "history.csv"))
    return members, history


def _by_batch(members, history):
    """``{batch size: (evaluation epochs, best epoch, stop epoch)}``."""
    out = {}
    for i, bs in zip(members["member"], members["batch_size"]):
        rows = history["member"] == i
        evals = np.isfinite(history["val_loss"][rows])
        epochs = history["examples_seen"][rows][evals] / N_TRAIN
        steps = history["step"][rows][evals]
        row = members["member"] == i
        best = epochs[steps == members["best_val_step"][row][0]][0]
        stop = members["examples_seen"][row][0] / N_TRAIN
        assert members["stopped"][row][0] == "True", (bs, "did not stop")
        out[int(bs)] = (epochs, best, stop)
    return out


def test_eval_every_epochs_evaluates_every_batch_size_at_the_same_epochs(ds, tmp_path):
    cfg = _cfg(eval_every_epochs=0.25, early_stop_patience_epochs=1.0)
    got = _by_batch(*_run(cfg, ds, tmp_path / "run"))
    (e16, best16, stop16), (e64, best64, stop64) = got[16], got[64]
    # Batch 16 takes 32 steps an epoch, batch 64 eight: both evaluate every
    # quarter epoch (8 and 2 steps apart), up to their stop.
    np.testing.assert_array_equal(e16, np.arange(1, len(e16) + 1) * 0.25)
    np.testing.assert_array_equal(e64, e16)
    # ... and stop one epoch after their best (the first) evaluation.
    assert best16 == best64 == 0.25
    assert stop16 == stop64 == 1.25


@pytest.mark.parametrize(
    ("patience", "waited"),
    [
        # in epochs: both wait one epoch, whatever their evaluations
        (dict(early_stop_patience_epochs=1.0), {16: 1.0, 64: 1.0}),
        # in evaluations (every 4 steps): 4 evaluations are half an epoch at
        # batch 16 (32 steps an epoch) and two epochs at batch 64 (8 steps)
        (dict(early_stop_patience=4), {16: 0.5, 64: 2.0}),
    ],
)
def test_patience_in_epochs_stops_every_batch_size_after_as_many_epochs(
    patience, waited, ds, tmp_path
):
    cfg = _cfg(eval_every=4, **patience)
    got = _by_batch(*_run(cfg, ds, tmp_path / "run"))
    # the cadence is in iterations: batch 16 evaluates every 1/8 epoch
    assert got[16][0][:2].tolist() == [0.125, 0.25]
    assert got[64][0][:2].tolist() == [0.5, 1.0]
    assert {bs: stop - best for bs, (_, best, stop) in got.items()} == waited


def test_plateau_patience_in_epochs_reduces_every_batch_size_at_the_same_epoch(
    ds, tmp_path
):
    cfg = _cfg(schedule="plateau", eval_every=4, plateau_patience_epochs=0.5, epochs=2)
    members, history = _run(cfg, ds, tmp_path / "run")
    first_eval, reduced_at = {}, {}
    for i, bs in zip(members["member"], members["batch_size"]):
        rows = history["member"] == i
        seen = history["examples_seen"][rows] / N_TRAIN
        evals = np.isfinite(history["val_loss"][rows])
        first_eval[int(bs)] = seen[evals][0]
        lower = history["lr"][rows] < history["lr"][rows][0]
        # the first step on the reduced LR follows the evaluation that reduced it
        reduced_at[int(bs)] = seen[np.flatnonzero(lower)[0] - 1]
    assert first_eval == {16: 0.125, 64: 0.5}
    # half an epoch after the best (the first) evaluation, at both batch sizes
    assert reduced_at == {16: 0.625, 64: 1.0}


class _KillAt(Hook):
    """A kill in the middle of an epoch (its checkpoint is that of the epoch
    before), as far as the run directory can tell."""

    name = "kill_at"

    def __init__(self, epoch: int | None):
        self.epoch = epoch

    def after_steps(self, g, start, stop, metrics):
        if g.epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_with_epoch_cadence_and_patience_equals_uninterrupted(ds, tmp_path):
    cfg = _cfg(lrs=(1e-7, 0.05), eval_every_epochs=0.5,
               early_stop_patience_epochs=1.0)  # fmt: skip
    full_m, full_h = _run(cfg, ds, tmp_path / "full", hooks=[_KillAt(None)])
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, ds, tmp_path / "killed", hooks=[_KillAt(1)])
    assert not (tmp_path / "killed" / "history.csv").exists()
    sweep.run(cfg, str(tmp_path / "killed"), resume=True, progress=False,
              plots=False, dataset=ds, hooks=[_KillAt(None)])  # fmt: skip
    m = results.read_csv(os.path.join(tmp_path / "killed", "members.csv"))
    h = results.read_csv(os.path.join(tmp_path / "killed", "history.csv"))
    for col in ("stopped", "steps", "best_val_step"):
        np.testing.assert_array_equal(m[col], full_m[col], err_msg=col)
    for col in ("final_val_loss", "final_val_acc"):
        np.testing.assert_allclose(m[col], full_m[col], atol=1e-6, err_msg=col)
    for col in ("step", "epoch", "examples_seen"):
        np.testing.assert_array_equal(h[col], full_h[col], err_msg=col)
    for col in ("train_loss", "val_loss"):
        np.testing.assert_allclose(h[col], full_h[col], atol=1e-6, err_msg=col)
    # the tiny-LR members stopped after the kill (in the second epoch, at 1.5)
    tiny = m["lr"] == 1e-7
    assert (m["stopped"][tiny] == "True").all()
    assert (m["examples_seen"][tiny] == 1.5 * N_TRAIN).all()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(eval_every=4, eval_every_epochs=0.5),
         r"eval_every \(--eval-every\) counts iterations and eval_every_epochs "
         r"\(--eval-every-epochs\) epochs: give one of them, not both"),
        (dict(early_stop_patience=3, early_stop_patience_epochs=1.0),
         r"early_stop_patience \(--early-stop-patience\) counts evaluations and "
         r"early_stop_patience_epochs \(--early-stop-patience-epochs\) epochs"),
        (dict(plateau_patience=3, plateau_patience_epochs=1.0),
         r"plateau_patience \(--plateau-patience\) counts evaluations and "),
        (dict(eval_every_epochs=2.0), r"eval_every_epochs must be a number in "
         r"\(0, 1\], got 2.0: every epoch ends with an evaluation"),
        (dict(eval_every_epochs=0.0), r"in \(0, 1\], got 0.0"),
        (dict(early_stop_patience_epochs=-1.0), r"early_stop_patience_epochs "
         r"must be a number in \[0, inf\]"),
    ],
)  # fmt: skip
def test_both_units_or_a_bad_value_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        _cfg(**kw)


def test_a_cadence_finer_than_one_step_is_refused_before_compiling(ds, tmp_path):
    with pytest.raises(ValueError, match=r"eval_every_epochs 0.1 is less than one "
                       r"step at batch size 64 \(8 steps an epoch\): give at least "
                       r"0.125"):  # fmt: skip
        sweep.run(_cfg(eval_every_epochs=0.1), str(tmp_path / "o"), progress=False,
                  plots=False, dataset=ds)  # fmt: skip
    assert not (tmp_path / "o" / "checkpoints").exists()


def _cli(*flags):
    return subprocess.run(
        [sys.executable, "-m", "experiments.alexnet_bs_sweep", "--dataset",
         "synthetic", "--model", "mlp", "--dry-run", *flags],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip


def test_command_line_refuses_both_units_in_one_line_and_says_the_unit():
    both = _cli("--eval-every", "20", "--eval-every-epochs", "0.5")
    assert both.returncode == 2
    lines = both.stderr.strip().splitlines()
    assert len(lines) == 1, both.stderr
    assert "--eval-every" in lines[0] and "--eval-every-epochs" in lines[0]
    assert "not both" in lines[0]
    both = _cli("--plateau-patience", "3", "--plateau-patience-epochs", "1")
    assert both.returncode == 2 and "not both" in both.stderr, both.stderr
    assert len(both.stderr.strip().splitlines()) == 1
    # one form replaces the preset's other (alexnet_bs_sweep's --eval-every 20)
    alone = _cli("--eval-every-epochs", "0.5", "--batch-sizes", "16,64",
                 "--early-stop-patience-epochs", "1")  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    text = " ".join(_help().split())
    assert "every N ITERATIONS" in text and "every X EPOCHS" in text
    assert "N EVALUATIONS without improvement" in text
    assert "X EPOCHS without improvement" in text


def _help():
    out = subprocess.run(
        [sys.executable, "-m", "experiments.alexnet_bs_sweep", "--help"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout


def test_a_run_made_with_the_old_numeric_defaults_still_resumes(tmp_path):
    # config.json of a run made when eval_every and plateau_patience defaulted
    # to 50 and 10 (now None: the same values), before the epoch forms existed
    cfg = _cfg()
    saved = cfg.to_dict()
    saved["evaluation"]["eval_every"] = 50
    saved["control"]["plateau_patience"] = 10
    for section, name in (("evaluation", "eval_every_epochs"),
                          ("control", "plateau_patience_epochs"),
                          ("control", "early_stop_patience_epochs")):  # fmt: skip
        del saved[section][name]
    results.write_json(str(tmp_path / "config.json"), {"config": saved})
    rundir.check_resume(str(tmp_path), cfg)  # the same run: no refusal
    with pytest.raises(ValueError, match=r"evaluation.eval_every: 50 in the run, 20"):
        rundir.check_resume(str(tmp_path), cfg.replace(eval_every=20))
    with pytest.raises(ValueError, match=r"evaluation.eval_every_epochs: None in "):
        rundir.check_resume(str(tmp_path), cfg.replace(eval_every_epochs=0.5))
