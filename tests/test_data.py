"""Behavioural tests of jaxbatch.data: real Fashion-MNIST, IDX, image folders,
the tfds cache, synthetic data, splits and normalize."""

import gzip
import hashlib
import os
import pathlib
import struct

import jax
import numpy as np
import pytest
from PIL import Image

from jaxbatch import data

FMNIST_FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]
HAVE_FMNIST = all(
    os.path.isfile(os.path.join(data.FASHION_MNIST_SYSTEM_DIR, f)) for f in FMNIST_FILES
)
needs_fmnist = pytest.mark.skipif(
    not HAVE_FMNIST,
    reason=f"Fashion-MNIST not in {data.FASHION_MNIST_SYSTEM_DIR} "
    "(sudo apt-get install dataset-fashion-mnist)",
)


def hashes(x):
    return {hashlib.sha1(img.tobytes()).hexdigest() for img in x}


# ----------------------------------------------------------------- Fashion-MNIST


@pytest.fixture(scope="module")
def fmnist():
    return data.load("fashion_mnist")


@needs_fmnist
def test_fashion_mnist_full(fmnist):
    assert fmnist.x_train.shape == (54_000, 28, 28, 1)  # default val: 10% of 60k
    assert fmnist.x_val.shape == (6_000, 28, 28, 1)
    assert fmnist.x_test.shape == (10_000, 28, 28, 1)
    assert fmnist.x_train.dtype == np.uint8 and fmnist.y_train.dtype == np.int32
    assert fmnist.image_shape == (28, 28, 1) and fmnist.num_classes == 10
    assert (
        fmnist.class_names[0] == "T-shirt/top" and fmnist.class_names[9] == "Ankle boot"
    )
    for y in (fmnist.y_train, fmnist.y_val, fmnist.y_test):
        assert y.min() == 0 and y.max() == 9
    assert np.bincount(fmnist.y_val).tolist() == [600] * 10  # stratified
    assert np.bincount(fmnist.y_test).tolist() == [1000] * 10
    assert not hashes(fmnist.x_train) & hashes(fmnist.x_val)
    np.testing.assert_allclose(fmnist.mean, [0.286], atol=0.002)
    np.testing.assert_allclose(fmnist.std, [0.353], atol=0.002)
    assert fmnist.mean.dtype == np.float32 and fmnist.mean.shape == (1,)
    assert "54000 train / 6000 val / 10000 test" in fmnist.summary()


@needs_fmnist
def test_fashion_mnist_seeded_subsets(fmnist):
    a = data.load(train_size=1000, val_size=200, seed=0)
    b = data.load(train_size=1000, val_size=200, seed=0)
    c = data.load(train_size=1000, val_size=200, seed=1)
    small = data.load(train_size=300, val_size=200, seed=0)
    assert (a.n_train, a.n_val) == (1000, 200)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.x_train, c.x_train)
    assert len(hashes(a.x_val) & hashes(c.x_val)) < 20  # ~200 * 200 / 60k expected
    assert not hashes(a.x_train) & hashes(a.x_val)
    assert np.bincount(a.y_val).tolist() == [20] * 10
    assert np.bincount(a.y_train).tolist() == [100] * 10
    pool = hashes(fmnist.x_train) | hashes(fmnist.x_val)
    assert hashes(a.x_train) <= pool
    # val depends on (seed, val_size) only; a bigger train_size is a superset.
    np.testing.assert_array_equal(small.x_val, a.x_val)
    assert hashes(small.x_train) <= hashes(a.x_train)


@needs_fmnist
def test_fashion_mnist_resized():
    ds = data.load(train_size=50, val_size=10, image_size=32)
    assert ds.x_train.shape == (50, 32, 32, 1) and ds.x_test.shape == (
        10_000,
        32,
        32,
        1,
    )
    assert ds.x_train.dtype == np.uint8 and 0.2 < ds.mean[0] < 0.4


