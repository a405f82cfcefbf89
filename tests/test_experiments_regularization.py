"""The regularization experiments (weight decay, fine-tuning, early stopping)
end to end on tiny settings, their figures, and ``jaxbatch.tasks``."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from jaxbatch import data, plots, results, sweep, tasks

# The standard per-sweep figures are skipped (seconds each); the experiments'
# own figures are drawn by the function the command line calls.
TINY = ["--train-size", "256", "--val-size", "128", "--no-progress", "--no-plots"]


def _figures(out, figures):
    for path in plots.save_figures(out, figures):
        assert os.path.getsize(path) > 10_000


def _members(run):
    return results.read_csv(os.path.join(run, "members.csv"))


# --- jaxbatch.tasks -------------------------------------------------------------------


def _toy(n=60, classes=6, seed=0) -> data.Dataset:
    rng = np.random.default_rng(seed)

    def split(k):
        x = rng.integers(0, 256, (k, 4, 4, 1), dtype=np.uint8)
        return x, (np.arange(k) % classes).astype(np.int32)

    (xt, yt), (xv, yv), (xs, ys) = split(n), split(n // 2), split(n // 3)
    return data.Dataset(
        name="toy",
        x_train=xt,
        y_train=yt,
        x_val=xv,
        y_val=yv,
        x_test=xs,
        y_test=ys,
        num_classes=classes,
        class_names=tuple("abcdef"[:classes]),
        mean=np.array([0.3], np.float32),
        std=np.array([0.2], np.float32),
    )


def test_subset_classes_relabels_keeps_statistics_and_stratifies():
    ds = _toy()
    sub = tasks.subset_classes(ds, (4, 1, 5), train_size=9, val_size=6, seed=3)
    assert sub.num_classes == 3 and sub.class_names == ("e", "b", "f")
    assert np.bincount(sub.y_train).tolist() == [3, 3, 3]
    assert np.bincount(sub.y_val).tolist() == [2, 2, 2]
    # every image is one of the chosen classes' images, with its new label
    for x, y in zip(sub.x_test, sub.y_test):
        hits = [i for i in range(len(ds.x_test)) if np.array_equal(ds.x_test[i], x)]
        assert (4, 1, 5)[y] in {int(ds.y_test[i]) for i in hits}
    assert len(sub.y_test) == sum(int(c in (1, 4, 5)) for c in ds.y_test)
    np.testing.assert_array_equal(sub.mean, ds.mean)  # same inputs as the parent
    np.testing.assert_array_equal(sub.std, ds.std)
    same = tasks.subset_classes(ds, (4, 1, 5), train_size=9, val_size=6, seed=3)
    np.testing.assert_array_equal(same.x_train, sub.x_train)  # seeded
    kept = tasks.subset_classes(ds, (2, 3), relabel=False)
    assert kept.num_classes == 6 and set(kept.y_train) == {2, 3}


@pytest.mark.parametrize(
    ("classes", "kw", "match"),
    [
        ((1, 1), {}, "distinct"),
        ((0, 9), {}, "distinct"),
        ((0,), {"train_size": 11}, "only 10 train"),
    ],
)
def test_subset_classes_refuses_bad_requests(classes, kw, match):
    with pytest.raises(ValueError, match=match):
        tasks.subset_classes(_toy(), classes, **kw)


# --- weight decay -----------------------------------------------------------------


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_weight_decay_presets_cover_every_optimizer_and_mode(preset):
    from experiments import weight_decay as wd

    config = sweep.SweepConfig(**wd.PRESETS[preset])  # validates every member
    members = config.resolved_members()
    arms = {(m.optimizer, m.weight_decay_mode) for m in members if m.weight_decay > 0}
    assert arms == {
        ("sgd", "l2"),
        ("sgd", "decoupled"),
        ("sgd", "l1"),
        ("adam", "l2"),
        ("adam", "decoupled"),
    }
    # no decay once per (optimizer, LR, seed): it is the bottom row of both modes
    zero = [(m.optimizer, m.lr, m.seed) for m in members if m.weight_decay == 0]
    grid = {
        (m.optimizer, m.lr, m.seed) for m in members if dict(m.tags)["part"] == "grid"
    }
    assert sorted(zero) == sorted(grid)


def test_weight_decay_runs_and_draws_every_panel(tmp_path):
    from experiments import weight_decay as wd

    rows = [
        {
            "optimizer": o,
            "lr": lr,
            "weight_decay": w,
            "weight_decay_mode": m,
            "seed": s,
            "tag:part": p,
        }
        for o, lrs in (("sgd", (0.05, 0.2)), ("adam", (0.003, 0.01)))
        for lr in lrs
        for s in (0, 1)
        for w, m, p in (
            (0.0, "l2", "grid"),
            (0.5, "l2", "grid"),
            (0.5, "decoupled", "grid"),
        )
    ]
    rows += [
        {
            "optimizer": "sgd",
            "lr": 0.2,
            "weight_decay": 0.01,
            "weight_decay_mode": "l1",
            "seed": s,
            "tag:part": "l1",
        }
        for s in (0, 1)
    ]
    path = tmp_path / "members.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = wd.EXPERIMENT.main(
        [*TINY, "--epochs", "1", "--members", str(path), "--out", str(tmp_path / "wd")]
    )
    members = _members(out)
    got = {(o, m) for o, m in zip(members["optimizer"], members["weight_decay_mode"])}
    # without decay the mode is not read: members.csv leaves it empty
    none = members["weight_decay"] == 0
    assert set(members["weight_decay_mode"][none]) == {""}
    got -= {("sgd", ""), ("adam", "")}
    assert got == {
        ("sgd", "l2"),
        ("sgd", "decoupled"),
        ("sgd", "l1"),
        ("adam", "l2"),
        ("adam", "decoupled"),
    }
    assert sorted(set(members["group"])) == [0, 1]  # one program per family
    _figures(out, wd.FIGURES)
    # The no-decay members are the bottom row of both panels of their optimizer
    # (and of SGD's L1 panel), every cell the mean of both seeds.
    heat = wd.FIGURES["wd_heatmaps.png"](out)
    panels = {ax.get_title(): ax for ax in heat.axes if ax.get_title()}
    assert sorted(panels) == sorted(
        f"optimizer {o}, weight decay mode {m}" for o, m in got if m != "l1"
    )  # the grid's panels; L1 is a part of its own
    for title, ax in panels.items():
        o = title.split(", ")[0].split()[-1]
        lrs = sorted(set(members["lr"][members["optimizer"] == o]))
        cells = np.ma.asarray(ax.collections[0].get_array()).reshape(-1, len(lrs))
        none = (members["optimizer"] == o) & (members["weight_decay"] == 0)
        for j, lr in enumerate(lrs):
            want = members["test_acc"][none & (members["lr"] == lr)]
            assert len(want) == 2 and cells[0, j] == pytest.approx(want.mean())
    # Heavy decay shrinks the saved weights; the norm is the one of load_params.
    for opt in ("sgd", "adam"):
        for mode in ("l2", "decoupled"):
            sel = lambda w, o=opt, m=mode: np.flatnonzero(  # noqa: E731
                (members["optimizer"] == o)
                & (members["weight_decay"] == w)
                & ((members["weight_decay_mode"] == m) | (w == 0))
                & (members["seed"] == 0)
                & (members["lr"] == members["lr"][members["optimizer"] == o].max())
            )[0]
            assert members["weight_norm"][sel(0.5)] < members["weight_norm"][sel(0.0)]
    params = results.load_params(out, int(members["member"][0]))["params"]
    norm = np.sqrt(
        sum(
            float((v.astype(np.float64) ** 2).sum())
            for layer in params.values()
            for v in layer.values()
        )
    )
    assert members["weight_norm"][0] == pytest.approx(norm, rel=1e-9)


# --- fine-tuning --------------------------------------------------------------------


def test_finetune_pretrains_then_finetunes_with_frozen_trunk_bit_for_bit(tmp_path):
    from experiments import finetune as ft

    out = ft.EXPERIMENT.main(
        [*TINY, "--epochs", "1", "--batch-sizes", "64", "--out", str(tmp_path / "ft")]
    )
    pre, fine = os.path.join(out, "pretrain"), os.path.join(out, "finetune")
    base = results.load_params(pre, 0)["params"]
    assert base["Dense_2"]["kernel"].shape == (256, 10)  # the 10-way head kept
    members = _members(fine)
    recipe = members["recipe"].astype(str)
    assert len(set(recipe)) == 6 and len(recipe) == 30
    config = results.read_json(os.path.join(fine, "config.json"))
    assert config["data"]["num_classes"] == 5
    assert config["data"]["name"] == "fashion_mnist[5,6,7,8,9]"

    def change(member, layer):
        p = results.load_params(fine, int(member))["params"]
        assert p["Dense_2"]["kernel"].shape == (256, 5)  # a new 5-way head
        return max(
            float(np.abs(p[layer][k] - base[layer][k]).max())
            for k in ("kernel", "bias")
        )

    for m in members["member"][np.char.startswith(recipe, "head only")]:
        for layer in ("Dense_0", "Dense_1"):
            p = results.load_params(fine, int(m))["params"][layer]
            for k in ("kernel", "bias"):
                assert np.array_equal(p[k], base[layer][k])  # frozen: bit for bit
    # Differential LRs: the first layer moves at 1/10 of the uniform 0.01 LR.
    first = lambda name: members["member"][(recipe == name) & (members["seed"] == 0)][0]  # noqa: E731
    diff = change(first("differential 0.001/0.01/0.1"), "Dense_0")
    uniform = change(first("uniform 0.01"), "Dense_0")
    assert 0 < diff < uniform / 3
    scratch = _members(os.path.join(out, "scratch"))
    assert set(scratch["recipe"].astype(str)) == {
        "from scratch 0.001",
        "from scratch 0.01",
        "from scratch 0.1",
        "head only 0.1 (random trunk frozen)",
    }
    _figures(out, ft.FIGURES)


# --- early stopping -----------------------------------------------------------------


def test_early_stopping_arms_stop_keep_best_and_halve(tmp_path):
    from experiments import early_stopping as es

    out = es.EXPERIMENT.main(
        [
            *TINY,
            "--epochs",
            "8",
            "--batch-sizes",
            "64",
            "--lrs",
            "0.3",
            "--seeds",
            "0,1",
            "--out",
            str(tmp_path / "es"),
        ]
    )
    arms = {
        d: _members(os.path.join(out, d))
        for d in os.listdir(out)
        if os.path.isfile(os.path.join(out, d, "members.csv"))
    }
    assert set(arms) == {
        "no_stop",
        "patience_3",
        "patience_10",
        "patience_30",
        "patience_10_val_acc",
        "plateau",
    }
    full = arms["no_stop"]["steps"]
    assert np.all(full == full[0]) and not (arms["no_stop"]["stopped"] == "True").any()
    p3 = arms["patience_3"]
    assert (p3["stopped"] == "True").any()
    assert np.all(p3["steps"][p3["stopped"] == "True"] < full[0])
    assert np.all(p3["best_val_step"] <= p3["steps"])
    for m in arms.values():  # every arm kept its best weights
        assert np.isfinite(m["best_test_acc"]).all()
    # Same seed, same trajectory until it stops: the best weights of a patience
    # arm evaluated at the same step as those of the run that never stops.
    same = arms["patience_30"]["best_val_step"] == arms["no_stop"]["best_val_step"]
    np.testing.assert_allclose(
        arms["patience_30"]["best_test_acc"][same],
        arms["no_stop"]["best_test_acc"][same],
        atol=1e-6,
    )
    _, history = plots.load(os.path.join(out, "plateau"))
    lr = history["lr"][np.isfinite(history["lr"])]
    halvings = np.log2(0.3 / lr)
    np.testing.assert_allclose(halvings, np.round(halvings), atol=1e-4)  # x0.5 only
    _figures(out, es.FIGURES)


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_every_sweep_of_the_multi_sweep_presets_is_valid(preset):
    """Each sweep's configuration builds (validated before any data loads)."""
    from experiments import early_stopping as es
    from experiments import finetune as ft

    sweep.SweepConfig(**{**ft.PRESETS[preset], **ft.PRETRAIN[preset]})
    fine = sweep.SweepConfig(**ft.PRESETS[preset])
    assert {dict(m.tags)["recipe"] for m in fine.recipes} >= {
        "uniform 0.01",
        "differential 0.001/0.01/0.1",
        "head only 0.1 (trunk frozen)",
    }
    names = []
    for name, settings, fields in es.arms(*es.PATIENCES[preset]):
        members = [es.recipes.Member(**fields)]
        sweep.SweepConfig(**{**es.PRESETS[preset], **settings}, recipes=members)
        names.append(name)
    assert names[0] == "no_stop" and names[-1] == "plateau"
