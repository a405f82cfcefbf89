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


POPULATION = {
    "plain": ["--lrs", "0.05", "--seeds", "0,1"],
    # an exploit at every epoch's end: the kill falls just before or after one
    "pbt": ["--lrs", "0.01,0.03,0.05,0.1", "--pbt", "interval=1,quantile=0.25,"
            "fields=lr:momentum"],
}  # fmt: skip


@pytest.mark.parametrize("population", list(POPULATION))
def test_resume_of_a_killed_run_equals_the_uninterrupted_run(tmp_path, population):
    """SIGKILL once the first epoch's checkpoint is on disk, then ``jaxbatch
    resume DIR`` (the flags read from the run directory): the same numbers
    as the run that was never stopped, with PBT's lineage too (successive
    halving's resume: tests/test_population.py)."""
    import signal
    import time

    from jaxbatch import checkpoint

    flags = ["--model", "mlp", "--model-kwargs", "hidden=(8,)", "--train-size", "512",
             "--val-size", "128", "--epochs", "30", "--batch-sizes", "16",
             *POPULATION[population], "--no-progress",
             "--no-plots"]  # fmt: skip
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    _run("sweep", *flags, "--out", full)
    proc = subprocess.Popen(
        [SCRIPT, "sweep", *flags, "--out", killed],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.list_epochs(checkpoint.group_dir(killed, 0)):
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill"
    assert not os.path.exists(os.path.join(killed, "history.csv"))
    _run("resume", killed)
    keep = ("member", "lr", "seed", "steps", "test_acc", "final_val_loss",
            "final_train_loss", "best_val_step")  # fmt: skip
    files = ("members.csv", "history.csv", "lineage.csv")
    for name in files[: 3 if population == "pbt" else 2]:
        a, b = _rows(os.path.join(full, name)), _rows(os.path.join(killed, name))
        cols = keep if name == "members.csv" else list(a[0])
        assert [{k: r[k] for k in cols} for r in b] == [
            {k: r[k] for k in cols} for r in a
        ], name
