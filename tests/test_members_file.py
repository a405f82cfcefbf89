"""``--members FILE``: a malformed file is a one-line error naming the file,
the row and the fix; tags are declared with the prefix ``tag:``."""

from __future__ import annotations

import json
import re

import pytest

from jaxbatch import recipes
from jaxbatch.experiment import Experiment


def _error(path) -> str:
    with pytest.raises(ValueError) as info:
        recipes.read_members_file(str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    return message


@pytest.mark.parametrize("row", ["0.1,0", "0.1,0,a,extra"])
def test_a_ragged_row_is_an_error_naming_the_row(tmp_path, row):
    path = tmp_path / "members.csv"
    path.write_text(f"lr,seed,tag:arm\n0.2,1,b\n{row}\n")
    message = _error(path)
    n = len(row.split(","))
    assert f"(row 2, line 3): {n} fields, the header has 3" in message, message
    assert "one value per column" in message


@pytest.mark.parametrize(("sep", "name"), [(";", "';'"), ("\t", "tabs")])
def test_a_file_separated_by_semicolons_or_tabs_is_an_error(tmp_path, sep, name):
    path = tmp_path / "members.csv"
    path.write_text(f"lr{sep}seed\n0.1{sep}0\n0.2{sep}1\n")
    message = _error(path)
    header = "lr" + sep + "seed"
    assert f"(the header): one column {header!r} separated by {name}" in message
    assert "comma-separated: write the header as lr,seed" in message, message


@pytest.mark.parametrize(
    ("column", "nearest"),
    [
        ("lrr", "lr"),
        ("learning_rate", "lr"),
        ("Seed", "seed"),
        ("momentun", "momentum"),
    ],
)
def test_an_unknown_column_is_an_error_that_suggests_the_nearest_field(
    tmp_path, column, nearest
):
    path = tmp_path / "members.csv"
    path.write_text(f"batch_size,{column}\n32,0.1\n")
    assert _error(path) == (
        f"--members: unknown column {column!r} in {path} (row 1); did you mean "
        f"{nearest!r}? A column of your own needs the prefix 'tag:' (tag:{column})"
    )


def test_an_undeclared_tag_is_an_error_and_json_keys_follow_the_same_rule(tmp_path):
    path = tmp_path / "members.csv"
    path.write_text("lr,arm\n0.1,a\n")
    message = _error(path)
    assert "unknown column 'arm'" in message and "(tag:arm)" in message, message
    assert "the recipe fields are model, batch_size" in message  # no near field
    jpath = tmp_path / "members.json"
    jpath.write_text(json.dumps([{"lr": 0.1}, {"lr": 0.2, "wd": 1e-4}]))
    assert "unknown key 'wd' in " in _error(jpath)
    assert "(row 2); did you mean 'weight_decay'?" in _error(jpath)
    jpath.write_text(json.dumps([{"lr": 0.1}, 3]))
    assert "(row 2): expected an object like" in _error(jpath)


def test_a_tag_may_not_overwrite_a_column_of_members_csv(tmp_path):
    path = tmp_path / "members.csv"
    path.write_text("lr,tag:lr\n0.1,a\n")
    assert "the tag 'lr' would overwrite the column 'lr'" in _error(path)
    # a sweep also keeps the tags off members.csv's other columns
    from jaxbatch.config import SweepConfig

    path.write_text("lr,tag:test_acc\n0.1,a\n")
    with pytest.raises(ValueError, match="the tag 'test_acc' would overwrite"):
        SweepConfig(model="mlp", dataset="synthetic", members_file=str(path))
    assert recipes.read_members_file(str(path))[0].tags == (("test_acc", "a"),)
    path.write_text("lr,tags\n0.1,a\n")
    assert "'tags' must be a JSON object" in _error(path)


def test_tag_prefixed_columns_become_tags(tmp_path):
    path = tmp_path / "members.csv"
    path.write_text("batch_size,lr,tag:arm,seed\n32,0.1,a,0\n64,0.2,,1\n")
    members = recipes.read_members_file(str(path))
    assert [(m.batch_size, m.lr, m.seed) for m in members] == [
        (32, 0.1, 0),
        (64, 0.2, 1),
    ]
    assert [dict(m.tags) for m in members] == [{"arm": "a"}, {}]  # empty: unset
    jpath = tmp_path / "members.json"
    jpath.write_text(
        json.dumps(
            [
                {"lr": 0.1, "tag:arm": "a"},
                {"lr": 0.2, "tags": {"arm": "b", "part": "x"}},
            ]
        )
    )
    members = recipes.read_members_file(str(jpath))
    assert [m.lr for m in members] == [0.1, 0.2]
    assert [dict(m.tags) for m in members] == [{"arm": "a"}, {"arm": "b", "part": "x"}]


def test_the_command_line_says_it_in_one_line_and_exits_2(tmp_path, capsys):
    path = tmp_path / "members.csv"
    path.write_text("lrr,seed\n0.1,0\n")
    argv = [
        "--dataset", "synthetic", "--train-size", "64", "--val-size", "32", "--model",
        "mlp", "--model-kwargs", "hidden=(8,)", "--epochs", "1", "--strategy", "vmap",
        "--no-progress", "--no-plots", "--members", str(path),
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        Experiment(name="test", doc="", claim="a test", presets={"quick": {}}).main(
            argv
        )
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    want = (
        r"unknown column 'lrr' in .*members\.csv \(row 1\); did you mean 'lr'\? "
        r"A column of your own needs the prefix 'tag:'"
    )
    assert re.search(want, err), err
    assert not (tmp_path / "out" / "members.csv").exists()
