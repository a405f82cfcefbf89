"""A group's compiled functions and the loop that runs its steps.

:func:`group_fns` compiles, once per :class:`TrainSpec`, every function a
group needs with the member axis mapped by the spec's strategy;
:func:`run_steps` runs a number of steps (chunks of ``steps_per_call``, the
probed steps at their cadence) and keeps the metrics on the device.

The loop form is a choice of its own: ``steps_per_call`` steps run per
compiled call (a ``lax.scan``, optionally unrolled), the host looping over
calls. On XLA:CPU a rolled scan of conv steps was measured 25x slower than a
host loop of jitted steps, so the default is one step per call.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import multihost_utils

from jaxbatch.engine.member_axis import host_loop, make_mesh, over_members
from jaxbatch.engine.spec import TrainSpec
from jaxbatch.engine.step import (
    eval_batch,
    init_member,
    start_epoch,
    train_step,
    update_control,
)


@dataclasses.dataclass(frozen=True)
class GroupFns:
    """The compiled functions of one group (all take and return member-axis trees)."""

    init: Callable  # (hp, base=None) -> state; base: weights to start from
    start_epoch: Callable  # (state, hp) -> state
    train: Callable  # (state, hp, data) -> (state, metrics[members, steps_per_call])
    train_one: Callable  # same, one step
    train_last: Callable | None  # one step on the epoch's smaller last batch
    eval: Callable  # (state, batch) -> (loss_sum[members], correct[members])
    control: Callable  # (state, hp, metric[members]) -> state
    train_probe: Callable | None = None  # one step with the step probes on


def _mapper(spec: TrainSpec) -> Callable:
    """``mapped(fn, strategy=spec.strategy)``: ``fn(member_args, shared)`` over
    the member axis of the group, on its devices."""
    mesh = make_mesh(spec.n_devices) if spec.n_devices > 1 else None

    def mapped(fn, strategy=spec.strategy):
        if strategy == "loop":
            return host_loop(fn, mesh)
        return over_members(fn, strategy, mesh)

    return mapped


def _jitter(spec: TrainSpec) -> Callable:
    """``jax.jit``, except under ``loop``, whose mapped calls are compiled already."""
    if spec.strategy == "loop":
        return lambda f, **kw: f
    return jax.jit


@functools.lru_cache(maxsize=32)
def group_fns(spec: TrainSpec) -> GroupFns:
    """Compile-once functions for a group; cached on the (hashable) spec.

    ``spec.strategy`` must not be ``"auto"`` (see :func:`auto_strategy`).
    """

    def member_init(hp, base):
        return init_member(spec, hp, base)

    def member_epoch(args, _):
        state, hp = args
        return start_epoch(spec, state, hp)

    # The step probes run in a step of their own (train_probe), called at
    # their cadence; the other steps are the program without them.
    plain = dataclasses.replace(spec, probes=())

    def member_train(n_steps: int, batch_size: int | None = None, spec_=plain):
        def run(args, data):
            state, hp = args

            def body(s, _):
                return train_step(spec_, s, hp, data, batch_size)

            if n_steps == 1:
                state, m = body(state, None)
                return state, jax.tree.map(lambda a: a[None], m)
            return lax.scan(body, state, None, length=n_steps, unroll=spec.unroll)

        return run

    def member_eval(state, batch):
        return eval_batch(spec, state, batch)

    def member_control(args, _):
        return update_control(spec, *args)

    mapped, jit = _mapper(spec), _jitter(spec)

    def train_fn(n_steps, batch_size=None, spec_=plain):
        f = mapped(member_train(n_steps, batch_size, spec_))
        return jit(lambda state, hp, data: f((state, hp), data), donate_argnums=0)

    # Init and reshuffling are not hot; vmapped they compile once, not once per
    # member (threefry-heavy inits compile slowly), and give the same bits.
    init = mapped(member_init, "vmap")
    epoch = mapped(member_epoch, "vmap")
    control = mapped(member_control)
    return GroupFns(
        train_probe=train_fn(1, spec_=spec) if spec.probes else None,
        init=jax.jit(lambda hp, base=None: init(hp, base)),
        start_epoch=jax.jit(lambda state, hp: epoch((state, hp), None)),
        train=train_fn(spec.steps_per_call),
        train_one=train_fn(1),
        train_last=train_fn(1, spec.last_batch) if spec.last_batch else None,
        eval=jit(mapped(member_eval)),
        control=jit(lambda state, hp, value: control((state, hp, value), None)),
    )


@functools.lru_cache(maxsize=64)
def member_fn(spec: TrainSpec, fn: Callable, *args) -> Callable:
    """``fn(spec, state, hp, data, *args)`` of one member, compiled over the
    group's member axis by its strategy: ``(state, hp, data) -> [members]``
    results. Cached like :func:`group_fns`, so ``fn`` should be a module-level
    function and ``args`` hashable (a probe's image count, its ε values).
    """
    mapped, jit = _mapper(spec), _jitter(spec)
    f = mapped(lambda member, data: fn(spec, *member, data, *args))
    return jit(lambda state, hp, data: f((state, hp), data))


def run_steps(
    fns: GroupFns, spec: TrainSpec, state, hp, data, n: int, *, start: int = 0,
    probe_every: int = 0,
):  # fmt: skip
    """Run ``n`` steps: full ``steps_per_call`` chunks, then single steps.

    With step probes (``fns.train_probe``) and ``probe_every``, every step whose
    number (``start`` + steps run here + 1) is a multiple of ``probe_every``
    is the probed step; the others are the program without probes, and their
    ``probes`` metric is NaN. Probes change no state: the run is the same.

    Returns the state and the metrics as device arrays ``[members, n]`` (kept on
    the device; the caller fetches them once per evaluation).
    """
    chunks = []
    k = spec.steps_per_call
    probing = fns.train_probe is not None and probe_every > 0
    done = 0
    while done < n:
        t = start + done
        if probing and (t + 1) % probe_every == 0:
            state, m = fns.train_probe(state, hp, data)
            done += 1
        else:
            room = n - done
            if probing:  # the steps before the next probed one
                room = min(room, probe_every - 1 - t % probe_every)
            if room >= k > 1:
                state, m = fns.train(state, hp, data)
                done += k
            else:
                state, m = fns.train_one(state, hp, data)
                done += 1
        chunks.append(m)
    return state, concat_metrics(chunks)


def concat_metrics(chunks: Sequence[Mapping]) -> dict | None:
    """Metrics of consecutive calls ``[members, steps]`` joined along the
    steps; a chunk from a step without probes gets NaN ``probes`` (None for no
    chunks)."""
    chunks = [c for c in chunks if c is not None]
    if not chunks:
        return None
    probed = [c["probes"] for c in chunks if "probes" in c]
    if probed:
        width = probed[0].shape[-1]
        nan = lambda c: jnp.full((*c["loss"].shape, width), jnp.nan)  # noqa: E731
        chunks = [c if "probes" in c else {**c, "probes": nan(c)} for c in chunks]
    return {k: jnp.concatenate([c[k] for c in chunks], 1) for k in chunks[0]}


def eval_members(fns: GroupFns, spec: TrainSpec, state, val: Mapping) -> dict:
    """Mean validation loss and accuracy of every member, as numpy ``[members]``.

    ``val`` comes from :func:`device_eval_data`.
    """
    total_loss, total_correct = 0.0, 0.0
    for i in range(val["x"].shape[0]):
        batch = {k: val[k][i] for k in ("x", "y", "mask")}
        batch["mean"], batch["std"] = val["mean"], val["std"]
        loss_sum, correct = fns.eval(state, batch)
        total_loss = total_loss + loss_sum
        total_correct = total_correct + correct
    n = val["n"]
    loss, acc = fetch((total_loss / n, total_correct / n))
    return {"val_loss": np.asarray(loss), "val_acc": np.asarray(acc)}


def fetch(tree):
    """Device arrays as numpy; member-sharded arrays are gathered across hosts."""
    if jax.process_count() > 1:
        return jax.tree.map(
            lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)), tree
        )
    return jax.device_get(tree)
