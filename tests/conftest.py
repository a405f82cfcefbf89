"""Test session setup: caches go to a temporary directory, never to ~/.cache."""

import os
import tempfile

os.environ.setdefault("JAXBATCH_CACHE", tempfile.mkdtemp(prefix="jaxbatch-test-"))

# The XLA:CPU flags most runs get (jaxbatch.xla_flags), fixed before any test
# starts JAX, so that every test compiles the same way whatever runs first.
from jaxbatch import xla_flags  # noqa: E402

xla_flags.configure(["simple_cnn"])
