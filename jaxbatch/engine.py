"""Train state, train/eval steps and the member axis.

A *group* is a set of members (configurations) that share array shapes: same
model, batch size and data. Its state is one pytree whose leaves all carry a
leading member axis ``[members, ...]``. Hyperparameters are data too: a dict of
``[members]`` arrays passed into the compiled functions, so new values never
recompile (docs/design.md).

Everything a member computes depends only on its own hyperparameters and seed:
its initial parameters, its data order (an on-device permutation per epoch) and
its dropout keys are all derived from ``seed``, never from its index. Member *i*
of a sweep therefore equals a solo run with the same values (decision 4).

The member axis is mapped by a *strategy* (decision 6):

* ``vmap``     all members batched into one computation;
* ``map``      members one after another inside one program (``lax.map``);
* ``unroll``   members one after another inside one program, the loop unrolled
  at trace time: each member gets its own ops (no grouped convolutions, no
  rolled loop), at a compile time that grows with the member count;
* ``chunk:N``  ``lax.map`` over blocks of ``N`` vmapped members;
* ``loop``     members one after another, each its own call of the compiled
  one-member program (the host loops, once per step): every member runs the
  very program of a solo run, which compiles once whatever the member count.

``auto`` times the candidates on the real shapes (:func:`auto_strategy`).
With ``devices > 1`` the member axis is split over a ``"sweep"`` mesh axis
(``jax.shard_map``): every device runs the strategy on its own block of
members, the dataset replicated.

The loop form is a separate choice: ``steps_per_call`` steps run per compiled
call (a ``lax.scan``, optionally unrolled), the host looping over calls. On
XLA:CPU a rolled scan of conv steps was measured 25x slower than a host loop of
jitted steps, so the default is one step per call.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxbatch import models, optim, probes, results, schedules
from jaxbatch.data import normalize
from jaxbatch.models import conv as model_conv
from jaxbatch.recipes import SCHEDULE_KINDS

STRATEGIES = ("vmap", "map", "unroll", "loop", "chunk:N", "auto")
PRECISIONS = ("float32", "bfloat16")

# Hyperparameters every member carries, with their defaults: the data of the
# compiled step (decision 1). Times are in examples seen (``*_ex``), so phases
# with other batch sizes and a smaller last batch keep schedules exact.
# Parameters a member's schedule kind does not use are ignored.
HPARAM_DEFAULTS: dict[str, float] = {
    "lr": 0.01,
    "momentum": 0.9,
    "b1": 0.9,
    "b2": 0.999,
    "wd_l2": 0.0,  # coupled L2 coefficient
    "wd_l1": 0.0,  # coupled L1 coefficient
    "wd_decoupled": 0.0,  # decoupled (SGDW/AdamW) coefficient
    "kind": 0,  # index into recipes.SCHEDULE_KINDS
    "gamma": 0.1,
    "step_ex": 1,  # step decay period
    "decay_rate": 0.0,  # k per epoch (exponential, inverse_time)
    "power": 1.0,
    "total_ex": 1,  # cosine: decays to 0 here
    "warmup_ex": 0,
    "warmup_start": 0.0,
    "plateau_factor": 1.0,  # 1: the plateau rule never reduces this member
    "lr_max": 1.0,  # range: the LR at the end of the run (x the peak's units)
    "seed": 0,
}
# Per-member vectors: multistep milestones (examples), padded with a value
# never reached.
HPARAM_VECTORS = {"milestones_ex": 8}
_INT_HPARAMS = ("kind", "step_ex", "total_ex", "warmup_ex", "seed", "milestones_ex")
_NEVER = np.iinfo(np.int32).max


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """Static, shape-level settings of one group; hashable, a compile cache key.

    Attributes:
      model: model name for ``jaxbatch.models.get_model``.
      model_kwargs: extra model keyword arguments as sorted ``(key, value)`` pairs.
      num_classes: number of output classes.
      image_shape: ``(H, W, C)`` of one example.
      n_train: number of training examples on the device.
      batch_size: training batch size.
      optimizer: name for ``jaxbatch.optim.make_optimizer``.
      nesterov: Nesterov momentum (SGD).
      weight_decay_modes: the weight-decay modes members of the group use
        (``"l2"``, ``"decoupled"``, ``"l1"``); each member's coefficients are
        data (``wd_l2``, ``wd_l1``, ``wd_decoupled``), so members with different
        modes share one program.
      decay_mask: what weight decay skips (see ``make_optimizer``), e.g.
        ``"no_bias_bn"``.
      drop_last: drop the remainder of each epoch's permutation; otherwise it
        trains as a smaller last batch (a second compiled step).
      multiplier_patterns: regexes of parameter paths with an LR multiplier;
        each member's multipliers are data (``hp["lr_mult"]``, one per
        pattern; a parameter gets the product of its matches, 0 freezes it).
      plateau: per-member ``ReduceOnPlateau`` on ``control_metric``: its scale
        multiplies the LR, and with ``stop_scale`` it stops the member.
      early_stopping: per-member ``EarlyStopping`` on ``control_metric``; a
        stopped member is frozen and its best parameters are kept.
      control_metric: ``"val_loss"`` or ``"val_acc"``, fed to both after every
        evaluation.
      eval_batch_size: batch size of evaluation.
      strategy: member-axis strategy, see the module docstring.
      steps_per_call: training steps per compiled call.
      unroll: unroll the scan over ``steps_per_call`` steps.
      devices: shard the member axis over this many devices (0: all).
      compute_dtype: ``"float32"``, or ``"bfloat16"`` for mixed precision:
        forward and backward in bfloat16, parameters, optimizer state, batch
        statistics and the loss in float32.
      probes: names from ``jaxbatch.probes.PROBES``; the step probes add
        metrics to the train step, the others are functions of their own
        (:attr:`GroupFns.noise`, :attr:`GroupFns.sharpness`). None: the step
        is the program it was without probes.
      probe_size: training images the noise-scale and sharpness probes use.
      sharpness_eps: the ε of Keskar's ε-sharpness (the first is
        ``sharpness_eps``).
    """

    model: str
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    num_classes: int
    image_shape: tuple[int, int, int]
    n_train: int
    batch_size: int
    optimizer: str = "sgd"
    nesterov: bool = False
    weight_decay_modes: tuple[str, ...] = ("l2",)
    decay_mask: str | None = None
    drop_last: bool = False
    multiplier_patterns: tuple[str, ...] = ()
    plateau: schedules.ReduceOnPlateau | None = None
    early_stopping: schedules.EarlyStopping | None = None
    control_metric: str = "val_loss"
    eval_batch_size: int = 500
    strategy: str = "vmap"
    steps_per_call: int = 1
    unroll: bool = False
    devices: int = 1
    compute_dtype: str = "float32"
    probes: tuple[str, ...] = ()
    probe_size: int = 1024
    sharpness_eps: tuple[float, ...] = (1e-3, 5e-4)

    def __post_init__(self):
        probes.check_probes(self.probes)
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size=}")
        if self.batch_size > self.n_train:
            raise ValueError(
                f"batch_size {self.batch_size} is larger than the training set "
                f"({self.n_train} examples); lower --batch-sizes or raise --train-size"
            )
        for mode in self.weight_decay_modes:
            if mode not in optim.WEIGHT_DECAY_MODES:
                raise ValueError(
                    f"unknown weight decay mode {mode!r}; "
                    f"choose from {optim.WEIGHT_DECAY_MODES}"
                )
        parse_strategy(self.strategy)
        if self.control_metric not in ("val_loss", "val_acc"):
            raise ValueError(
                "control_metric must be 'val_loss' or 'val_acc', "
                f"got {self.control_metric=}"
            )
        if self.steps_per_call <= 0:
            raise ValueError(
                f"steps_per_call must be positive, got {self.steps_per_call=}"
            )
        check_placement(self.devices, self.compute_dtype)
        if self.eval_batch_size <= 0:
            raise ValueError(
                f"eval_batch_size must be positive, got {self.eval_batch_size=}"
            )

    @property
    def full_batches(self) -> int:
        """Full batches per epoch."""
        return self.n_train // self.batch_size

    @property
    def last_batch(self) -> int:
        """Size of the smaller last batch of an epoch (0: none)."""
        return 0 if self.drop_last else self.n_train % self.batch_size

    @property
    def steps_per_epoch(self) -> int:
        """Steps per epoch: the full batches and a smaller last one, if any."""
        return self.full_batches + (self.last_batch > 0)

    @property
    def n_devices(self) -> int:
        return self.devices or len(jax.devices())

    def build_model(self):
        return models.get_model(
            self.model, num_classes=self.num_classes, **dict(self.model_kwargs)
        )


@flax.struct.dataclass
class MemberState:
    """The training state of one member (or, with a leading axis, of a group).

    Arrays only: no functions, so it can be vmapped, sharded and checkpointed.
    """

    params: Any
    batch_stats: Any  # {} for models without BatchNorm
    opt_state: Any
    step: jax.Array  # int32, optimizer steps taken (or skipped while frozen)
    epoch: jax.Array  # int32, epochs started
    pos: jax.Array  # int32, examples taken from the current epoch's order
    seen: jax.Array  # int32, examples trained on so far (the schedules' clock)
    perm: jax.Array  # [n_train] int32, this epoch's example order
    lr_scale: jax.Array  # float32, plateau multiplier on the scheduled LR
    diverged: jax.Array  # bool, loss or gradient became NaN/inf: frozen
    stopped: jax.Array  # bool, early-stopped: frozen
    plateau: Any  # schedules.PlateauState, or () without a plateau rule
    early: Any  # schedules.EarlyStoppingState, or () without early stopping
    best_params: Any  # params at the best early-stopping metric, or {}
    best_batch_stats: Any  # their BatchNorm statistics, or {}


def check_placement(devices: int, precision: str) -> None:
    """Raise ValueError for a device count or precision this machine can't take."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    available = len(jax.devices())
    if not 0 <= devices <= available:
        raise ValueError(
            f"devices must be between 0 (all) and {available} on this machine, "
            f"got {devices}"
        )