def test_fashion_mnist_missing_names_the_command(tmp_path, monkeypatch):
    with pytest.raises(data.DataNotFoundError) as err:
        data.load("fashion_mnist", data_dir=str(tmp_path))
    assert "apt-get install dataset-fashion-mnist" in str(err.value)
    assert str(tmp_path) in str(err.value) and "--data-dir" in str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    # Nowhere at all: no data_dir, no system files, no tfds.
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "nope"))
    monkeypatch.setattr(data, "_tfds_installed", lambda: False)
    with pytest.raises(data.DataNotFoundError, match="apt-get install dataset-fash"):
        data.load(cache_dir=str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- IDX


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_idx_dir(directory, n_train=30, n_test=6, gz=True):
    """Image i of a split is filled with the value 3 * i + label, label = i % 3."""
    ext = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 3
        images = np.broadcast_to((3 * np.arange(n) + labels)[:, None, None], (n, 4, 5))
        write_idx(directory / f"{split}-images-idx3-ubyte{ext}", images)
        write_idx(directory / f"{split}-labels-idx1-ubyte{ext}", labels)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_from_data_dir(tmp_path, gz):
    write_idx_dir(tmp_path, gz=gz)
    ds = data.load("mnist", data_dir=str(tmp_path), val_size=6, seed=3)
    assert ds.x_train.shape == (24, 4, 5, 1) and ds.x_val.shape == (6, 4, 5, 1)
    assert ds.x_test.shape == (6, 4, 5, 1) and ds.num_classes == 10
    for x, y in (
        (ds.x_train, ds.y_train),
        (ds.x_val, ds.y_val),
        (ds.x_test, ds.y_test),
    ):
        np.testing.assert_array_equal(x[:, 0, 0, 0] % 3, y)  # pixels kept their label
        assert (x == x[:, :1, :1]).all()  # each image is still one constant value
    assert np.bincount(ds.y_val).tolist() == [2, 2, 2]
    pool = np.concatenate([ds.x_train, ds.x_val])[:, 0, 0, 0]
    assert sorted(pool.tolist()) == [3 * i + i % 3 for i in range(30)]


def test_idx_corrupt_files(tmp_path):
    write_idx_dir(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(images, "wb") as f:
        f.write(b"\x12\x34\x08\x03garbage")
    with pytest.raises(ValueError, match="not an IDX file") as err:
        data.load("fashion_mnist", data_dir=str(tmp_path))
    assert str(images) in str(err.value)
    write_idx(images, np.zeros((30, 4, 5)))
    with gzip.open(images, "rb") as f:
        raw = f.read()
    with gzip.open(images, "wb") as f:
        f.write(raw[:-7])
    with pytest.raises(ValueError, match="truncated"):
        data.load("fashion_mnist", data_dir=str(tmp_path))
    images.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        data.load("fashion_mnist", data_dir=str(tmp_path))


# ------------------------------------------------------------------- image folders

COLORS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "emu": (0, 0, 255)}


def make_folder(root, per_class=5):
    """3 classes of solid-colour images of different sizes and modes."""
    for c, (name, color) in enumerate(COLORS.items()):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = Image.new("RGB", (10 + 3 * i, 7 + 5 * c), color)
            if i == 1:
                img = img.convert("RGBA")
            img.save(root / name / f"{i}.{'png' if i % 2 else 'bmp'}")
        (root / name / "notes.txt").write_text("not an image")
        (root / name / "._0.png").write_bytes(b"macOS metadata, skipped")
    return root


def test_imagefolder(tmp_path):
    root = make_folder(tmp_path / "imgs")
    cache = str(tmp_path / "cache")
    ds = data.load(
        "imagefolder", data_dir=str(root), image_size=8, val_size=3, cache_dir=cache
    )
    assert ds.class_names == ("cat", "dog", "emu") and ds.num_classes == 3
    assert ds.x_train.shape == (12, 8, 8, 3) and ds.x_val.shape == (3, 8, 8, 3)
    assert ds.x_test is None and ds.y_test is None
    assert np.bincount(ds.y_val).tolist() == [1, 1, 1]  # stratified
    assert np.bincount(ds.y_train).tolist() == [4, 4, 4]
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val)):
        # The one saturated channel of every image names its folder.
        np.testing.assert_array_equal(x.reshape(len(x), -1, 3).argmax(-1).max(-1), y)
        assert (x.max(axis=(1, 2, 3)) == 255).all()
    default = data.load("imagefolder", data_dir=str(root), cache_dir=cache)
    assert default.image_shape == (224, 224, 3)
    assert (default.n_train, default.n_val) == (13, 2)  # val: 10% of 15, rounded


