"""Orbax checkpoints of a group: its member-axis state plus the history so far.

Layout: ``<out>/checkpoints/group_<g>/epoch_<e>/`` (an orbax directory). Orbax
writes into a temporary directory and renames it when complete, so a directory
with the final name is a complete checkpoint; a run killed mid-save leaves
only a temporary directory, which is ignored and later removed.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


def group_dir(out: str, group: int) -> str:
    return os.path.join(os.path.abspath(out), "checkpoints", f"group_{group}")


def list_epochs(directory: str) -> list[int]:
    """Epochs with a complete checkpoint in ``directory``, ascending."""
    if not os.path.isdir(directory):
        return []
    found = (_EPOCH_DIR.match(name) for name in os.listdir(directory))
    return sorted(int(m.group(1)) for m in found if m)


def save(directory: str, epoch: int, tree: Any, *, keep: int = 2) -> str:
    """Save ``tree`` as the checkpoint of ``epoch``; keep the newest ``keep``."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"epoch_{epoch:04d}")
    if os.path.exists(path):
        shutil.rmtree(path)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, tree)
    checkpointer.wait_until_finished()
    for old in list_epochs(directory)[:-keep]:
        shutil.rmtree(os.path.join(directory, f"epoch_{old:04d}"), ignore_errors=True)
    for name in os.listdir(directory):
        if not _EPOCH_DIR.match(name):  # leftovers of an interrupted save
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    return path


def restore(directory: str, epoch: int, like: Any) -> Any:
    """Restore the checkpoint of ``epoch`` into the structure/shapes of ``like``.

    Leaves of ``like`` that are numpy arrays come back as numpy arrays.
    """
    path = os.path.join(directory, f"epoch_{epoch:04d}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = ocp.StandardCheckpointer().restore(path, abstract)
    return jax.tree.map(
        lambda ref, x: np.asarray(x) if isinstance(ref, np.ndarray) else x,
        like,
        restored,
    )
