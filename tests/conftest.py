"""Test session setup: caches go to a temporary directory, never to ~/.cache."""

import os
import tempfile

os.environ.setdefault("JAXBATCH_CACHE", tempfile.mkdtemp(prefix="jaxbatch-test-"))
