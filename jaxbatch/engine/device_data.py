"""Data on the device: the training set whole, evaluation sets in padded batches.

The datasets in scope fit in device memory (decision 5 of the design): load
once, slice batches inside the compiled code, no per-step host transfer.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def device_train_data(x, y, mean, std) -> dict:
    """The training set as device arrays (uint8 images, normalized per batch)."""
    return {
        "x_train": jnp.asarray(x),
        "y_train": jnp.asarray(y, jnp.int32),
        "mean": jnp.asarray(mean, jnp.float32),
        "std": jnp.asarray(std, jnp.float32),
    }


def device_eval_data(x, y, mean, std, batch_size: int) -> dict:
    """The evaluation set as ``[batches, batch_size, ...]`` device arrays.

    The last batch is padded; ``mask`` marks real examples, so one compiled
    function serves every batch and padding never counts.
    """
    n = len(x)
    nb = -(-n // batch_size)
    pad = nb * batch_size - n
    xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    yp = np.concatenate([y, np.zeros((pad,), y.dtype)]).astype(np.int32)
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    return {
        "x": jnp.asarray(xp.reshape(nb, batch_size, *x.shape[1:])),
        "y": jnp.asarray(yp.reshape(nb, batch_size)),
        "mask": jnp.asarray(mask.reshape(nb, batch_size)),
        "mean": jnp.asarray(mean, jnp.float32),
        "std": jnp.asarray(std, jnp.float32),
        "n": n,
    }
