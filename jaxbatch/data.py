"""Datasets as uint8 arrays: registry, local sources, tfds, an .npz cache, splits.

`load(name, ...)` returns a `Dataset` of host numpy arrays that the engine puts on
the device once. Images stay uint8 (GHIM-20 at 224 px: 1.5 GB; 6 GB as float32);
compiled code turns each batch into floats with `normalize`.

Sources (`available_datasets()` lists the built-in names):
- `fashion_mnist` (default), `mnist`: IDX files (.gz or not) in `data_dir`; else
  Fashion-MNIST from /usr/share/datasets/fashion-mnist; else tfds.
- any other name, or `tfds:NAME`: a tensorflow-datasets image dataset (`cifar10`,
  ...), materialized once to an .npz in `cache_dir`; later runs skip TensorFlow.
- `imagefolder`: `data_dir/<class>/<image>` (e.g. GHIM-20), RGB, squashed to
  `image_size` x `image_size` (default 224; nothing is cropped), cached as .npz.
- `synthetic` (28x28x1), `synthetic_rgb` (32x32x3): patterns + noise, for tests.

Splits: val is held out of the official train split (of all images for
imagefolder, which has no test); test is the official test split. The hold-out is
stratified by class and seeded: one permutation of the pool from `seed`; each
class gives its first images (in that order) to val, the next ones to train. So
val depends only on (seed, val_size) and a larger train_size is a superset.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gzip
import hashlib
import importlib.util
import os
import pathlib
import tempfile
import warnings
import zlib

import jax.numpy as jnp
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_IMAGEFOLDER_SIZE = 224
MIN_IMAGES_PER_CLASS = 10
TFDS_BATCH = 1024
IMAGE_SUFFIXES = tuple(".jpg .jpeg .png .bmp .gif .tif .tiff .webp .ppm .pgm".split())

_FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal")
_FASHION_NAMES += ("Shirt", "Sneaker", "Bag", "Ankle boot")
_SYNTHETIC = {"synthetic": (28, 1), "synthetic_rgb": (32, 3)}  # (size, channels)
_BUILTIN = ("fashion_mnist", "mnist", "imagefolder", *_SYNTHETIC)
# Without tfds these get "install tfds", other names "unknown dataset".
_KNOWN_TFDS = ("cifar10", "cifar100", "svhn_cropped", "kmnist", "emnist", "stl10")
_TFDS_PIP = "pip install 'jaxbatch[tfds]'"
_CACHE = pathlib.Path.home() / ".cache" / "jaxbatch" / "datasets"


class DataNotFoundError(FileNotFoundError):
    """The data is not on this machine; the message says how to get it."""


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Dataset:
    """Host arrays of one dataset, split into train / val (/ test).

    x_*: [n, H, W, C] uint8; y_*: [n] int32 in [0, num_classes).
    mean, std: [C] float32, per-channel statistics of x_train / 255.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    num_classes: int
    class_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        for split in ("train", "val") + (() if self.x_test is None else ("test",)):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            ok = x.dtype == np.uint8 and y.dtype == np.int32 and x.ndim == 4
            if not ok or y.shape != x.shape[:1] or x.shape[1:] != self.image_shape:
                raise ValueError(
                    f"{split}: want x [n, H, W, C] uint8 and y [n] int32, got "
                    f"x {x.shape} {x.dtype}, y {y.shape} {y.dtype}"
                )
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.num_classes=} but {len(self.class_names)} names")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C)."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_val(self) -> int:
        return len(self.y_val)

    def summary(self) -> str:
        h, w, c = self.image_shape
        test = "no" if self.y_test is None else len(self.y_test)
        stats = zip(self.mean, self.std, strict=True)
        return (
            f"{self.name}: {self.n_train} train / {self.n_val} val / {test} test, "
            f"{h}x{w}x{c} uint8, {self.num_classes} classes, per-channel mean/std "
            + ", ".join(f"{m:.3f}/{s:.3f}" for m, s in stats)
        )


def available_datasets() -> tuple[str, ...]:
    """Built-in names; any tfds catalog name (or `tfds:NAME`) also loads."""
    return _BUILTIN


