"""Test session setup: caches go to a temporary directory, never to ~/.cache;
fixtures several test files share."""

import os
import tempfile

import pytest

os.environ.setdefault("JAXBATCH_CACHE", tempfile.mkdtemp(prefix="jaxbatch-test-"))

# The XLA:CPU flags most runs get (jaxbatch.xla_flags), fixed before any test
# starts JAX, so that every test compiles the same way whatever runs first.
from jaxbatch import xla_flags  # noqa: E402

xla_flags.configure(["simple_cnn"])


@pytest.fixture(scope="module")
def fmnist():
    """512/256 images of the built-in Fashion-MNIST (a test file may define
    its own ``fmnist``, e.g. the whole dataset)."""
    from jaxbatch import data

    try:
        return data.load("fashion_mnist", train_size=512, val_size=256, seed=0)
    except data.DataNotFoundError as err:
        pytest.skip(f"Fashion-MNIST not installed: {err}")
