"""Optimizer builder: SGD / momentum / Nesterov / Adam / AdamW / RMSprop.

:func:`make_optimizer` returns an ``optax.GradientTransformation`` that follows
PyTorch's definitions and defaults where frameworks differ:

- ``"sgd"``: ``buf = momentum * buf + g`` (dampening 0, so the first ``buf`` is
  ``g``); the step direction is ``buf``, or ``g + momentum * buf`` with
  ``nesterov=True`` (``torch.optim.SGD``).
- ``"rmsprop"``: ``v = alpha * v + (1 - alpha) * g**2`` from ``v = 0``,
  direction ``g / (sqrt(v) + eps)`` (eps outside the root), then the same
  momentum buffer as SGD on that direction (``torch.optim.RMSprop``).
- ``"adam"``: bias-corrected ``m_hat / (sqrt(v_hat) + eps)``; ``"adamw"`` is
  adam with ``weight_decay_mode="decoupled"`` (``torch.optim.AdamW``).

The parameter update is ``-lr(t) * multiplier * (direction + decoupled decay)``
with ``t`` the step count from 0. Weight decay modes:

- ``"l2"`` (coupled): ``g += wd * w`` before momentum / adaptive scaling, like
  ``torch.optim.SGD(weight_decay=...)`` and ``torch.optim.Adam(weight_decay=...)``.
- ``"l1"`` (coupled): ``g += wd * sign(w)``.
- ``"decoupled"``: ``w -= lr(t) * wd * w`` outside the momentum / adaptive path
  (SGDW, AdamW; with a schedule, ``lr(t)`` is the scheduled value).

Every numeric hyperparameter may be a traced array, so the optimizer can be
built inside a ``jax.vmap`` over the member axis; the optimizer-state pytree
structure depends only on the static arguments (``name``, modes, masks), never
on values: SGD and RMSprop always keep a momentum buffer, even at momentum 0.

Parameter paths (for ``lr_multipliers`` and ``decay_mask``) are the pytree keys
joined with ``"/"``, e.g. ``"Dense_0/bias"`` (see :func:`param_paths`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbatch.schedules import _check

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
WEIGHT_DECAY_MODES = ("l2", "decoupled", "l1")

# Flax names biases "bias" and BatchNorm/LayerNorm gains "scale".
NO_BIAS_BN = ("bias", "scale")

DecayMask = Callable[[optax.Params], object] | str | Sequence[str] | None


def _path_str(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def param_paths(params: optax.Params) -> list[str]:
    """The ``"/"``-joined path of every leaf, in ``jax.tree.leaves`` order."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return [_path_str(path) for path, _ in leaves]


def _compile(patterns: Sequence[str], name: str) -> list[re.Pattern]:
    try:
        return [re.compile(p) for p in patterns]
    except (re.error, TypeError) as err:
        raise ValueError(f"{name} must be regexes, got {patterns!r}: {err}") from err


def exclude_from_decay(*patterns: str) -> Callable[[optax.Params], object]:
    """A decay mask: ``params -> bool pytree``, False where ``re.search`` matches.

    ``exclude_from_decay("bias", "scale")`` decays everything except biases and
    normalization scales.
    """
    regexes = _compile(patterns, "decay_mask")

    def mask(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: not any(r.search(_path_str(path)) for r in regexes),
            params,
        )

    return mask


def _resolve_decay_mask(decay_mask: DecayMask):
    if decay_mask is None or callable(decay_mask):
        return decay_mask
    if decay_mask == "no_bias_bn":
        return exclude_from_decay(*NO_BIAS_BN)
    if isinstance(decay_mask, str):
        return exclude_from_decay(decay_mask)
    if isinstance(decay_mask, Sequence) and all(isinstance(p, str) for p in decay_mask):
        return exclude_from_decay(*decay_mask)
    raise ValueError(
        "decay_mask must be None, a callable params -> bool pytree, 'no_bias_bn', "
        f"or regexes of parameters to exclude, got {decay_mask=}"
    )


