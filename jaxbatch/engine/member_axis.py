"""The member axis: how a function of one member runs over a group.

A *strategy* maps ``fn(member_args, shared_args)`` over the leading axis of
``member_args`` (decision 6 of the design):

* ``vmap``     all members batched into one computation;
* ``map``      members one after another inside one program (``lax.map``);
* ``unroll``   members one after another inside one program, the loop unrolled
  at trace time: each member gets its own ops (no grouped convolutions, no
  rolled loop), at a compile time that grows with the member count;
* ``chunk:N``  ``lax.map`` over blocks of ``N`` vmapped members;
* ``loop``     members one after another, each its own call of the compiled
  one-member program (the host loops, once per step): every member runs the
  very program of a solo run, which compiles once whatever the member count.

With several devices the member axis is split over a ``"sweep"`` mesh axis
(``jax.shard_map``): every device runs the strategy on its own block of
members, the shared arguments (the dataset) replicated.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxbatch.choices import parse_strategy
from jaxbatch.engine.spec import TrainSpec


def member_multiple(spec: TrainSpec) -> int:
    """Member counts must be a multiple of this (the sweep pads to it)."""
    kind, n = parse_strategy(spec.strategy)
    return (n if kind == "chunk" else 1) * spec.n_devices


def over_members(fn: Callable, strategy: str, mesh: Mesh | None = None) -> Callable:
    """Map ``fn(member_args, shared_args)`` over the leading axis of member_args.

    ``shared_args`` (the dataset) are not mapped. With a ``mesh``, each device
    maps ``fn`` over its own block of members.
    """
    local = _over_local_members(fn, strategy)
    if mesh is None:
        return local
    return jax.shard_map(
        local, mesh=mesh, in_specs=(P("sweep"), P()), out_specs=P("sweep"),
        check_vma=False,
    )  # fmt: skip


def host_loop(fn: Callable, mesh: Mesh | None = None) -> Callable:
    """The ``loop`` strategy: ``fn(member_args, shared_args)`` over the leading
    axis of member_args, as one compiled one-member call per member.

    Returns a Python callable (it is not traced: it calls compiled programs).
    With a ``mesh``, call *i* runs the *i*-th member of every device's block,
    the devices in parallel. The outputs are stacked back into ``[members,
    ...]`` in one compiled call.
    """

    def one(m, s, i):
        member = jax.tree.map(lambda a: lax.dynamic_index_in_dim(a, i, 0, False), m)
        return jax.tree.map(lambda a: a[None], fn(member, s))

    n_devices = 1
    if mesh is not None:
        n_devices = mesh.devices.size
        one = jax.shard_map(
            one, mesh=mesh, in_specs=(P("sweep"), P(), P()), out_specs=P("sweep"),
            check_vma=False,
        )  # fmt: skip
    one = jax.jit(one)

    @jax.jit
    def stack(outs):  # B calls' [devices, ...] -> [devices * B, ...], device-major
        def join(*xs):
            a = jnp.stack(xs, axis=1)
            return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])

        return jax.tree.map(join, *outs)

    indices: dict[int, list] = {}

    def call(m, s):
        size = jax.tree.leaves(m)[0].shape[0]
        if size % n_devices:
            raise ValueError(f"{size} members do not split over {n_devices} devices")
        local = size // n_devices
        if local not in indices:  # the member indices, placed once
            idx = [jnp.asarray(i, jnp.int32) for i in range(local)]
            if mesh is not None:
                idx = [jax.device_put(i, NamedSharding(mesh, P())) for i in idx]
            indices[local] = idx
        return stack([one(m, s, i) for i in indices[local]])

    return call


def _over_local_members(fn: Callable, strategy: str) -> Callable:
    kind, n = parse_strategy(strategy)
    if kind == "auto":
        raise ValueError("resolve strategy 'auto' with auto_strategy() first")
    if kind == "loop":
        raise ValueError("strategy 'loop' is a host loop: use host_loop()")
    batched = jax.vmap(fn, in_axes=(0, None))
    if kind == "vmap":
        return batched
    if kind == "map":
        return lambda m, s: lax.map(lambda mm: fn(mm, s), m)
    if kind == "unroll":

        def unrolled(m, s):
            size = jax.tree.leaves(m)[0].shape[0]
            outs = [fn(jax.tree.map(lambda a, i=i: a[i], m), s) for i in range(size)]
            return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

        return unrolled

    def chunked(m, s):
        size = jax.tree.leaves(m)[0].shape[0]
        if size % n:
            raise ValueError(f"{size} members do not split into chunks of {n}")
        blocks = jax.tree.map(lambda a: a.reshape(size // n, n, *a.shape[1:]), m)
        out = lax.map(lambda mm: batched(mm, s), blocks)
        return jax.tree.map(lambda a: a.reshape(size, *a.shape[2:]), out)

    return chunked


def make_mesh(n_devices: int) -> Mesh:
    """A 1-D mesh with axis ``"sweep"`` over the first ``n_devices`` devices."""
    return Mesh(np.asarray(jax.devices()[:n_devices]), ("sweep",))


def replicate(tree, spec: TrainSpec):
    """Place shared arrays (the dataset) on every device of the group's mesh."""
    if spec.n_devices <= 1:
        return tree
    sharding = NamedSharding(make_mesh(spec.n_devices), P())
    return jax.tree.map(
        lambda a: jax.device_put(a, sharding) if isinstance(a, jax.Array) else a, tree
    )
