"""What a group is, statically, and the state each member carries.

:class:`TrainSpec` holds the settings that change array shapes or the compiled
program (model, batch size, optimizer family, probes, ...): hashable, the key
of every compile cache. :class:`MemberState` is one member's training state,
arrays only, so a group's state is the same tree with a leading member axis.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax

from jaxbatch import choices, models, optim, schedules


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
      strategy: member-axis strategy (:mod:`jaxbatch.engine.member_axis`).
      steps_per_call: training steps per compiled call.
      unroll: unroll the scan over ``steps_per_call`` steps.
      devices: shard the member axis over this many devices (0: all).
      compute_dtype: ``"float32"``, or ``"bfloat16"`` for mixed precision:
        forward and backward in bfloat16, parameters, optimizer state, batch
        statistics and the loss in float32.
      probes: step probes (``jaxbatch.choices.STEP_PROBES``): they add metrics
        to a probed step (:attr:`GroupFns.train_probe`, a program of its
        own); without them the step is the program it always was.
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
    wd_scheduled: bool = False  # a member's weight decay moves over training
    member_dropout: bool = False  # the dropout rate is each member's (data)
    augment_pad: int = 0  # the largest crop padding of a member (0: no crops)
    augment_flip: bool = False  # a member flips

    def __post_init__(self):
        for name in choices.check_probes(self.probes):
            if name not in choices.STEP_PROBES:
                raise ValueError(
                    f"{name!r} is not a step probe ({', '.join(choices.STEP_PROBES)}); "
                    "the other probes are hooks of the sweep"
                )
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
        choices.parse_strategy(self.strategy)
        if self.control_metric not in choices.CONTROL_METRICS:
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
    choices.check_precision(precision)
    available = len(jax.devices())
    if not 0 <= devices <= available:
        raise ValueError(
            f"devices must be between 0 (all) and {available} on this machine, "
            f"got {devices}"
        )