def parse_strategy(strategy: str) -> tuple[str, int]:
    """``"vmap" -> ("vmap", 0)``, ``"chunk:4" -> ("chunk", 4)``; raises on others."""
    if strategy in ("vmap", "map", "unroll", "loop", "auto"):
        return strategy, 0
    if strategy.startswith("chunk:"):
        n = strategy.split(":", 1)[1]
        if n.isdigit() and int(n) > 0:
            return "chunk", int(n)
    raise ValueError(
        f"unknown strategy {strategy!r}; use 'auto', 'vmap', 'map', 'unroll', "
        "'loop' or 'chunk:N' with N >= 1"
    )


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


# --- keys: everything random comes from the member's seed --------------------


def _seed_key(hp, purpose: int) -> jax.Array:
    seed = jnp.asarray(hp["seed"]).astype(jnp.uint32)
    return jax.random.fold_in(jax.random.PRNGKey(seed), purpose)


def _init_key(hp):
    return _seed_key(hp, 0)


def _data_key(hp):
    return _seed_key(hp, 1)


def _dropout_key(hp):
    return _seed_key(hp, 2)


# --- LR and optimizer ----------------------------------------------------------


def unit_lr(spec: TrainSpec, hp: Mapping, seen) -> jax.Array:
    """The member's unit-peak LR shape after ``seen`` training examples.

    The schedule kind is data (``hp["kind"]``, an index into
    ``recipes.SCHEDULE_KINDS``): every kind's value is computed (scalars, cheap)
    and the member's is selected, so members with different schedules share a
    program and still equal their solo runs. Time ``t`` is in epochs,
    ``seen / n_train``; step boundaries are exact integer comparisons.
    """
    seen = jnp.asarray(seen, jnp.int32)
    epochs = seen.astype(jnp.float32) / spec.n_train
    gamma = hp["gamma"]
    shapes = {
        "constant": jnp.ones((), jnp.float32),
        "step": schedules.step_decay(1.0, hp["step_ex"], gamma)(seen),
        "multistep": jnp.power(gamma, jnp.sum(seen >= hp["milestones_ex"])),
        "exponential": schedules.exponential_decay(1.0, hp["decay_rate"])(epochs),
        "inverse_time": schedules.inverse_time_decay(
            1.0, hp["decay_rate"], hp["power"]
        )(epochs),
        "cosine": schedules.cosine_decay(1.0, hp["total_ex"])(seen),
        "plateau": jnp.ones((), jnp.float32),  # the plateau rule scales it
        # the LR range test: lr * (lr_max / lr) ** (seen / total), in logs
        "range": jnp.exp(
            jnp.log(hp["lr_max"] / hp["lr"])
            * seen.astype(jnp.float32)
            / hp["total_ex"].astype(jnp.float32)
        ),
    }
    values = jnp.stack([jnp.asarray(shapes[k], jnp.float32) for k in SCHEDULE_KINDS])
    shape = values[hp["kind"]]
    warm = schedules.warmup(lambda _: shape, hp["warmup_ex"], hp["warmup_start"])
    return warm(seen)


