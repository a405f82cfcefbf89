"""TensorBoard scalars of a sweep, written as it trains (``--tensorboard``).

One run per member in ``<out>/tensorboard/member_<i>_<recipe>/`` (so
TensorBoard overlays the members and filters them by name): ``train/loss``,
``train/acc`` and ``lr`` every step, ``val/loss`` and ``val/acc`` at every
evaluation, written after each epoch (a killed run keeps its finished
epochs). Uses tensorboardX, the maintained writer that does not need
TensorFlow: ``pip install 'jaxbatch[tensorboard]'``, then ``tensorboard
--logdir <out>/tensorboard``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np


def check_available() -> None:
    """ValueError (one line, before anything compiles) without tensorboardX."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise ValueError(
            "--tensorboard needs the tensorboardX package: pip install "
            "'jaxbatch[tensorboard]' (or pip install tensorboardX)"
        ) from None


def run_name(member: int, recipe) -> str:
    return (
        f"member_{member:03d}_bs{recipe.batch_size}_lr{recipe.lr:g}_seed{recipe.seed}"
    )


class Writer:
    """The event files of one group's members."""

    def __init__(self, out: str, members: list[dict]):
        from tensorboardX import SummaryWriter

        root = os.path.join(out, "tensorboard")
        self.writers = [
            SummaryWriter(os.path.join(root, run_name(m["member"], m["recipe"])))
            for m in members
        ]

    def write(self, history: Mapping, start: int, stop: int, eval_steps) -> None:
        """Steps ``start < step <= stop`` (1-based, as in ``history.csv``) of
        every member; the evaluations among them."""
        eval_steps = np.asarray(eval_steps)
        evals = np.flatnonzero((eval_steps > start) & (eval_steps <= stop))
        for i, w in enumerate(self.writers):
            for t in range(start, stop):
                for tag, key in (("train/loss", "train_loss"),
                                 ("train/acc", "train_acc"), ("lr", "lr")):  # fmt: skip
                    v = float(history[key][i, t])
                    if np.isfinite(v):
                        w.add_scalar(tag, v, t + 1)
            for e in evals:
                for tag, key in (("val/loss", "val_loss"), ("val/acc", "val_acc")):
                    v = float(history[key][i, e])
                    if np.isfinite(v):
                        w.add_scalar(tag, v, int(eval_steps[e]))
            w.flush()

    def close(self) -> None:
        for w in self.writers:
            w.close()
