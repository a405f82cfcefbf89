"""The installed ``jaxbatch`` command: list, sweep, report, compare, resume."""

import csv
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(sys.executable), "jaxbatch")
TINY = ["--model", "mlp", "--model-kwargs", "hidden=(8,)", "--train-size", "256",
        "--val-size", "128", "--epochs", "1", "--batch-sizes", "64", "--no-progress",
        "--no-plots"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not os.path.exists(SCRIPT), reason="the console script is not installed"
)


def _run(*args, code=0):
    done = subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == code, done.stderr[-2000:]
    return done


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_list_names_every_experiment():
    out = _run("list").stdout
    for name in ("alexnet_bs_sweep", "lr_scaling", "weight_decay"):
        assert name in out


def test_sweep_then_compare_lists_every_arm_of_both(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    _run("sweep", *TINY, "--lrs", "0.01,0.1", "--out", a, "--claim", "LR 0.1 wins")
    _run("sweep", *TINY, "--lrs", "0.03", "--optimizer", "adam", "--out", b)
    assert os.path.exists(os.path.join(a, "command.json"))
    cmp = str(tmp_path / "cmp")
    _run("compare", a, b, "--out", cmp)
    rows = _rows(os.path.join(cmp, "compare.csv"))
    assert [(r["run"], float(r["lr"])) for r in rows] == [
        ("a", 0.01), ("a", 0.1), ("b", 0.03)
    ]  # fmt: skip
    assert os.path.getsize(os.path.join(cmp, "compare.png")) > 10_000
    _run("report", a)
    assert os.path.exists(os.path.join(a, "report.html"))


def test_resume_of_a_finished_run_changes_nothing_and_errors_are_one_line(tmp_path):
    a = str(tmp_path / "a")
    _run("sweep", *TINY, "--lrs", "0.05", "--out", a)
    keep = ("lr", "test_acc", "final_val_loss", "final_train_loss")
    before = [{k: r[k] for k in keep} for r in _rows(os.path.join(a, "members.csv"))]
    _run("resume", a)
    after = [{k: r[k] for k in keep} for r in _rows(os.path.join(a, "members.csv"))]
    assert after == before
    for args in (["resume", str(tmp_path / "none")], ["run", "lr_scalng"], ["swep"]):
        err = _run(*args, code=2).stderr.strip()
        assert len(err.splitlines()) == 1 and "error" in err, err