def _add_weight_decay(
    weight_decay: jax.typing.ArrayLike, kind: str, mask_fn
) -> optax.GradientTransformation:
    """``g + wd * w`` (``"l2"``) or ``g + wd * sign(w)`` (``"l1"``) where masked in."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("weight decay needs params: call update(g, state, params)")
        mask = (
            mask_fn(params)
            if mask_fn is not None
            else jax.tree.map(lambda _: True, params)
        )

        def add(g, w, keep):
            term = w if kind == "l2" else jnp.sign(w)
            decayed = (g + weight_decay * term).astype(g.dtype)
            if isinstance(keep, bool | np.bool_):  # static mask: no select needed
                return decayed if keep else g
            return jnp.where(keep, decayed, g)

        return jax.tree.map(add, updates, params, mask), state

    return optax.GradientTransformation(init_fn, update_fn)


def _scale_by_multipliers(
    lr_multipliers: Mapping[str, jax.typing.ArrayLike],
) -> optax.GradientTransformation:
    """Multiply each leaf's update by the product of the multipliers it matches."""
    regexes = list(
        zip(
            _compile(list(lr_multipliers), "lr_multipliers keys"),
            lr_multipliers.values(),
            strict=True,
        )
    )

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params

        def scale(path, g):
            mults = [m for regex, m in regexes if regex.search(_path_str(path))]
            for m in mults:
                g = (g * m).astype(g.dtype)
            return g

        return jax.tree_util.tree_map_with_path(scale, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(
    name: str,
    learning_rate: optax.ScalarOrSchedule,
    *,
    momentum: jax.typing.ArrayLike = 0.0,
    nesterov: bool = False,
    weight_decay: jax.typing.ArrayLike = 0.0,
    weight_decay_mode: str | None = None,
    lr_multipliers: Mapping[str, jax.typing.ArrayLike] | None = None,
    decay_mask: DecayMask = None,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    rmsprop_decay: jax.typing.ArrayLike = 0.99,
) -> optax.GradientTransformation:
    """Build an optimizer; see the module docstring for the exact update rules.

    Args:
      name: ``"sgd"``, ``"adam"``, ``"adamw"`` or ``"rmsprop"``.
      learning_rate: a number (possibly traced) or a schedule ``step -> lr``
        called with the update count (0, 1, ...).
      momentum: SGD / RMSprop momentum ``mu`` (must stay 0 for adam: use b1).
      nesterov: Nesterov momentum (sgd only; needs momentum > 0 as in PyTorch).
      weight_decay: decay coefficient ``wd``; 0.0 by default for every
        optimizer (PyTorch's AdamW defaults to 0.01). Or a mapping ``{mode:
        wd}`` applying several modes at once (coupled ones before momentum,
        decoupled after): with per-member coefficients, members of one
        compiled group can use different modes.
      weight_decay_mode: ``"l2"``, ``"l1"`` or ``"decoupled"``; ``None`` means
        ``"l2"``, or ``"decoupled"`` for adamw (which rejects any other mode).
      lr_multipliers: ``{regex: multiplier}``; a parameter's update (including
        decoupled decay) is multiplied by the *product* of the multipliers of
        every regex that ``re.search``-matches its path, 1.0 if none does.
        ``{"bias": 2.0}`` is Caffe's doubled bias LR; ``{"^backbone/": 0.1}``
        a fine-tuning LR for a pretrained trunk.
      decay_mask: which parameters are decayed (all modes). ``None`` decays
        everything; a callable ``params -> bool pytree`` (True = decay, as
        ``optax.masked``); a regex or sequence of regexes naming parameters to
        *exclude*; or ``"no_bias_bn"`` = exclude paths containing "bias" or
        "scale" (biases and BatchNorm/LayerNorm scales).
      b1, b2: Adam moment decays. eps: Adam / RMSprop denominator term.
      rmsprop_decay: RMSprop's ``alpha``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"name must be one of {OPTIMIZERS}, got {name=}")
    if isinstance(weight_decay, Mapping):
        unknown = set(weight_decay) - set(WEIGHT_DECAY_MODES)
        if unknown or weight_decay_mode is not None:
            raise ValueError(
                "weight_decay as a mapping takes modes "
                f"{WEIGHT_DECAY_MODES} as keys and no weight_decay_mode, got "
                f"{sorted(weight_decay)} and {weight_decay_mode=}"
            )
        if name == "adamw" and set(weight_decay) - {"decoupled"}:
            raise ValueError("adamw uses decoupled weight decay only")
        for mode, coef in weight_decay.items():
            _check(lambda v: v >= 0, f"weight_decay[{mode!r}]", coef, "non-negative")
    elif name == "adamw":
        if weight_decay_mode not in (None, "decoupled"):
            raise ValueError(
                f"adamw uses decoupled weight decay, got {weight_decay_mode=}; "
                "use name='adam' for coupled decay"
            )
        weight_decay_mode = "decoupled"
    weight_decay_mode = weight_decay_mode or "l2"
    if weight_decay_mode not in WEIGHT_DECAY_MODES:
        raise ValueError(
            f"weight_decay_mode must be one of {WEIGHT_DECAY_MODES}, "
            f"got {weight_decay_mode=}"
        )
    if not callable(learning_rate):
        _check(lambda v: v >= 0, "learning_rate", learning_rate, "non-negative")
    _check(lambda v: v >= 0, "momentum", momentum, "non-negative")
    if not isinstance(weight_decay, Mapping):
        _check(lambda v: v >= 0, "weight_decay", weight_decay, "non-negative")
    _check(lambda v: v >= 0, "eps", eps, "non-negative")
    for key, val in (("b1", b1), ("b2", b2), ("rmsprop_decay", rmsprop_decay)):
        _check(lambda v: (v >= 0) & (v < 1), key, val, "in [0, 1)")
    if name in ("adam", "adamw"):
        _check(lambda v: v == 0, "momentum", momentum, "0 for adam (use b1)")
    if nesterov:
        if name != "sgd":
            raise ValueError(f"nesterov is only supported for sgd, got {name=}")
        _check(lambda v: v > 0, "momentum", momentum, "positive with nesterov")

    mask_fn = _resolve_decay_mask(decay_mask)
    if isinstance(weight_decay, Mapping):
        modes = dict(weight_decay)
    else:
        modes = {weight_decay_mode: weight_decay}
    coupled = [
        _add_weight_decay(modes[m], m, mask_fn) for m in ("l2", "l1") if m in modes
    ]
    decoupled = (
        [_add_weight_decay(modes["decoupled"], "l2", mask_fn)]
        if "decoupled" in modes
        else []
    )

    chain = list(coupled)
    if name == "sgd":
        chain.append(optax.trace(decay=momentum, nesterov=nesterov))
    elif name == "rmsprop":
        chain.append(
            optax.scale_by_rms(
                decay=rmsprop_decay, eps=eps, initial_scale=0.0, eps_in_sqrt=False
            )
        )
        chain.append(optax.trace(decay=momentum))
    else:
        chain.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
    chain += decoupled
    chain.append(optax.scale_by_learning_rate(learning_rate))
    if lr_multipliers:
        chain.append(_scale_by_multipliers(lr_multipliers))
    return optax.chain(*chain)