def learning_rate(spec: TrainSpec, hp: Mapping, seen, lr_scale=1.0) -> jax.Array:
    """The LR of one member after ``seen`` examples: peak x shape x plateau scale.

    The peak is a traced per-member value multiplied onto a schedule of unit
    peak, which works for any traced parameter (docs/design.md).
    """
    return hp["lr"] * unit_lr(spec, hp, seen) * lr_scale


def make_tx(spec: TrainSpec, hp: Mapping, lr) -> optax.GradientTransformation:
    """The member's optimizer for a (traced) scalar LR at this step.

    Built inside the compiled step: the LR is already scheduled, so the
    optimizer state has the same structure whatever the schedule.
    """
    # Adam's momentum is b1; passing the sweep's momentum there is an error.
    if spec.optimizer in ("adam", "adamw"):
        extra = {"b1": hp["b1"], "b2": hp["b2"]}
    else:
        extra = {"momentum": hp["momentum"]}
    keys = {"l2": "wd_l2", "l1": "wd_l1", "decoupled": "wd_decoupled"}
    return optim.make_optimizer(
        "adam" if spec.optimizer == "adamw" else spec.optimizer,
        lr,
        **extra,
        nesterov=spec.nesterov,
        weight_decay={mode: hp[keys[mode]] for mode in spec.weight_decay_modes},
        decay_mask=spec.decay_mask,
        lr_multipliers=dict(zip(spec.multiplier_patterns, hp["lr_mult"], strict=True))
        or None,
    )


# --- per-member functions ----------------------------------------------------------


def _variables(state: MemberState) -> dict:
    if state.batch_stats:
        return {"params": state.params, "batch_stats": state.batch_stats}
    return {"params": state.params}


