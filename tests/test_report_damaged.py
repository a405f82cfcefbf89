"""``python -m jaxbatch.report`` on damaged results: one line on stderr that
names members.csv and what is wrong, exit 2, and no report.html written."""

from __future__ import annotations

import csv
import os
import shutil

import pytest
from synthetic import write_run

from jaxbatch import report, results


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return write_run(str(tmp_path_factory.mktemp("run") / "good"), lrs=(0.01, 0.1))


def _truncate(path):  # cut mid-row, as a killed copy or a full disk leaves it
    with open(path, newline="") as f:
        text = f.read()
    last = text.rindex("\n", 0, len(text) - 1) + 1
    with open(path, "w", newline="") as f:
        f.write(text[: last + 30])


def _empty(path):
    open(path, "w").close()


def _drop(*columns):
    def damage(path):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        results.write_csv(path, [c for c in rows[0] if c not in columns], rows)

    return damage


DAMAGE = {
    "truncated": (_truncate, r": row 12 has \d+ fields, the header 20 \(truncated\?\)"),
    "missing": (os.remove, ": missing, though history.csv is there"),
    "empty": (_empty, ": empty, not even a header"),
    "no diverged": (_drop("diverged"), ": no column 'diverged'"),
    "no member": (_drop("member"), ": no column 'member'"),
    "no accuracy": (
        _drop("test_acc", "best_val_acc"),
        ": no column 'test_acc' or 'val_acc_at_best_loss'",
    ),
}


def test_the_good_directory_builds(good, tmp_path, capsys):
    run = shutil.copytree(good, tmp_path / "run")
    assert report.main([str(run)]) == 0
    assert (run / "report.html").exists()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("how", list(DAMAGE))
@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing"])
def test_damaged_members_csv_is_one_line_and_exit_2(good, tmp_path, capsys, how,
                                                    existing):  # fmt: skip
    damage, message = DAMAGE[how]
    run = shutil.copytree(good, tmp_path / "run")
    page = run / "report.html"
    if existing:
        page.write_text("the report of the good run")
    members = str(run / "members.csv")
    damage(members)
    assert report.main([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.endswith("\n") and len(err.splitlines()) == 1, err
    assert err.startswith(f"jaxbatch.report: {members}:"), err
    assert __import__("re").search(message, err), err
    assert err.rstrip().endswith("rerun the sweep with --resume or rebuild it"), err
    if existing:
        assert page.read_text() == "the report of the good run"
    else:
        assert not page.exists()


def test_a_row_cut_short_in_the_middle_is_not_called_truncated(good, tmp_path):
    run = shutil.copytree(good, tmp_path / "run")
    path = run / "members.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = lines[3].rstrip("\r\n").rsplit(",", 2)[0] + "\n"
    path.write_text("".join(lines))
    with pytest.raises(
        results.ResultsError, match=r"row 3 has 18 fields, the header 20;"
    ):
        results.read_members(str(run))


def test_good_files_read_as_before(good):
    members = results.read_members(good)
    # an old-format table: best_val_acc read as val_acc_at_best_loss, and
    # min_val_loss, max_val_acc added from history.csv
    assert len(members["member"]) == 12 and len(members) == 22
    healthy = results.read_members(good, healthy=True)
    assert len(healthy["member"]) == 11  # member 0 diverged
    with pytest.raises(results.ResultsError, match="no column 'nope'"):
        results.read_members(good, require=("member", "nope"))
