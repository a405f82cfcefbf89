"""Where jaxbatch keeps what it measured and compiled, across runs.

``$JAXBATCH_CACHE`` (default ``~/.cache/jaxbatch``) holds ``auto``'s decisions
(``auto_strategy.json``), JAX's persistent compilation cache (``xla/``) and
the datasets materialised from tfds or image folders (``datasets/``).
"""

from __future__ import annotations

import os

import jax


def cache_dir() -> str:
    """The user cache directory of jaxbatch (``$JAXBATCH_CACHE`` overrides)."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "jaxbatch")
    return os.environ.get("JAXBATCH_CACHE") or default


def enable_compilation_cache(path: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache (unless the user set one).

    A second run of the same sweep then loads its programs instead of
    compiling them again. Returns the cache directory in use.
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = path or os.path.join(cache_dir(), "xla")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path