def _overlay(fresh, base):
    """``fresh`` with every leaf that ``base`` has at the same path and shape
    taken from ``base`` (a new classifier head keeps its fresh values)."""
    if not base:
        return fresh
    found = {
        jax.tree_util.keystr(path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(base)[0]
    }

    def pick(path, leaf):
        other = found.get(jax.tree_util.keystr(path))
        if other is None or other.shape != leaf.shape:
            return leaf
        return jnp.asarray(other, leaf.dtype)

    return jax.tree_util.tree_map_with_path(pick, fresh)


def init_member(
    spec: TrainSpec, hp: Mapping, base: Mapping | None = None
) -> MemberState:
    """A fresh member state from its own seed (vmap it for a group).

    ``base``: ``{"params": ..., "batch_stats": ...}`` of a trained model to
    start from (``--init-from``); leaves whose path or shape differ (a new
    head) keep their fresh initialisation.
    """
    model = spec.build_model()
    k_params, k_dropout = jax.random.split(_init_key(hp))
    x = jnp.zeros((1, *spec.image_shape), jnp.float32)
    variables = model.init({"params": k_params, "dropout": k_dropout}, x, train=False)
    base = base or {}
    params = _overlay(variables["params"], base.get("params"))
    batch_stats = _overlay(variables.get("batch_stats", {}), base.get("batch_stats"))
    opt_state = make_tx(spec, hp, 0.0).init(params)
    return MemberState(
        params=params,
        batch_stats=batch_stats,
        opt_state=opt_state,
        step=jnp.zeros((), jnp.int32),
        epoch=jnp.zeros((), jnp.int32),
        pos=jnp.zeros((), jnp.int32),
        seen=jnp.zeros((), jnp.int32),
        perm=jnp.arange(spec.n_train, dtype=jnp.int32),
        lr_scale=jnp.ones((), jnp.float32),
        diverged=jnp.zeros((), bool),
        stopped=jnp.zeros((), bool),
        plateau=spec.plateau.init() if spec.plateau else (),
        early=spec.early_stopping.init() if spec.early_stopping else (),
        best_params=params if spec.early_stopping else {},
        best_batch_stats=batch_stats if spec.early_stopping else {},
    )


def update_control(
    spec: TrainSpec, state: MemberState, hp: Mapping, value
) -> MemberState:
    """Feed one evaluation's metric to the member's plateau and early-stop rules.

    The plateau factor is the member's own (``hp["plateau_factor"]``, 1: off).
    A diverged member is left as it is; a member whose rules say stop is frozen
    from the next step on.
    """
    new = state
    if spec.plateau is not None:
        plateau = spec.plateau.update(state.plateau, value, factor=hp["plateau_factor"])
        new = new.replace(
            plateau=plateau,
            lr_scale=plateau.scale.astype(jnp.float32),
            stopped=new.stopped | plateau.stopped,
        )
    if spec.early_stopping is not None:
        early = spec.early_stopping.update(state.early, value)
        improved = early.best_step != state.early.best_step
        new = new.replace(
            early=early,
            best_params=_tree_where(improved, state.params, state.best_params),
            best_batch_stats=_tree_where(
                improved, state.batch_stats, state.best_batch_stats
            ),
            stopped=new.stopped | early.stopped,
        )
    return _tree_where(state.diverged, state, new)


def start_epoch(spec: TrainSpec, state: MemberState, hp: Mapping) -> MemberState:
    """New example order for the next epoch, from the member's seed and epoch."""
    key = jax.random.fold_in(_data_key(hp), state.epoch)
    perm = jax.random.permutation(key, spec.n_train).astype(jnp.int32)
    return state.replace(
        perm=perm, epoch=state.epoch + 1, pos=jnp.zeros_like(state.pos)
    )


def _cast(tree, dtype):
    """Floating leaves of ``tree`` as ``dtype`` (a no-op for float32 leaves)."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def _all_finite(tree) -> jax.Array:
    """Whether every element of ``tree`` is finite: its largest magnitude is.

    One max-reduction per leaf (XLA's max propagates NaN, and a max of finite
    values cannot overflow), cheaper than an ``isfinite`` mask per leaf.
    """
    peaks = [jnp.max(jnp.abs(x)) for x in jax.tree.leaves(tree)]
    return jnp.isfinite(jnp.max(jnp.stack(peaks))) if peaks else jnp.array(True)


def _tree_where(pred, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def train_step(
    spec: TrainSpec,
    state: MemberState,
    hp: Mapping,
    data: Mapping,
    batch_size: int | None = None,
):
    """One SGD step of one member, on the next ``batch_size`` examples of its
    epoch order (default ``spec.batch_size``; the smaller last batch passes its
    own size).

    Args:
      state: the member's state.
      hp: the member's hyperparameters (scalars).
      data: ``x_train: [n, H, W, C] uint8``, ``y_train: [n]``, ``mean``, ``std``.

    Returns:
      ``(state, metrics)`` with scalar metrics ``loss`` (NaN once diverged),
      ``acc`` (batch accuracy) and ``lr``, and with step probes on,
      ``probes``: ``[n]``, the probe values in sorted name order
      (:func:`probes.step_metric_names`).
    """
    model = spec.build_model()
    bs = batch_size or spec.batch_size
    idx = lax.dynamic_slice(state.perm, (state.pos,), (bs,))
    x = normalize(data["x_train"][idx], data["mean"], data["std"])
    y = data["y_train"][idx]
    rng = jax.random.fold_in(_dropout_key(hp), state.step)

    def loss_fn(params):
        variables = _cast({**_variables(state), "params": params}, spec.compute_dtype)
        xc = x.astype(spec.compute_dtype)
        if state.batch_stats:
            logits, new_vars = model.apply(
                variables,
                xc,
                train=True,
                rngs={"dropout": rng},
                mutable=["batch_stats"],
            )
            new_bs = _cast(new_vars["batch_stats"], jnp.float32)
        else:
            logits = model.apply(variables, xc, train=True, rngs={"dropout": rng})
            new_bs = state.batch_stats
        logits = logits.astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (logits, new_bs)

    (loss, (logits, new_bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    lr = learning_rate(spec, hp, state.seen, state.lr_scale)

    # A member whose loss or gradient is not finite diverges here; a diverged or
    # stopped member is frozen: its step gets zero gradient and LR 0, so its
    # parameters stay exactly as they are. (Zeroing fuses into the optimizer's
    # update; selecting between old and new states would be a pass over every
    # parameter and optimizer leaf, a third of a small model's step.) A frozen
    # member's optimizer state still decays (momentum x mu, Adam's count), which
    # no reported number reads.
    raw_grads = grads
    finite = jnp.isfinite(loss) & _all_finite(grads)
    diverged = state.diverged | (~finite & ~state.stopped)
    frozen = diverged | state.stopped
    grads = jax.tree.map(lambda g: jnp.where(frozen, jnp.zeros_like(g), g), grads)
    updates, opt_state = make_tx(spec, hp, jnp.where(frozen, 0.0, lr)).update(
        grads, state.opt_state, state.params
    )
    params = optax.apply_updates(state.params, updates)
    new_bs = _tree_where(frozen, state.batch_stats, new_bs)
    new_state = state.replace(
        params=params,
        batch_stats=new_bs,
        opt_state=opt_state,
        step=state.step + 1,
        pos=state.pos + bs,
        seen=state.seen + bs,
        diverged=diverged,
    )
    acc = jnp.mean(jnp.argmax(logits, -1) == y)
    # A frozen member's numbers are NaN, so its curves end where it stopped.
    metrics = {
        "loss": jnp.where(frozen, jnp.nan, loss),
        "acc": jnp.where(frozen, jnp.nan, acc),
        "lr": jnp.where(frozen, jnp.nan, lr),
    }
    extra = probes.step_probes(spec.probes, state.params, updates, raw_grads)
    if extra:
        # one output for all of them, in sorted name order (fewer outputs per
        # step: a dozen scalars cost more to carry out than to compute)
        stacked = jnp.stack([extra[k] for k in sorted(extra)])
        metrics["probes"] = jnp.where(frozen, jnp.nan, stacked)
    return new_state, metrics


def _probe_loss(spec: TrainSpec, state: MemberState, x, y, train: bool, rng=None):
    """The cross-entropy of a batch as a function of the parameters (BatchNorm
    in train mode uses the batch's statistics and updates nothing)."""
    model = spec.build_model()

    def loss_fn(params, x=x, y=y):
        variables = {**_variables(state), "params": params}
        if train and state.batch_stats:
            logits, _ = model.apply(
                variables, x, train=True, rngs={"dropout": rng},
                mutable=["batch_stats"],
            )  # fmt: skip
        elif train:
            logits = model.apply(variables, x, train=True, rngs={"dropout": rng})
        else:
            logits = model.apply(variables, x, train=False)
        return probes.cross_entropy(logits, y)

    return loss_fn


def noise_probe(spec: TrainSpec, state: MemberState, hp: Mapping, data: Mapping):
    """One member's ``(|G|², tr(Σ))`` estimates on ``probe_size`` random
    training images (drawn from its data key and step), the gradient of the
    training loss in train mode, in ``probes.NOISE_PARTS`` parts."""
    n = data["x_train"].shape[0]
    size = min(spec.probe_size, n) // probes.NOISE_PARTS * probes.NOISE_PARTS
    key = jax.random.fold_in(_seed_key(hp, 4), state.step)
    idx = jax.random.choice(key, n, (size,), replace=False)
    x = normalize(data["x_train"][idx], data["mean"], data["std"])
    y = data["y_train"][idx]
    rng = jax.random.fold_in(_dropout_key(hp), state.step)

    def grad_fn(params, xb, yb):
        return jax.grad(_probe_loss(spec, state, xb, yb, True, rng))(params)

    small, big, part = probes.gradient_sq_norms(grad_fn, state.params, x, y)
    g2, tr = probes.noise_scale_estimates(small, big, part, size)
    gone = state.diverged | state.stopped
    return jnp.where(gone, jnp.nan, g2), jnp.where(gone, jnp.nan, tr)


def sharpness_probe(spec: TrainSpec, state: MemberState, hp: Mapping, data: Mapping):
    """One member's sharpness numbers on a fixed subset of ``probe_size``
    training images (the same for every member), in eval mode."""
    n = data["x_train"].shape[0]
    idx = jax.random.permutation(jax.random.PRNGKey(0), n)[: min(spec.probe_size, n)]
    x = normalize(data["x_train"][idx], data["mean"], data["std"])
    loss_fn = _probe_loss(spec, state, x, data["y_train"][idx], False)
    key = jax.random.fold_in(_seed_key(hp, 3), 0)
    out = probes.sharpness(loss_fn, state.params, key, spec.sharpness_eps)
    return {k: jnp.where(state.diverged, jnp.nan, v) for k, v in out.items()}


def eval_batch(spec: TrainSpec, state: MemberState, batch: Mapping):
    """Summed loss and correct count of one member on one padded batch.

    ``batch``: ``x: [eval_bs, H, W, C] uint8``, ``y: [eval_bs]``, ``mask: [eval_bs]``
    (0 for padding), ``mean``, ``std``.
    """
    model = spec.build_model()
    x = normalize(batch["x"], batch["mean"], batch["std"]).astype(spec.compute_dtype)
    variables = _cast(_variables(state), spec.compute_dtype)
    logits = model.apply(variables, x, train=False).astype(jnp.float32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
    correct = jnp.argmax(logits, -1) == batch["y"]
    mask = batch["mask"]
    return jnp.sum(losses * mask), jnp.sum(correct * mask)


# --- compiled group functions ---------------------------------------------------


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
    noise: Callable | None = None  # (state, hp, data) -> (|G|², tr Σ)[members]
    sharpness: Callable | None = None  # (state, hp, data) -> {name: [members]}


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
    step_probes = tuple(p for p in spec.probes if p in probes.STEP_PROBES)
    plain = dataclasses.replace(
        spec, probes=tuple(p for p in spec.probes if p not in step_probes)
    )

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

    mesh = make_mesh(spec.n_devices) if spec.n_devices > 1 else None

    looping = spec.strategy == "loop"

    def mapped(fn, strategy=spec.strategy):
        if strategy == "loop":
            return host_loop(fn, mesh)
        return over_members(fn, strategy, mesh)

    def jit(f, **kw):  # under `loop` the mapped calls are compiled already
        return f if looping else jax.jit(f, **kw)

    def train_fn(n_steps, batch_size=None, spec_=plain):
        f = mapped(member_train(n_steps, batch_size, spec_))
        return jit(lambda state, hp, data: f((state, hp), data), donate_argnums=0)

    # Init and reshuffling are not hot; vmapped they compile once, not once per
    # member (threefry-heavy inits compile slowly), and give the same bits.
    init = mapped(member_init, "vmap")
    epoch = mapped(member_epoch, "vmap")
    control = mapped(member_control)

    def probe_fn(fn):
        f = mapped(lambda args, data: fn(spec, *args, data))
        return jit(lambda state, hp, data: f((state, hp), data))

    return GroupFns(
        train_probe=train_fn(1, spec_=spec) if step_probes else None,
        noise=probe_fn(noise_probe) if "noise_scale" in spec.probes else None,
        sharpness=probe_fn(sharpness_probe) if "sharpness" in spec.probes else None,
        init=jax.jit(lambda hp, base=None: init(hp, base)),
        start_epoch=jax.jit(lambda state, hp: epoch((state, hp), None)),
        train=train_fn(spec.steps_per_call),
        train_one=train_fn(1),
        train_last=train_fn(1, spec.last_batch) if spec.last_batch else None,
        eval=jit(mapped(member_eval)),
        control=jit(lambda state, hp, value: control((state, hp, value), None)),
    )


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
        from jax.experimental import multihost_utils

        return jax.tree.map(
            lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)), tree
        )
    return jax.device_get(tree)


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


def stack_hparams(members: list[Mapping[str, Any]]) -> dict[str, jax.Array]:
    """Per-member dicts of hyperparameters -> dict of ``[members]`` arrays.

    Missing keys take :data:`HPARAM_DEFAULTS`; counts (``seed``, schedule
    ``kind``, times in examples) stay exact as int32, the rest are float32.
    ``milestones_ex`` is a ``[members, 8]`` vector padded with a step never
    reached.
    """
    known = set(HPARAM_DEFAULTS) | set(HPARAM_VECTORS) | {"lr_mult"}
    unknown = {k for m in members for k in m} - known
    if unknown:
        raise ValueError(
            f"unknown hyperparameters {sorted(unknown)}; known: {sorted(known)}"
        )
    out = {}
    for key, default in HPARAM_DEFAULTS.items():
        values = [m.get(key, default) for m in members]
        dtype = jnp.int32 if key in _INT_HPARAMS else jnp.float32
        out[key] = jnp.asarray(np.asarray(values), dtype)
    for key, size in HPARAM_VECTORS.items():
        rows = []
        for m in members:
            v = list(m.get(key, ()))
            if len(v) > size:
                raise ValueError(f"at most {size} {key}, got {len(v)}")
            rows.append(v + [_NEVER] * (size - len(v)))
        out[key] = jnp.asarray(np.asarray(rows, np.int64).reshape(-1, size), jnp.int32)
    # LR multipliers: one per pattern of the group (the same count for all).
    mults = [list(m.get("lr_mult", ())) for m in members]
    if len({len(v) for v in mults}) > 1:
        raise ValueError("every member needs one lr_mult per multiplier pattern")
    width = len(mults[0]) if mults else 0
    table = np.ones((len(members), width), np.float32)
    for i, v in enumerate(mults):
        table[i, :] = v
    out["lr_mult"] = jnp.asarray(table)
    return out


# --- measured choice of the member-axis strategy ------------------------------


def cache_dir() -> str:
    """The user cache directory of jaxbatch (``$JAXBATCH_CACHE`` overrides)."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "jaxbatch")
    return os.environ.get("JAXBATCH_CACHE") or default


def default_candidates(spec: TrainSpec, members: int) -> tuple[str, ...]:
    """Strategies worth timing, the likely winner first (so the 2x give-up rule
    drops a hopeless candidate after one step): on CPU ``unroll`` (vmapped
    convolutions ran 2-6x slower per member there), elsewhere ``vmap``;
    unrolling only while compile time stays sane. Past that, on CPU, ``loop``
    (a call per member): 16 ``simple_cnn`` members stepped 4-18% slower
    looped than unrolled, but 1.7x faster than vmapped. Not on
    an accelerator, where one member's step leaves the chip mostly idle.

    ``map`` (one member after another inside one program) is timed except on
    CPU next to ``unroll``: there it lost to ``unroll`` in every cell measured
    (16 MLP members 11.9-12.1 vs 10.5-10.8 ms; conv nets 8-19x slower, a
    rolled loop of convolutions) and its compiles and two slow steps a group,
    ~36 s, were ~8% of the quick AlexNet sweep's first run (8.6 + 2 x 2.4 s
    and 11.8 + 2 x 5.3 s for its two groups of 6 members)."""
    cpu = jax.default_backend() == "cpu"
    if members <= 16:
        return ("unroll", "vmap") if cpu else ("vmap", "unroll", "map")
    return ("loop", "vmap", "map") if cpu else ("vmap", "map")


class _Trial:
    """One candidate strategy's compiled step, kept so that it can be timed again."""

    def __init__(self, spec: TrainSpec, hp: Mapping, train: Mapping):
        self.spec, self.train = spec, train
        self.hp, _ = pad_members(hp, member_multiple(spec))
        self.fns = group_fns(spec)
        self.state = self.fns.start_epoch(self.fns.init(self.hp), self.hp)

    def window(self, calls: int = 1) -> float:
        """Seconds for ``calls`` training calls (``steps_per_call`` steps each)."""
        n = calls * self.spec.steps_per_call
        t0 = time.perf_counter()
        self.state, m = run_steps(
            self.fns, self.spec, self.state, self.hp, self.train, n
        )
        jax.block_until_ready(m)
        return time.perf_counter() - t0

    def best_ms(self, steps: int, min_time_s: float, max_windows: int = 10) -> float:
        """The best ms/step over windows of ``steps`` calls until ``min_time_s``."""
        best, spent, windows = float("inf"), 0.0, 0
        while spent < min_time_s and windows < max_windows:
            dt = self.window(steps)
            spent, windows = spent + dt, windows + 1
            best = min(best, dt / (steps * self.spec.steps_per_call) * 1e3)
        return best

    def measure(
        self, steps: int, min_time_s: float, give_up_ms: float
    ) -> tuple[float, float]:
        """``(first_call_s, ms_per_step)``: see :func:`time_strategy`."""
        first = self.window()
        best = self.window() / self.spec.steps_per_call * 1e3
        if best >= give_up_ms:
            return first, best
        return first, min(best, self.best_ms(steps, min_time_s))


