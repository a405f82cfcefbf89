"""Seeds as error bars (hand-computed intervals), arms.csv, report.html, the
TensorBoard scalars and the experiment index."""

from __future__ import annotations

import glob
import math
import os
import re
import struct

import numpy as np
import pytest

from jaxbatch import data, report, results, stats, sweep


def test_seed_stats_and_welch_difference_equal_hand_computation():
    mean, half, n = stats.seed_stats([0.80, 0.82, 0.84, float("nan")])
    # s = 0.02 (ddof 1), t(0.975, 2 dof) = 4.302653 (t tables: 4.303)
    assert (n, mean) == (3, pytest.approx(0.82))
    assert half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert math.isnan(stats.seed_stats([0.5])[1])
    # Welch: a = 1,2,3 (var 1), b = 4,6,8,10 (var 20/3); se^2 = 1/3 + 5/3 = 2,
    # dof = 4 / ((1/3)^2 / 2 + (5/3)^2 / 3) = 4.0755
    from scipy.stats import t

    d, half = stats.difference([1, 2, 3], [4, 6, 8, 10])
    dof = 4 / ((1 / 3) ** 2 / 2 + (5 / 3) ** 2 / 3)
    assert d == -5.0
    assert half == pytest.approx(t.ppf(0.975, dof) * math.sqrt(2), rel=1e-9)
    assert 2.571 < t.ppf(0.975, dof) < 2.776  # between the table's 5 and 4 dof


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("report") / "run")
    ds = data.load("synthetic", train_size=256, val_size=64, seed=0)
    config = sweep.SweepConfig(
        model="mlp", model_kwargs=(("hidden", (16,)),), batch_sizes=(32, 64),
        lrs=(0.05, 0.5), seeds=(0, 1, 2), epochs=2, eval_every=4, strategy="vmap",
    )  # fmt: skip
    sweep.run(config, out, progress=False, plots=True, dataset=ds, tensorboard=True)
    return out


def test_arms_csv_is_the_mean_and_interval_over_seeds(run):
    members = results.read_csv(os.path.join(run, "members.csv"))
    arms = results.read_csv(os.path.join(run, "arms.csv"))
    assert len(members["member"]) == 12 and len(arms["seeds"]) == 4
    assert set(arms["seeds"]) == {3.0}
    for i in range(4):
        sel = (members["batch_size"] == arms["batch_size"][i]) & (
            members["lr"] == arms["lr"][i]
        )
        v = members["test_acc"][sel]
        assert arms["test_acc"][i] == pytest.approx(v.mean())
        t975_2dof = 4.302652729911275
        half = t975_2dof * v.std(ddof=1) / math.sqrt(3)
        assert arms["test_acc_ci"][i] == pytest.approx(half, rel=1e-9)


def test_report_embeds_every_figure_and_the_members_table(run):
    path = os.path.join(run, "report.html")
    text = open(path, encoding="utf-8").read()
    figures = sorted(os.listdir(os.path.join(run, "plots")))
    assert figures and all(f.endswith(".png") for f in figures)
    for name in figures:  # embedded, not linked
        assert re.search(rf'<img alt="{re.escape(name)}" src="data:image/png;base64,',
                         text)  # fmt: skip
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text)  # no network
    assert "<h3>Members (every seed)</h3>" in text
    members_table = text.split("<h3>Members (every seed)</h3>")[1]
    assert (
        members_table.split("</table>")[0].count("<tr>")
        + members_table.split("</table>")[0].count("<tr class=diverged>")
        == 13
    )  # header + 12 members
    assert "Verdict" in text and "batch size 64 ended" in text
    # Rebuilt from the directory alone: the same page.
    assert report.main([run, "--out", path + ".again"]) == 0
    assert open(path + ".again", encoding="utf-8").read() == text


def _events(path: str):
    """(tag, step, value) of a TensorBoard event file (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    out = []
    with open(path, "rb") as f:
        while header := f.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            event = event_pb2.Event.FromString(f.read(length))
            f.read(4)
            for v in event.summary.value:
                out.append((v.tag, event.step, v.simple_value))
    return out


def test_tensorboard_scalars_equal_history(run):
    pytest.importorskip("tensorboardX")
    dirs = sorted(glob.glob(os.path.join(run, "tensorboard", "member_*")))
    assert len(dirs) == 12
    history = results.read_csv(os.path.join(run, "history.csv"))
    member = int(os.path.basename(dirs[5]).split("_")[1])
    events = [e for f in glob.glob(os.path.join(dirs[5], "events.*"))
              for e in _events(f)]  # fmt: skip
    rows = history["member"] == member
    val = {s: v for t, s, v in events if t == "val/acc"}
    want = {int(s): v for s, v in zip(history["step"][rows], history["val_acc"][rows])
            if np.isfinite(v)}  # fmt: skip
    assert sorted(val) == sorted(want)
    np.testing.assert_allclose([val[s] for s in sorted(want)],
                               [want[s] for s in sorted(want)], rtol=1e-6)  # fmt: skip
    loss = {s: v for t, s, v in events if t == "train/loss"}
    assert len(loss) == rows.sum()  # every step


STANDARD = ("val_accuracy.png", "summary.png", "model_comparison.png",
            "accuracy_vs_lr.png")  # fmt: skip


def test_experiment_index_lists_every_experiment_with_claim_and_headline():
    from experiments.__main__ import catalog

    entries = catalog()
    files = glob.glob(os.path.join(os.path.dirname(report.__file__), "..",
                                   "experiments", "*.py"))  # fmt: skip
    modules = {os.path.basename(f)[:-3] for f in files} - {
        "__init__", "__main__", "suite", "gallery",
    }  # fmt: skip
    assert {e["name"] for e in entries} == modules
    for e in entries:
        assert len(e["claim"]) > 30 and e["quick_s"] > 0 and e["headline"]
        src = open(os.path.join(os.path.dirname(files[0]), e["name"] + ".py")).read()
        for fig in e["headline"]:  # a figure the experiment or save_all writes
            standard = fig in STANDARD or fig.startswith("loss_bs")
            assert standard or f'"{fig}"' in src, (e["name"], fig)
