"""The hooks that keep and report: checkpoints, saved weights, progress,
TensorBoard and the throughput of the first epoch."""

from __future__ import annotations

import time

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxbatch import checkpoint, results
from jaxbatch import tensorboard as tb
from jaxbatch.sweep import cost
from jaxbatch.sweep.hooks import Hook
from jaxbatch.sweep.plan import member_recipes
from jaxbatch.sweep.state import GroupRun


class Checkpoint(Hook):
    """The group's state and history after every epoch (orbax; the newest two
    kept), so that ``--resume`` continues from the last complete epoch."""

    def after_epoch(self, g: GroupRun, epoch: int) -> None:
        directory = checkpoint.group_dir(g.sweep.out, g.plan.index)
        checkpoint.save(directory, epoch + 1, {"state": g.state, "history": g.history},
                        meta={"members": member_recipes(g.plan)})  # fmt: skip


class SaveWeights(Hook):
    """Every member's final (and, under early stopping, best) weights in
    ``<out>/params/`` for ``results.load_params`` and ``--init-from``; every
    host gathers them, host 0 writes."""

    def at_end(self, g: GroupRun) -> None:
        weights = g.weights
        if not g.sweep.writer:
            return
        for i, entry in g.plan.listed():  # a shared training: under every id
            mine = jax.tree.map(lambda a, i=i: a[i], weights)
            results.save_params(g.sweep.out, entry["member"], mine)


class Progress(Hook):
    """A progress bar per group: steps, the epoch, the highest validation
    accuracy of any member so far."""

    def start(self, g: GroupRun) -> None:
        phases = len(g.specs) > 1
        sizes = "->".join(map(str, g.specs)) if phases else str(g.spec.batch_size)
        self.bar = tqdm(
            total=g.plan.total_steps,
            initial=int(g.plan.epoch_starts[g.epochs_done]),
            desc=f"group {g.plan.index + 1} ({g.spec.model}, batch {sizes})",
            disable=not g.sweep.progress,
            unit="step",
            dynamic_ncols=True,
        )

    def after_steps(self, g: GroupRun, start: int, stop: int, metrics) -> None:
        self.bar.update(stop - start)

    def at_eval(self, g: GroupRun, e: int) -> None:
        acc = g.history["val_acc"][: g.n_real]
        acc = acc[np.isfinite(acc)]  # every member may have diverged
        self.bar.set_postfix(
            epoch=f"{g.epoch + 1}/{g.config.epochs}",
            max_val_acc=f"{acc.max():.4f}" if acc.size else "none (diverged)",
        )

    def at_end(self, g: GroupRun) -> None:
        if getattr(self, "bar", None) is not None:
            self.bar.close()
            self.bar = None


class TensorBoard(Hook):
    """Each member's scalars in ``<out>/tensorboard``, written after every epoch
    (:mod:`jaxbatch.tensorboard`)."""

    def start(self, g: GroupRun) -> None:
        self.writer = tb.Writer(g.sweep.out, g.plan.members) if g.sweep.writer else None

    def after_epoch(self, g: GroupRun, epoch: int) -> None:
        if self.writer is not None:
            starts = g.plan.epoch_starts
            self.writer.write(g.history, int(starts[epoch]), int(starts[epoch + 1]),
                              g.plan.eval_steps)  # fmt: skip

    def at_end(self, g: GroupRun) -> None:
        if getattr(self, "writer", None) is not None:
            self.writer.close()
            self.writer = None


class Throughput(Hook):
    """The FLOP/s achieved in the first epoch trained here, its share of the
    device's peak and the whole sweep's estimated time at that rate (printed,
    and in ``config.json``'s ``cost``)."""

    def after_epoch(self, g: GroupRun, epoch: int) -> None:
        c = g.sweep.meta.get("cost")
        flops = c["groups"][g.plan.index]["flops_per_member_step"] if c else None
        if not flops or epoch != g.epochs_done:
            return
        took = time.perf_counter() - g.epoch_started
        start, end = (int(s) for s in g.plan.epoch_starts[epoch : epoch + 2])
        seen = float(g.plan.step_batch_sizes()[start:end].sum())
        first = g.plan.batch_sizes[0]
        achieved = flops * g.n_real * seen / first / took
        tqdm.write(
            f"group {g.plan.index + 1}: {cost.flops_text(achieved)}/s achieved "
            f"in epoch {epoch + 1} ({took:.1f} s)"
        )
        cost.record_throughput(c, g.plan.index, achieved, took)