def time_strategy(
    spec: TrainSpec,
    hp: Mapping,
    train: Mapping,
    steps: int = 3,
    *,
    min_time_s: float = 0.2,
    give_up_ms: float = float("inf"),
) -> tuple[float, float]:
    """``(first_call_s, ms_per_step)`` of ``spec``'s training step on these members.

    The first call compiles. Then windows of ``steps`` steps are timed until
    ``min_time_s`` has passed (at most 10 windows) and the best window counts:
    a single short window on a busy machine misjudged millisecond steps. A
    candidate whose first step already takes ``give_up_ms`` is not timed further.
    """
    return _Trial(spec, hp, train).measure(steps, min_time_s, give_up_ms)


def _auto_key(spec: TrainSpec, members: int) -> str:
    # Everything the timed programs depend on: the compiler (jax version) and
    # the convolution forms the models trace (models.conv) included.
    device = jax.devices()[0]
    return "|".join(
        str(v)
        for v in (
            jax.default_backend(), device.device_kind, jax.__version__,
            model_conv.impl(), spec.model,
            dict(spec.model_kwargs), spec.image_shape, spec.batch_size, members,
            spec.n_devices, spec.compute_dtype, spec.steps_per_call, spec.optimizer,
            os.environ.get("XLA_FLAGS", ""),
        )
    )  # fmt: skip