def test_imagefolder_cache(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "imgs")
    kw = {"data_dir": str(root), "image_size": 6, "cache_dir": str(tmp_path / "c")}
    first = data.load("imagefolder", **kw)
    assert len(list((tmp_path / "c").glob("imagefolder_imgs_6_*.npz"))) == 1
    assert not list((tmp_path / "c").glob("*.tmp"))

    def no_decoding(path, size):
        raise AssertionError(f"decoded {path} despite the cache")

    monkeypatch.setattr(data, "_decode_image", no_decoding)
    second = data.load("imagefolder", **kw)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_val, second.y_val)
    # A new file changes the key, so the folder is decoded again.
    Image.new("RGB", (5, 5), COLORS["dog"]).save(root / "dog" / "new.png")
    with pytest.raises(AssertionError, match="despite the cache"):
        data.load("imagefolder", **kw)


def test_imagefolder_errors(tmp_path, monkeypatch):
    kw = {"image_size": 4, "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(ValueError, match="needs data_dir"):
        data.load("imagefolder", **kw)
    with pytest.raises(data.DataNotFoundError, match="does not exist"):
        data.load("imagefolder", data_dir=str(tmp_path / "missing"), **kw)
    (tmp_path / "flat").mkdir()
    with pytest.raises(data.DataNotFoundError, match="no class folders"):
        data.load("imagefolder", data_dir=str(tmp_path / "flat"), **kw)
    root = make_folder(tmp_path / "imgs")
    (root / "zebra").mkdir()
    with pytest.raises(data.DataNotFoundError, match="zebra.*holds no images"):
        data.load("imagefolder", data_dir=str(root), **kw)
    (root / "zebra" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        data.load("imagefolder", data_dir=str(root), **kw)
    # Sizes are checked against the 16 files before any decoding.
    monkeypatch.setattr(data, "_decode_image", None)
    with pytest.raises(ValueError, match="train_size 15 \\+ val_size 2 .* 16 images"):
        data.load("imagefolder", data_dir=str(root), train_size=15, **kw)


# --------------------------------------------------------------------------- tfds


def fake_catalog(calls):
    def _tfds_arrays(name, data_dir):
        calls.append(name)
        rng = np.random.default_rng(0)
        return {
            "x": rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8),
            "y": np.arange(50, dtype=np.int32) % 5,
            "x_test": rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8),
            "y_test": np.arange(10, dtype=np.int32) % 5,
            "class_names": np.array(["a", "b", "c", "d", "e"]),
        }

    return _tfds_arrays


def test_tfds_materialized_once_to_npz(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(data, "_tfds_arrays", fake_catalog(calls))
    kw = {"cache_dir": str(tmp_path), "val_size": 10, "seed": 2}
    first = data.load("cifar10", **kw)
    assert calls == ["cifar10"] and (tmp_path / "tfds_cifar10.npz").is_file()
    assert first.x_train.shape == (40, 8, 8, 3) and first.x_test.shape == (10, 8, 8, 3)
    assert first.class_names == ("a", "b", "c", "d", "e")
    assert np.bincount(first.y_val).tolist() == [2] * 5
    again = data.load("CIFAR10", **kw)
    assert calls == ["cifar10"]  # from the cache: TensorFlow never touched
    np.testing.assert_array_equal(first.x_val, again.x_val)
    np.testing.assert_array_equal(first.x_test, again.x_test)
    data.load("tfds:emnist/letters", **kw)
    assert calls[-1] == "emnist/letters"
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_tfds_arrays", fake_catalog([]))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        data.load("cifar10", cache_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_tfds_missing_or_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_tfds_installed", lambda: False)
    with pytest.raises(data.DataNotFoundError) as err:
        data.load("cifar100", cache_dir=str(tmp_path))
    assert "'cifar100'" in str(err.value) and "pip install 'jaxbatch[tfds]'" in str(
        err.value
    )
    with pytest.raises(ValueError, match="unknown dataset 'no_such_set'") as err:
        data.load("no_such_set", cache_dir=str(tmp_path))
    assert "fashion_mnist" in str(err.value) and "tensorflow-datasets" in str(err.value)
    with pytest.raises(data.DataNotFoundError, match="MNIST not found"):
        data.load("mnist", cache_dir=str(tmp_path))