def normalize(x, mean, std):
    """(x / 255 - mean) / std as float32. x: [..., C] uint8; mean, std: [C]."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (jnp.asarray(x, jnp.float32) / 255.0 - mean) / std


def load(
    name: str = "fashion_mnist",
    *,
    data_dir: str | None = None,
    train_size: int | None = None,
    val_size: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    cache_dir: str | None = None,
) -> Dataset:
    """Loads `name` and splits it (see the module docstring).

    data_dir: the IDX files, the class folders, or tfds's own data_dir.
    train_size: images in train (default: the pool minus val; 512 for synthetic).
    val_size: images in val (default: 10% of the pool; 128 for synthetic).
    image_size: resize to image_size x image_size (default: native; imagefolder 224).
    cache_dir: for tfds and imagefolder; default $JAXBATCH_CACHE/datasets or
      ~/.cache/jaxbatch/datasets.
    """
    sizes = {"train_size": train_size, "val_size": val_size, "image_size": image_size}
    for key, value in sizes.items():
        if value is not None and (not isinstance(value, int | np.integer) or value < 1):
            raise ValueError(f"{key} must be a positive int, got {key}={value!r}")
    key = name.strip().lower().replace("-", "_")
    root = os.environ.get("JAXBATCH_CACHE")
    default = pathlib.Path(root, "datasets") if root else _CACHE
    cache = pathlib.Path(cache_dir or default)
    if key in _SYNTHETIC:
        size, channels = _SYNTHETIC[key]
        shape = (image_size or size, image_size or size, channels)
        pool = _synthetic(shape, train_size or 512, val_size or 128, seed)
    elif key == "imagefolder":
        pool = _imagefolder_pool(data_dir, image_size, cache, train_size, val_size)
    elif key in ("fashion_mnist", "mnist"):
        pool = _idx_pool(key, data_dir, cache)
    else:
        tfds_name = key.removeprefix("tfds:")
        known = tfds_name != key or tfds_name.split("/")[0] in _KNOWN_TFDS
        if not known and not _tfds_installed():
            raise ValueError(
                f"unknown dataset {name!r}; built-in: {', '.join(_BUILTIN)}. "
                f"Names from the tensorflow-datasets catalog (or tfds:NAME) are "
                f"accepted once it is installed: {_TFDS_PIP}"
            )
        pool = _tfds_pool(tfds_name, data_dir, cache)
    return _make_dataset(key, pool, train_size, val_size, seed, image_size)


def _counts(total: int, weights: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Per-class counts summing to `total`, proportional to weights, <= cap."""
    quota = total * weights / weights.sum()
    counts = np.minimum(np.floor(quota), cap).astype(np.int64)
    while counts.sum() < total:  # largest remainder; a capped class gives way
        room = counts < cap
        order = np.argsort(-np.where(room, quota - counts, -np.inf), kind="stable")
        counts[order[: min(total - counts.sum(), room.sum())]] += 1
    return counts


def _sizes(n: int, train_size: int | None, val_size: int | None) -> tuple[int, int]:
    """Resolves the defaults; errors if train + val does not fit a pool of n."""
    if val_size is None:
        val_size = max(1, int(n * DEFAULT_VAL_FRACTION + 0.5))
    if train_size is None:
        train_size = n - val_size
    if train_size < 1 or train_size + val_size > n:
        raise ValueError(
            f"train_size {train_size} + val_size {val_size} must fit the pool of "
            f"{n} images (val_size defaults to 10% of the pool); lower --train-size "
            "and --val-size (a preset sets both)"
        )
    return train_size, val_size


