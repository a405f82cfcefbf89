"""Data augmentation on the device, per member: a crop of padding 0 without
a flip is the identity, a flip mirrors, a crop is a window of the padded
image, the draws come from the member's seed (a member equals its solo run),
and members.csv records it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbatch import recipes, results, sweep
from jaxbatch.config import SweepConfig
from jaxbatch.engine.step import augment

M = recipes.Member


def _images(n=6, h=8, w=8):
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.integers(1, 256, (n, h, w, 1)), jnp.uint8)


def test_a_crop_of_zero_and_no_flip_is_the_identity():
    x = _images()
    key = jax.random.PRNGKey(3)
    # a member without a crop in a group whose largest crop pads by 4
    np.testing.assert_array_equal(augment(x, key, 0, 0.0, pad=4, flip=True), x)
    np.testing.assert_array_equal(augment(x, key, 0, 0.0, pad=0, flip=False), x)


def test_a_flip_mirrors_every_image():
    x = _images()
    out = augment(x, jax.random.PRNGKey(0), 0, 1.0, pad=0, flip=True)
    np.testing.assert_array_equal(out, x[:, :, ::-1])


def test_a_crop_is_a_window_of_the_padded_image_within_its_padding():
    x = _images(n=32)
    out = np.asarray(augment(x, jax.random.PRNGKey(1), 2, 0.0, pad=4, flip=False))
    padded = np.pad(np.asarray(x), ((0, 0), (4, 4), (4, 4), (0, 0)))
    seen = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                if np.array_equal(padded[i, 4 + dy : 12 + dy, 4 + dx : 12 + dx],
                                  out[i])]  # fmt: skip
        assert hits, f"image {i} is no window within 2 pixels"
        seen.add(hits[0])
    assert len(seen) > 5  # the offsets vary from image to image


def _run(members, ds, out):
    cfg = SweepConfig(model="mlp", model_kwargs=(("hidden", (16,)),), batch_sizes=(32,),
                      recipes=members, epochs=2, eval_every=8,
                      strategy="vmap")  # fmt: skip
    sweep.run(cfg, str(out), progress=False, plots=False, dataset=ds)
    return results.read_members(str(out)), results.read_history(str(out))


def test_members_with_augmentation_equal_their_solo_runs(fmnist, tmp_path):
    members = [M(lr=0.05, augment="crop:4,flip"), M(lr=0.05),
               M(lr=0.1, augment="crop:2")]  # fmt: skip
    m, h = _run(members, fmnist, tmp_path / "g")
    assert len(set(m["group"])) == 1
    assert [str(a) if str(a) != "nan" else "" for a in m["augment"]] == [
        "crop:4,flip", "", "crop:2",
    ]  # fmt: skip
    for i, member in enumerate(members):
        solo, solo_h = _run([member], fmnist, tmp_path / f"s{i}")
        np.testing.assert_allclose(h["train_loss"][h["member"] == i],
                                   solo_h["train_loss"], rtol=1e-5)  # fmt: skip
        np.testing.assert_allclose(m["final_val_loss"][i], solo["final_val_loss"][0],
                                   rtol=1e-5)  # fmt: skip
    # augmentation changes training (member 1, unaugmented, equals its solo
    # run: a sweep without augmentation, the program it always was)
    assert m["final_train_loss"][0] != m["final_train_loss"][1]


@pytest.mark.parametrize("text", ["crop", "crop:x", "rotate", "crop:100"])
def test_bad_augmentations_are_one_line_errors(text):
    with pytest.raises(ValueError, match="is not crop:P"):
        SweepConfig(model="mlp", recipes=[M(lr=0.1, augment=text)])


def test_the_augmentation_benchmark_runs():
    from benchmarks import augment_cost

    argv = ["--models", "mlp", "--members", "1", "--batch-size", "16",
            "--min-window", "0.01"]  # fmt: skip
    (row,) = augment_cost.main(argv)
    assert row["none_ratio"] == 1.0
    assert all(np.isfinite(row[f"{k}_ratio"]) for k in augment_cost.FORMS)
