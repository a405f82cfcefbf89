"""The validation columns say what they are: ``min_val_loss``, the accuracy
at it (``val_acc_at_best_loss``, which can be below ``final_val_acc``) and
``max_val_acc``; a results directory with the old ``best_val_*`` columns
still reads and reports under the new names."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxbatch import data, results, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEW = ("min_val_loss", "val_acc_at_best_loss", "max_val_acc")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    try:
        ds = data.load("fashion_mnist", train_size=512, val_size=256, seed=0)
    except data.DataNotFoundError as err:
        pytest.skip(f"Fashion-MNIST not installed: {err}")
    out = str(tmp_path_factory.mktemp("val") / "run")
    # 8 epochs of 512 images: the validation loss turns up while the
    # accuracy still climbs
    config = sweep.SweepConfig(
        experiment="test", model="mlp", model_kwargs=(("hidden", (64,)),),
        batch_sizes=(32,), lrs=(0.05, 0.2), seeds=(0, 1), epochs=8, eval_every=8,
        strategy="vmap",
    )  # fmt: skip
    sweep.run(config, out, progress=False, plots=False, dataset=ds)
    return out


def _header(run_dir) -> list[str]:
    with open(os.path.join(run_dir, "members.csv"), newline="") as f:
        return next(csv.reader(f))


def test_max_val_acc_is_never_below_the_final_or_the_accuracy_at_the_lowest_loss(run):
    members = results.read_members(run)
    history = results.read_history(run)
    assert "best_val_acc" not in _header(run) and "best_val_loss" not in _header(run)
    for row, m in enumerate(members["member"]):
        mine = history["member"] == m
        loss, acc = history["val_loss"][mine], history["val_acc"][mine]
        lowest = np.nanargmin(loss)
        assert members["min_val_loss"][row] == loss[lowest]
        assert members["val_acc_at_best_loss"][row] == acc[lowest]
        assert members["max_val_acc"][row] == np.nanmax(acc)
        assert members["max_val_acc"][row] >= members["final_val_acc"][row]
        assert members["max_val_acc"][row] >= members["val_acc_at_best_loss"][row]
    # the case the names are for: the accuracy at the lowest loss is below
    # the final accuracy (what best_val_acc used to show)
    below = members["val_acc_at_best_loss"] < members["final_val_acc"]
    assert below.any(), "no member whose loss turned up: proves nothing"
    assert (members["max_val_acc"] > members["val_acc_at_best_loss"]).any()


def _make_old(run, to, *, history=True, control_metric=None) -> str:
    """``run`` as the sweep wrote it before the rename: ``best_val_loss`` and
    ``best_val_acc`` (at the lowest validation loss), no ``max_val_acc``."""
    old = shutil.copytree(run, to)
    path = os.path.join(old, "members.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    renamed = {"min_val_loss": "best_val_loss", "val_acc_at_best_loss": "best_val_acc"}
    for r in rows:
        for new, name in renamed.items():
            r[name] = r.pop(new)
        del r["max_val_acc"]
    columns = [renamed.get(c, c) for c in _header(run) if c != "max_val_acc"]
    results.write_csv(path, columns, rows)
    for gone in ("report.html", "arms.csv", *(() if history else ("history.csv",))):
        if os.path.exists(os.path.join(old, gone)):
            os.remove(os.path.join(old, gone))
    if control_metric:
        config_path = os.path.join(old, "config.json")
        saved = results.read_json(config_path)
        saved["config"]["control"]["control_metric"] = control_metric
        with open(config_path, "w") as f:
            json.dump(saved, f)
    return str(old)


def test_an_old_members_csv_reads_under_the_new_names(run, tmp_path):
    new = results.read_members(run)
    old = _make_old(run, tmp_path / "old")
    assert "best_val_acc" in _header(old) and "max_val_acc" not in _header(old)
    upgraded = results.read_members(old)
    assert list(upgraded) == list(new)  # the same columns, in the same places
    for col in NEW:  # max_val_acc from history.csv
        np.testing.assert_array_equal(upgraded[col], new[col], err_msg=col)
    # without history.csv: the old columns renamed, by the run's control metric
    bare = results.read_members(_make_old(run, tmp_path / "bare", history=False))
    np.testing.assert_array_equal(
        bare["val_acc_at_best_loss"], new["val_acc_at_best_loss"]
    )
    np.testing.assert_array_equal(bare["min_val_loss"], new["min_val_loss"])
    assert "max_val_acc" not in bare
    by_acc = _make_old(run, tmp_path / "acc", history=False, control_metric="val_acc")
    by_acc = results.read_members(by_acc)  # there best_val_acc was the highest
    np.testing.assert_array_equal(by_acc["max_val_acc"], new["val_acc_at_best_loss"])
    assert "val_acc_at_best_loss" not in by_acc and "min_val_loss" not in by_acc


def test_jaxbatch_report_builds_an_old_results_directory(run, tmp_path):
    old = _make_old(run, tmp_path / "old")
    done = subprocess.run(
        [sys.executable, "-m", "jaxbatch.report", old],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = open(os.path.join(old, "report.html")).read()
    assert "val_acc_at_best_loss" in page and "max_val_acc" in page
    assert "best_val_acc" not in page
    for value in results.read_members(run)["max_val_acc"]:  # from history.csv
        assert f'data-v="{float(value)!r}"' in page
