"""One member's learning rate and optimizer at a step.

The LR is the member's peak times a unit-peak schedule shape (decision 2):
the peak is traced data, the shape a function of the examples seen, and the
schedule kind an index, so a comparison of schedules compiles once.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from jaxbatch import optim, schedules
from jaxbatch.engine.spec import TrainSpec
from jaxbatch.recipes import SCHEDULE_KINDS


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
        "exponential": schedules.exp_decay(1.0, hp["decay_rate"])(epochs),
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