def _split_indices(
    y: np.ndarray, train_size: int | None, val_size: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified seeded (train_idx, val_idx) into a pool with labels y: [n]."""
    n = len(y)
    train_size, val_size = _sizes(n, train_size, val_size)
    perm = np.random.default_rng(seed).permutation(n)
    rank = np.argsort(perm)  # rank[i]: position of image i in perm
    classes, per_class = np.unique(y, return_counts=True)
    n_val = _counts(val_size, per_class, per_class)
    n_train = _counts(train_size, per_class, per_class - n_val)
    train, val = [], []
    for c, nv, nt in zip(classes, n_val, n_train, strict=True):
        members = perm[y[perm] == c]  # this class, in permutation order
        val.append(members[:nv])
        train.append(members[nv : nv + nt])
    # Return in permutation order so the arrays are shuffled, not class-sorted.
    train, val = np.concatenate(train), np.concatenate(val)
    return train[np.argsort(rank[train])], val[np.argsort(rank[val])]


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std of x/255 via histograms (no float copy of x): exact
    up to 50M values (all of Fashion-MNIST), else from evenly spaced images (every
    27th of GHIM-20 at 224 px): loads stay fast, normalization needs no more."""
    x = x[:: max(1, x.size // 50_000_000)]
    hist = np.zeros((x.shape[-1], 256), np.int64)
    for start in range(0, len(x), 256):
        chunk = x[start : start + 256]
        for c in range(x.shape[-1]):
            hist[c] += np.bincount(chunk[..., c].ravel(), minlength=256)
    v = np.arange(256) / 255.0
    mean = hist @ v / hist.sum(1)
    std = np.sqrt(np.maximum(hist @ v**2 / hist.sum(1) - mean**2, 0.0))
    # A constant channel would divide by zero in normalize.
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def _resize(x: np.ndarray, size: int | None) -> np.ndarray:
    """[n, H, W, C] uint8 -> [n, size, size, C] uint8 (bilinear, antialiased)."""
    if size is None or x.shape[1:3] == (size, size):
        return x
    out = np.empty((len(x), size, size, x.shape[-1]), np.uint8)
    for i, img in enumerate(x):
        img = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        img = img.resize((size, size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(img).reshape(size, size, -1)
    return out


def _make_dataset(name, pool, train_size, val_size, seed, image_size) -> Dataset:
    """pool: x, y (the train pool), class_names, optional x_test, y_test.

    A pool that brings its own x_val, y_val (synthetic) is not split again.
    """
    x, y = pool["x"], pool["y"].astype(np.int32)
    if "x_val" in pool:
        x_train, y_train, x_val, y_val = x, y, pool["x_val"], pool["y_val"]
    else:
        train, val = _split_indices(y, train_size, val_size, seed)
        x_train, y_train, x_val, y_val = x[train], y[train], x[val], y[val]
    x_train, x_val, x_test = (
        None if a is None else _resize(a, image_size)
        for a in (x_train, x_val, pool.get("x_test"))
    )
    mean, std = _channel_stats(x_train)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val.astype(np.int32),
        x_test=x_test,
        y_test=None if x_test is None else pool["y_test"].astype(np.int32),
        num_classes=len(pool["class_names"]),
        class_names=tuple(str(c) for c in pool["class_names"]),
        mean=mean,
        std=std,
    )


def _load_npz(path: pathlib.Path) -> dict | None:
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _save_npz(path: pathlib.Path, pool: dict) -> None:
    """Atomic: a killed run may leave a stray .tmp file, never a truncated .npz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{k: v for k, v in pool.items() if v is not None})
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}


def _read_idx(path: pathlib.Path, ndim: int) -> np.ndarray:
    """An IDX file (gzipped if it ends in .gz) as an array with `ndim` dims."""
    try:
        with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"cannot read {path}: corrupt or truncated ({err})") from err
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (magic bytes {data[:4].hex()})")
    if data[3] != ndim:
        raise ValueError(f"{path}: expected an IDX file of {ndim} dims, got {data[3]}")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    body = len(data) - 4 - 4 * ndim
    if body != np.prod(dims) * dtype.itemsize:
        raise ValueError(
            f"{path}: header says {dims} of {dtype}, but {body} data bytes follow "
            "(corrupt or truncated file)"
        )
    return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(dims)


def _find_idx(directory: pathlib.Path, split: str, kind: str) -> pathlib.Path | None:
    stem = directory / f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    return next((p for p in (stem.with_suffix(".gz"), stem) if p.is_file()), None)


def _idx_pool(key: str, data_dir: str | None, cache: pathlib.Path) -> dict:
    fashion = key == "fashion_mnist"
    where = data_dir or (FASHION_MNIST_SYSTEM_DIR if fashion else None)
    if where and _find_idx(pathlib.Path(where), "train", "images"):
        names = _FASHION_NAMES if fashion else [str(i) for i in range(10)]
        pool = {"class_names": np.array(names)}
        for split, prefix in (("train", ""), ("t10k", "_test")):
            images = _find_idx(pathlib.Path(where), split, "images")
            labels = _find_idx(pathlib.Path(where), split, "labels")
            if images is None:  # only the test files are optional
                continue
            if labels is None:
                raise DataNotFoundError(f"{images} has no labels file beside it")
            x, y = _read_idx(images, 3)[..., None], _read_idx(labels, 1)
            if len(x) != len(y):
                raise ValueError(f"{len(x)} images in {images}, {len(y)} in {labels}")
            pool.update({f"x{prefix}": x, f"y{prefix}": y.astype(np.int32)})
        return pool
    why = ""
    if data_dir is None:
        try:
            return _tfds_pool(key, None, cache)
        except DataNotFoundError as err:  # without tfds the hint below says it all
            why = f" ({err})" if _tfds_installed() else ""
    how = "Get it with: sudo apt-get install dataset-fashion-mnist  (or"
    how = how if fashion else "Get the IDX files from the MNIST site ("
    raise DataNotFoundError(
        f"{'Fashion-MNIST' if fashion else 'MNIST'} not found in "
        f"{where or 'any local directory'}. {how} pass --data-dir DIR holding "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, or "
        f"{_TFDS_PIP} with network access){why}"
    )


def _tfds_arrays(name: str, data_dir: str | None) -> dict:
    """Materializes a tfds dataset: x, y (train), x_test, y_test, class_names.

    The only function that touches TensorFlow; tests replace it.
    """
    if not _tfds_installed():
        raise DataNotFoundError(
            f"dataset {name!r} comes from tensorflow-datasets, which is not "
            f"installed. Get it with: {_TFDS_PIP}  (needs network access once)"
        )
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:  # TF would otherwise grab the GPU memory that JAX needs.
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TF was already initialized by the caller: their choice
        pass
    base = name.split("/")[0].split(":")[0]
    if base not in tfds.list_builders(with_community_datasets=False):
        raise ValueError(f"unknown dataset {name!r}: not in the tfds catalog either")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        builder.download_and_prepare()
        out = {}
        # Mock data (tests) has no split metadata: assume train and test there.
        splits = builder.info.splits or ("train", "test")
        for split, prefix in (("train", ""), ("test", "_test")):
            if split == "test" and split not in splits:
                continue
            # batch_size=-1 aborts under tfds mock data; batches of 1024 don't.
            kw = {"split": split, "batch_size": TFDS_BATCH, "as_supervised": True}
            batches = list(tfds.as_numpy(builder.as_dataset(**kw)))
            out[f"x{prefix}"] = np.concatenate([b[0] for b in batches])
            out[f"y{prefix}"] = np.concatenate([b[1] for b in batches]).astype(np.int32)
        labels = builder.info.features[builder.info.supervised_keys[1]]
        out["class_names"] = np.array(labels.names)
    except Exception as err:  # tfds raises anything from network to parse errors
        raise DataNotFoundError(
            f"could not get {name!r} through tensorflow-datasets: it downloads once "
            f"and needs network access ({type(err).__name__}: {str(err)[:300]})"
        ) from err
    return out


def _tfds_installed() -> bool:
    find = importlib.util.find_spec
    return bool(find("tensorflow_datasets") and find("tensorflow"))


def _tfds_pool(name: str, data_dir: str | None, cache: pathlib.Path) -> dict:
    path = cache / f"tfds_{name.replace('/', '__').replace(':', '_')}.npz"
    pool = _load_npz(path)
    if pool is None:
        pool = _tfds_arrays(name, data_dir)
        _save_npz(path, pool)
    return pool


def _decode_image(path: pathlib.Path, size: int) -> np.ndarray:
    """One image file -> [size, size, 3] uint8 RGB (aspect ratio not kept)."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG decodes at 1/2..1/8 scale: faster
            if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                # 16-bit (or 32-bit integer) grey: Pillow's convert("RGB") clips
                # it to white; scale the full range to 8 bits instead.
                wide = np.asarray(img, np.float64)
                peak = 65535.0 if img.mode.startswith("I;16") else max(wide.max(), 1)
                img = Image.fromarray(np.round(wide / peak * 255).astype(np.uint8))
            elif img.mode == "F":
                # float grey (a float TIFF): values in [0, 1] are a fraction of
                # white, others are scaled from their own range; Pillow's
                # convert("RGB") would cast 0.0-1.0 to 0-1 out of 255 (black).
                wide = np.nan_to_num(np.asarray(img, np.float64))
                lo, hi = (0.0, 1.0) if wide.min() >= 0 and wide.max() <= 1 else (
                    wide.min(), max(wide.max(), wide.min() + 1e-12))  # fmt: skip
                img = Image.fromarray(np.round((wide - lo) / (hi - lo) * 255)
                                      .astype(np.uint8))  # fmt: skip
            img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, np.uint8)
    except Exception as err:  # Pillow raises OSError, ValueError, SyntaxError, ...
        raise ValueError(f"cannot read image {path}: {err}") from err


def _imagefolder_pool(data_dir, image_size, cache, train_size, val_size) -> dict:
    if data_dir is None:
        raise ValueError("imagefolder needs data_dir, a folder of class folders")
    root = pathlib.Path(data_dir).resolve()
    if not root.is_dir():
        raise DataNotFoundError(f"imagefolder: data_dir {str(root)!r} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0] != ".")
    if not classes:
        raise DataNotFoundError(f"imagefolder: no class folders in {str(root)!r}")
    if len(classes) < 2:
        raise ValueError(
            f"imagefolder: {str(root)!r} has one class folder ({classes[0]!r}); "
            "classification needs at least two"
        )
    files, labels, few = [], [], []
    for label, cls in enumerate(classes):
        found = sorted(
            p
            for p in (root / cls).iterdir()
            # "._x.jpg" files are macOS metadata, not images.
            if p.suffix.lower() in IMAGE_SUFFIXES and p.name[0] != "." and p.is_file()
        )
        if not found:
            raise DataNotFoundError(
                f"imagefolder: class folder {str(root / cls)!r} holds no images "
                f"({', '.join(IMAGE_SUFFIXES)})"
            )
        if len(found) < MIN_IMAGES_PER_CLASS:
            few.append(f"{cls!r} ({len(found)})")
        files += found
        labels += [label] * len(found)
    _sizes(len(files), train_size, val_size)  # before the slow decoding
    if few:  # once, and only for a run that goes on
        warnings.warn(
            f"imagefolder: classes with fewer than {MIN_IMAGES_PER_CLASS} images: "
            f"{', '.join(few)}; their validation and test numbers will be noise",
            stacklevel=2,
        )
    size = image_size or DEFAULT_IMAGEFOLDER_SIZE
    digest = hashlib.sha256(f"{root}|{size}".encode())
    for f in files:  # any added, removed or touched file gives a new key
        st = f.stat()
        digest.update(f"{f.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    path = cache / f"imagefolder_{root.name}_{size}_{digest.hexdigest()[:16]}.npz"
    pool = _load_npz(path)
    if pool is None:
        x = np.empty((len(files), size, size, 3), np.uint8)
        # Pillow releases the GIL while decoding, so threads do help.
        with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as ex:
            decoded = ex.map(lambda f: _decode_image(f, size), files)
            show = {"desc": f"decoding {root.name}", "disable": len(files) < 500}
            for i, img in enumerate(tqdm(decoded, total=len(files), **show)):
                x[i] = img
        pool = {"x": x, "y": np.array(labels, np.int32), "class_names": classes}
        _save_npz(path, pool)
    return pool


def _synthetic(shape, train_size: int, val_size: int, seed: int) -> dict:
    """10 classes: a fixed smooth random pattern per class + per-image noise.

    The patterns do not depend on `seed`; the images do. Each split draws from
    its own streams, so the first k train images are the same for any
    train_size >= k. Test has val_size images.
    """
    size, _, channels = shape
    coarse = np.random.default_rng(1234).normal(size=(10, 4, 4, channels))
    idx = np.arange(size) * 4 // size  # nearest upsampling: low-frequency patterns
    templates = coarse[:, idx][:, :, idx]
    pool = {"class_names": np.array([f"pattern_{c}" for c in range(10)])}
    sizes = (("", train_size), ("_val", val_size), ("_test", val_size))
    for i, (prefix, n) in enumerate(sizes):
        label_rng, noise_rng = (np.random.default_rng([seed, i, k]) for k in (0, 1))
        y = label_rng.integers(0, 10, n).astype(np.int32)
        noise = noise_rng.normal(size=(n, *shape))
        x = np.clip(128 + 40 * templates[y] + 30 * noise, 0, 255).astype(np.uint8)
        pool.update({f"x{prefix}": x, f"y{prefix}": y})
    return pool