CLOSE_MARGIN = 0.10  # runners-up this close are timed again, longer ...
CONFIRM_S = 0.6  # ... for this long each, in alternating windows
TIE_MARGIN = 0.05  # steps this close count as a tie ...
COMPILE_ADVANTAGE = 1.5  # ... which the candidate that compiles this much faster wins


def pick_strategy(timings: Mapping[str, float], compiles: Mapping[str, float]) -> str:
    """The fastest step; among candidates within :data:`TIE_MARGIN` of it,
    the one whose first call (compile) took :data:`COMPILE_ADVANTAGE` times
    less: an unrolled program of K convolutional members compiles K bodies,
    and a 1% faster step does not pay back a minute of compilation."""
    best = min(timings, key=timings.get)
    ties = [c for c in timings if timings[c] <= (1 + TIE_MARGIN) * timings[best]]
    cheapest = min(ties, key=lambda c: compiles.get(c, float("inf")))
    if compiles.get(cheapest, 0) * COMPILE_ADVANTAGE <= compiles.get(best, 0):
        return cheapest
    return best


def auto_strategy(
    spec: TrainSpec,
    hp: Mapping,
    train: Mapping,
    *,
    candidates: Sequence[str] | None = None,
    steps: int = 3,
    cache: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[str, dict[str, float]]:
    """Time each candidate strategy for a few steps on the real shapes; pick the
    fastest step, or within 5% of it the one that compiles much faster
    (:func:`pick_strategy`).

    Returns ``(strategy, {candidate: ms_per_step})``. The decision is cached in
    ``<cache_dir()>/auto_strategy.json`` per (backend, device kind, jax version,
    convolution forms, model, batch size, member count, ...); a cached decision
    comes back with its timings. ``log`` (e.g. ``print``) hears what is being
    timed as it goes: for big convolutional groups on a CPU the decision takes
    minutes (16 full-width ``alexnet_small`` members: 1371 s on two cores).
    """
    say = log or (lambda _msg: None)
    members = len(hp["lr"])
    if members <= spec.n_devices:
        # one member per device: `unroll` of one member is the plain program,
        # which on XLA:CPU ran 5-18% faster than the vmapped one (simple_cnn
        # batch 64: 17.1 vs 21.2 ms, interleaved in one process)
        return "unroll", {}
    candidates = tuple(candidates or default_candidates(spec, members))
    key = _auto_key(spec, members)
    path = os.path.join(cache_dir(), "auto_strategy.json")
    known = {}
    if cache and os.path.exists(path):
        try:
            with open(path) as f:
                known = json.load(f)
        except (OSError, ValueError):
            known = {}  # a damaged cache is only a lost measurement
        hit = known.get(key)
        if hit and hit["strategy"] in candidates:
            say(f"auto: {hit['strategy']} (decided before; {path})")
            return hit["strategy"], hit["timings_ms"]
    say(
        f"auto times the strategies {', '.join(candidates)} for {members} members "
        "on the real shapes (once per shapes; --strategy NAME skips it)"
    )
    timings, compiles, trials = {}, {}, {}
    for candidate in candidates:
        trial = _Trial(dataclasses.replace(spec, strategy=candidate), hp, train)
        # a candidate 2x slower than the best so far on its first step is out
        give_up = 2 * min(timings.values(), default=float("inf"))
        first_s, ms = trial.measure(steps, min_time_s=0.2, give_up_ms=give_up)
        timings[candidate], compiles[candidate] = ms, round(first_s, 3)
        trials[candidate] = trial  # kept compiled, to be timed again
        say(
            f"  {candidate}: {ms:.1f} ms/step "
            f"(first call, compile included: {first_s:.1f} s)"
        )
    _confirm_close(timings, trials, steps)
    timings = {c: round(ms, 3) for c, ms in timings.items()}
    best = pick_strategy(timings, compiles)
    say(f"  chose {best}")
    if cache:
        known[key] = {"strategy": best, "timings_ms": timings, "compile_s": compiles}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        results.write_json(path, known)
    return best, timings


def _confirm_close(timings: dict, trials: Mapping, steps: int) -> None:
    """Time the candidates within :data:`CLOSE_MARGIN` of the fastest again, in
    alternating windows for :data:`CONFIRM_S` each, keeping each one's best:
    one short look misjudged a 15% difference on a shared machine."""
    best = min(timings.values())
    close = [c for c, ms in timings.items() if ms <= (1 + CLOSE_MARGIN) * best]
    if len(close) < 2:
        return
    spent = dict.fromkeys(close, 0.0)
    while min(spent.values()) < CONFIRM_S:
        for c in close:
            dt = trials[c].window(steps)
            spent[c] += dt
            timings[c] = min(
                timings[c], dt / (steps * trials[c].spec.steps_per_call) * 1e3
            )


def pad_members(hp: Mapping, multiple: int) -> tuple[dict, int]:
    """Pad the member axis to a multiple by repeating the last member.

    Returns the padded hyperparameters and the real member count; padding
    members train like any other and are dropped from every result.
    """
    n = len(hp["lr"])
    pad = -n % multiple
    if pad:
        hp = {
            k: jnp.concatenate([v, jnp.repeat(v[-1:], pad, axis=0)])
            for k, v in hp.items()
        }
    return dict(hp), n
