"""Probes that are functions of their own: one member's noise scale and sharpness.

Mapped over the member axis like the step, and drawing their randomness from
the member's seed, so a member's probe values equal its solo run's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from jaxbatch import choices, probes
from jaxbatch.data import normalize
from jaxbatch.engine.hparams import dropout_key, seed_key
from jaxbatch.engine.spec import MemberState, TrainSpec
from jaxbatch.engine.step import model_variables


def _probe_loss(spec: TrainSpec, state: MemberState, x, y, train: bool, rng=None):
    """The cross-entropy of a batch as a function of the parameters (BatchNorm
    in train mode uses the batch's statistics and updates nothing)."""
    model = spec.build_model()

    def loss_fn(params, x=x, y=y):
        variables = {**model_variables(state), "params": params}
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


def noise_probe(
    spec: TrainSpec, state: MemberState, hp: Mapping, data: Mapping, probe_size: int
):
    """One member's ``(|G|², tr(Σ))`` estimates on ``probe_size`` random
    training images (drawn from its data key and step), the gradient of the
    training loss in train mode, in ``choices.NOISE_PARTS`` parts."""
    n = data["x_train"].shape[0]
    size = min(probe_size, n) // choices.NOISE_PARTS * choices.NOISE_PARTS
    key = jax.random.fold_in(seed_key(hp, 4), state.step)
    idx = jax.random.choice(key, n, (size,), replace=False)
    x = normalize(data["x_train"][idx], data["mean"], data["std"])
    y = data["y_train"][idx]
    rng = jax.random.fold_in(dropout_key(hp), state.step)

    def grad_fn(params, xb, yb):
        return jax.grad(_probe_loss(spec, state, xb, yb, True, rng))(params)

    small, big, part = probes.gradient_sq_norms(grad_fn, state.params, x, y)
    g2, tr = probes.noise_scale_estimates(small, big, part, size)
    gone = state.diverged | state.stopped
    return jnp.where(gone, jnp.nan, g2), jnp.where(gone, jnp.nan, tr)


def sharpness_probe(
    spec: TrainSpec,
    state: MemberState,
    hp: Mapping,
    data: Mapping,
    probe_size: int,
    eps: tuple[float, ...],
):
    """One member's sharpness numbers on a fixed subset of ``probe_size``
    training images (the same for every member), in eval mode."""
    n = data["x_train"].shape[0]
    idx = jax.random.permutation(jax.random.PRNGKey(0), n)[: min(probe_size, n)]
    x = normalize(data["x_train"][idx], data["mean"], data["std"])
    loss_fn = _probe_loss(spec, state, x, data["y_train"][idx], False)
    key = jax.random.fold_in(seed_key(hp, 3), 0)
    out = probes.sharpness(loss_fn, state.params, key, eps)
    return {k: jnp.where(state.diverged, jnp.nan, v) for k, v in out.items()}


def batch_metric(
    spec: TrainSpec,
    state: MemberState,
    hp: Mapping,
    data: Mapping,
    fn: Callable,
    size: int,
):
    """A function of one member's parameters and a fixed batch, ``fn(params,
    batch)``: the batch is ``size`` training images (the same for every
    member and call), ``{"x": normalized images, "y": labels, "logits": the
    member's outputs in eval mode}`` (the forward pass is compiled away when
    ``fn`` does not read the logits). A scalar result comes back as
    ``{"value": ...}``."""
    n = data["x_train"].shape[0]
    idx = jax.random.permutation(jax.random.PRNGKey(0), n)[: min(size, n)]
    x = normalize(data["x_train"][idx], data["mean"], data["std"])
    logits = spec.build_model().apply(model_variables(state), x, train=False)
    out = fn(state.params, {"x": x, "y": data["y_train"][idx], "logits": logits})
    return dict(out) if isinstance(out, Mapping) else {"value": out}