def test_unknown_name_with_tfds(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("tensorflow")
    with pytest.raises(ValueError, match="no_such_set"):
        data.load("no_such_set", cache_dir=str(tmp_path))


def test_tfds_mock_data(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("tensorflow")
    with tfds.testing.mock_data(num_examples=40):
        ds = data.load("cifar10", cache_dir=str(tmp_path), val_size=8)
        mnist = data.load("mnist", cache_dir=str(tmp_path), val_size=4)  # no IDX dir
    assert ds.x_train.shape == (32, 32, 32, 3) and ds.x_test.shape == (40, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.num_classes == 10
    assert mnist.x_train.shape == (36, 28, 28, 1) and mnist.num_classes == 10
    monkeypatch.setattr(data, "_tfds_arrays", None)  # outside the mock: cache only
    np.testing.assert_array_equal(
        data.load("cifar10", cache_dir=str(tmp_path), val_size=8).x_val, ds.x_val
    )


# ---------------------------------------------------------------- synthetic, splits


def test_synthetic_is_deterministic_and_learnable():
    ds = data.load("synthetic", train_size=300, val_size=200, seed=4)
    assert ds.x_train.shape == (300, 28, 28, 1) and ds.x_test.shape == (200, 28, 28, 1)
    np.testing.assert_array_equal(
        ds.x_train, data.load("synthetic", train_size=300, val_size=200, seed=4).x_train
    )
    np.testing.assert_array_equal(
        ds.x_train[:100], data.load("synthetic", train_size=100, seed=4).x_train
    )
    assert not np.array_equal(
        ds.x_train, data.load("synthetic", train_size=300, seed=5).x_train
    )
    # Nearest class mean on normalized pixels: the classes are separable.
    x_train = np.asarray(data.normalize(ds.x_train, ds.mean, ds.std)).reshape(300, -1)
    x_val = np.asarray(data.normalize(ds.x_val, ds.mean, ds.std)).reshape(200, -1)
    means = np.stack([x_train[ds.y_train == c].mean(0) for c in range(10)])
    pred = ((x_val[:, None] - means[None]) ** 2).sum(-1).argmin(-1)
    assert (pred == ds.y_val).mean() > 0.9
    rgb = data.load("synthetic_rgb")
    assert (rgb.n_train, rgb.n_val, rgb.image_shape) == (512, 128, (32, 32, 3))
    assert data.load("synthetic_rgb", image_size=12).image_shape == (12, 12, 3)


@pytest.mark.parametrize(
    "train_size, val_size", [(None, None), (70, 13), (5, 1), (99, 1)]
)
def test_split_indices(train_size, val_size):
    y = np.repeat(np.arange(4), [50, 30, 15, 5])  # unbalanced classes, 100 images
    train, val = data._split_indices(y, train_size, val_size, seed=7)
    assert len(val) == (val_size or 10) and len(train) == (train_size or 100 - len(val))
    assert not set(train) & set(val) and len(set(train)) == len(train)
    if val_size is None:
        assert np.bincount(y[val], minlength=4).tolist() == [5, 3, 2, 0]  # proportional
    same_val = data._split_indices(y, 1, val_size, seed=7)[1]
    np.testing.assert_array_equal(np.sort(val), np.sort(same_val))
    assert not np.array_equal(
        np.sort(val), np.sort(data._split_indices(y, None, val_size, seed=8)[1])
    )


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"train_size": 0}, "train_size=0"),
        ({"val_size": -3}, "val_size=-3"),
        ({"train_size": 2.5}, "train_size=2.5"),
        ({"image_size": 0}, "image_size=0"),
        ({"train_size": 25, "val_size": 10}, "train_size 25 \\+ val_size 10 .* 30"),
        ({"train_size": 28}, "train_size 28 \\+ val_size 3 .* 30"),
    ],
)
def test_bad_sizes(tmp_path, kw, match):
    write_idx_dir(tmp_path)
    with pytest.raises(ValueError, match=match):
        data.load("mnist", data_dir=str(tmp_path), **kw)


def test_registry_and_dataset_checks():
    assert {"fashion_mnist", "mnist", "imagefolder", "synthetic"} <= set(
        data.available_datasets()
    )
    ds = data.load("synthetic", train_size=8, val_size=4)
    with pytest.raises(ValueError, match="uint8"):
        data.Dataset(**{**ds.__dict__, "x_val": ds.x_val.astype(np.float32)})


def test_normalize_under_jit():
    ds = data.load("synthetic_rgb", train_size=200, val_size=8, image_size=8)
    z = jax.jit(data.normalize)(ds.x_train, ds.mean, ds.std)
    assert z.dtype == np.float32 and z.shape == (200, 8, 8, 3)
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1, atol=1e-4)
    want = (ds.x_train[:2] / 255 - ds.mean) / ds.std
    np.testing.assert_allclose(z[:2], want, rtol=1e-5, atol=1e-5)


def test_pathlib_data_dir(tmp_path):
    write_idx_dir(tmp_path)
    assert data.load("mnist", data_dir=pathlib.Path(tmp_path)).n_train == 27
