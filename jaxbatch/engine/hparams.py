"""Hyperparameters as data, and the member's keys.

Every member's hyperparameters are ``[members]`` arrays passed into the
compiled functions (decision 1 of the design): new values never recompile,
and members of different schedules, modes or LRs share one program.
Everything random a member draws comes from its own seed, never from its
index, so member *i* of a sweep equals its solo run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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
    # The coefficients at the end of training (negative: the start's, a
    # constant), reached linearly (wd_kind 1) or exponentially (2) in
    # examples seen.
    "wd_l2_end": -1.0,
    "wd_l1_end": -1.0,
    "wd_decoupled_end": -1.0,
    "wd_kind": 0,
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
    "dropout": -1.0,  # the dropout rate (negative: the model's own)
    "aug_crop": 0,  # random-crop padding in pixels (0: none)
    "aug_flip": 0.0,  # probability of a horizontal flip
    "seed": 0,
}
# Per-member vectors: multistep milestones (examples), padded with a value
# never reached.
HPARAM_VECTORS = {"milestones_ex": 8}
_INT_HPARAMS = (
    "kind",
    "wd_kind",
    "step_ex",
    "total_ex",
    "warmup_ex",
    "seed",
    "milestones_ex",
)
_NEVER = np.iinfo(np.int32).max


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


# --- keys: everything random comes from the member's seed --------------------


def seed_key(hp, purpose: int) -> jax.Array:
    seed = jnp.asarray(hp["seed"]).astype(jnp.uint32)
    return jax.random.fold_in(jax.random.PRNGKey(seed), purpose)


def init_key(hp):
    return seed_key(hp, 0)


def data_key(hp):
    return seed_key(hp, 1)


def dropout_key(hp):
    return seed_key(hp, 2)


def augment_key(hp):
    return seed_key(hp, 3)
