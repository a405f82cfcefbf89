"""Learning-rate schedules, scaling rules, batch-size schedules and control state.

Every schedule factory checks its arguments in plain Python and returns a pure
closure ``schedule(step) -> value`` (the optax convention). Time is counted in
optimizer steps, starting at 0; :func:`epochs_to_steps` converts epochs.

Hyperparameters are data: every numeric argument typed ``jax.typing.ArrayLike``
may be a traced array, so a schedule can be built *inside* a ``jax.jit`` /
``jax.vmap`` over the sweep's member axis and changing its values never
recompiles. Checks run only on concrete values (Python/numpy numbers or
concrete arrays) and are skipped for tracers. ``step`` may be a scalar or an
array of steps (``[steps]``); the result has the broadcast shape.

Why not optax's schedules: they check or branch in Python on some of their
arguments, so those arguments cannot be per-member traced values. Under
``jax.vmap`` over the varied value (optax 0.2.8) ``optax.exponential_decay``
fails on ``decay_rate`` and ``transition_steps``, ``warmup_cosine_decay_schedule``
on ``peak_value``, ``warmup_steps`` and ``decay_steps``,
``cosine_decay_schedule``/``polynomial_schedule`` on their step counts,
``piecewise_constant_schedule`` on its scales and
``optax.contrib.reduce_on_plateau`` on ``factor`` (a
``TracerBoolConversionError``). Each factory here names the optax function it
corresponds to, with the argument mapping (tested value for value); no public
name here is spelt like an optax function, so none can be mistaken for one
with another signature. (``exp_decay`` was called ``exponential_decay``, optax's
name for ``init_value * decay_rate ** (step / transition_steps)``.)

Per-member control state (:class:`ReduceOnPlateau`, :class:`EarlyStopping`) is
a NamedTuple of arrays with pure ``init()`` / ``update(state, value)``; all
branching is ``jnp.where`` so a batch of states can be updated under
``jax.vmap``. Once ``stopped`` is True it stays True and the state is frozen.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Schedule = Callable[[jax.typing.ArrayLike], jax.Array]


def _concrete(x) -> np.ndarray | None:
    """``x`` as a numpy array, or None when it is a tracer (not checkable)."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def _check(ok: Callable[[np.ndarray], np.ndarray], name: str, value, what: str):
    v = _concrete(value)
    if v is not None and not np.all(ok(v)):
        raise ValueError(f"{name} must be {what}, got {name}={value!r}")


def _is_int(v: np.ndarray) -> np.ndarray:
    return np.isfinite(v) & (v == np.floor(v))


def _check_positive_int(name: str, value):
    _check(lambda v: _is_int(v) & (v > 0), name, value, "a positive integer")


def _check_nonneg_int(name: str, value):
    _check(lambda v: _is_int(v) & (v >= 0), name, value, "a non-negative integer")


def _check_static_steps(name: str, steps: Sequence[int]) -> np.ndarray:
    """Static, sorted, non-negative integer steps (milestones, boundaries)."""
    arr = np.asarray(list(steps), dtype=np.float64).reshape(-1)
    if not (np.all(_is_int(arr) & (arr >= 0)) and np.all(np.diff(arr) >= 0)):
        raise ValueError(
            f"{name} must be sorted non-negative integers, got {name}={steps!r}"
        )
    return arr.astype(np.int64)


def epochs_to_steps(epochs, steps_per_epoch: int):
    """Number of optimizer steps in ``epochs`` epochs: ``round(epochs * spe)``.

    ``epochs`` may be fractional (e.g. a 0.5-epoch warmup). Python numbers give a
    Python int; arrays (or tracers) give an int32 array of the same shape.
    """
    _check_positive_int("steps_per_epoch", steps_per_epoch)
    _check(lambda v: v >= 0, "epochs", epochs, "non-negative")
    if isinstance(epochs, numbers.Real) and isinstance(
        steps_per_epoch, numbers.Integral
    ):
        return int(round(epochs * steps_per_epoch))
    return jnp.round(jnp.asarray(epochs) * steps_per_epoch).astype(jnp.int32)


def constant(value: jax.typing.ArrayLike) -> Schedule:
    """``value`` at every step: ``optax.constant_schedule(value)``."""

    def schedule(step):
        return jnp.full(jnp.shape(step), value, dtype=jnp.result_type(value, float))

    return schedule


def step_decay(
    init_value: jax.typing.ArrayLike,
    step_size: jax.typing.ArrayLike,
    gamma: jax.typing.ArrayLike = 0.1,
) -> Schedule:
    """``init_value * gamma ** floor(step / step_size)`` (PyTorch StepLR).

    ``optax.exponential_decay(init_value, transition_steps=step_size,
    decay_rate=gamma, staircase=True)``. ``step_size`` (a positive integer) may
    itself be traced.
    """
    _check_positive_int("step_size", step_size)
    _check(lambda v: v >= 0, "gamma", gamma, "non-negative")

    def schedule(step):
        return init_value * jnp.power(gamma, jnp.floor_divide(step, step_size))

    return schedule


def multistep_decay(
    init_value: jax.typing.ArrayLike,
    milestones: Sequence[int],
    gamma: jax.typing.ArrayLike = 0.1,
) -> Schedule:
    """``init_value * gamma ** #{m in milestones : m <= step}`` (PyTorch MultiStepLR).

    ``milestones`` is static and sorted; at ``step == m`` the value is already
    decayed. A repeated milestone applies ``gamma`` twice, as in PyTorch.
    Distinct milestones: ``optax.piecewise_constant_schedule(init_value,
    {m: gamma for m in milestones})`` (whose scales cannot be traced).
    """
    ms = _check_static_steps("milestones", milestones)
    _check(lambda v: v >= 0, "gamma", gamma, "non-negative")

    def schedule(step):
        passed = jnp.sum(jnp.asarray(step)[..., None] >= ms, axis=-1)
        return init_value * jnp.power(gamma, passed)

    return schedule


def exp_decay(init_value: jax.typing.ArrayLike, rate: jax.typing.ArrayLike) -> Schedule:
    """``init_value * exp(-rate * step)``: a continuous rate, per unit of ``step``.

    ``rate`` is not optax's ``decay_rate``: this is
    ``optax.exponential_decay(init_value, transition_steps=1,
    decay_rate=exp(-rate))``, where optax's ``decay_rate`` is the factor per
    ``transition_steps`` steps. (Called ``exponential_decay`` before, with
    ``k`` for ``rate``; renamed so that it cannot be taken for optax's.) The
    engine calls it with ``step`` in epochs (a member's ``decay_rate`` is this
    ``rate`` per epoch).
    """
    _check(lambda v: v >= 0, "rate", rate, "non-negative")

    def schedule(step):
        return init_value * jnp.exp(-rate * jnp.asarray(step))

    return schedule


def inverse_time_decay(
    init_value: jax.typing.ArrayLike,
    k: jax.typing.ArrayLike,
    power: jax.typing.ArrayLike = 1.0,
) -> Schedule:
    """``init_value / (1 + k * step) ** power`` (Caffe's ``"inv"`` policy).

    optax has no counterpart (Keras's ``InverseTimeDecay(init_value, 1, k)`` is
    ``power=1``).
    """
    _check(lambda v: v >= 0, "k", k, "non-negative")

    def schedule(step):
        return init_value / jnp.power(1.0 + k * step, power)

    return schedule


def polynomial_decay(
    init_value: jax.typing.ArrayLike,
    end_value: jax.typing.ArrayLike,
    decay_steps: jax.typing.ArrayLike,
    power: jax.typing.ArrayLike = 1.0,
) -> Schedule:
    """``(init - end) * (1 - t / decay_steps) ** power + end``.

    ``t = min(step, decay_steps)``; ``power=1`` is a linear ramp from
    ``init_value`` to ``end_value``. ``optax.polynomial_schedule(init_value,
    end_value, power, transition_steps=decay_steps)`` (mind the order: optax
    takes ``power`` before the steps); ``power=1`` is
    ``optax.linear_schedule(init_value, end_value, decay_steps)``.
    """
    _check_positive_int("decay_steps", decay_steps)
    _check(lambda v: v > 0, "power", power, "positive")

    def schedule(step):
        # Not 1 - t/d: XLA turns t/d into t * (1/d), which can exceed 1 at
        # t == d, and a negative base makes a fractional power NaN.
        remaining = decay_steps - jnp.minimum(step, decay_steps)
        frac = jnp.maximum(remaining, 0) / decay_steps
        return (init_value - end_value) * jnp.power(frac, power) + end_value

    return schedule


def cosine_decay(
    init_value: jax.typing.ArrayLike,
    decay_steps: jax.typing.ArrayLike,
    end_value: jax.typing.ArrayLike = 0.0,
) -> Schedule:
    """``end + (init - end) * (1 + cos(pi * t / decay_steps)) / 2``.

    ``t = min(step, decay_steps)``: ``init_value`` at 0, ``end_value`` from
    ``decay_steps`` on. ``optax.cosine_decay_schedule(init_value, decay_steps,
    alpha=end_value / init_value)``: ``end_value`` is the value itself where
    optax's ``alpha`` is a fraction of ``init_value``.
    """
    _check_positive_int("decay_steps", decay_steps)

    def schedule(step):
        frac = jnp.minimum(step, decay_steps) / decay_steps
        return end_value + (init_value - end_value) * 0.5 * (1 + jnp.cos(jnp.pi * frac))

    return schedule


def warmup(
    schedule: Schedule,
    warmup_steps: jax.typing.ArrayLike,
    start_factor: jax.typing.ArrayLike = 0.0,
) -> Schedule:
    """``schedule(step) * factor(step)`` with a linear warmup factor.

    ``factor = start_factor + (1 - start_factor) * min(step / warmup_steps, 1)``:
    ``start_factor`` at step 0, 1 from ``step == warmup_steps`` on. Goyal et al.'s
    gradual warmup is ``start_factor = 1 / k`` for a k-times scaled LR.
    ``warmup_steps = 0`` means no warmup (factor 1 everywhere). The wrapped
    schedule sees the global step. ``warmup(constant(v), w, s)`` is
    ``optax.warmup_constant_schedule(s * v, v, w)``; optax has no wrapper for
    any other schedule (its ``warmup_cosine_decay_schedule`` is a :func:`join`).
    """
    _check_nonneg_int("warmup_steps", warmup_steps)
    _check(lambda v: (v >= 0) & (v <= 1), "start_factor", start_factor, "in [0, 1]")

    def warmed(step):
        # A safe denominator: warmup_steps may be a traced 0.
        frac = jnp.minimum(step / jnp.maximum(warmup_steps, 1), 1.0)
        frac = jnp.where(jnp.asarray(warmup_steps) > 0, frac, 1.0)
        return schedule(step) * (start_factor + (1.0 - start_factor) * frac)

    return warmed


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Piecewise: ``schedules[i]`` for ``boundaries[i-1] <= step < boundaries[i]``.

    As in ``optax.join_schedules``, piece ``i > 0`` sees the *local* step
    ``step - boundaries[i-1]`` (so a decay after a warmup starts at its own 0);
    piece 0 sees the global step. ``len(boundaries) == len(schedules) - 1``.
    ``optax.warmup_cosine_decay_schedule(init, peak, w, d, end)`` is
    ``join([polynomial_decay(init, peak, w), cosine_decay(peak, d - w, end)],
    [w])``, with every value traceable.
    """
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(
            "join needs len(boundaries) == len(schedules) - 1, got "
            f"{len(schedules)=} and {len(boundaries)=}"
        )
    bounds = _check_static_steps("boundaries", boundaries)

    def joined(step):
        out = schedules[0](step)
        for b, piece in zip(bounds, schedules[1:], strict=True):
            out = jnp.where(step < b, out, piece(step - int(b)))
        return out

    return joined


def scaled_lr(
    base_lr: jax.typing.ArrayLike,
    base_batch_size: int,
    batch_size: int,
    rule: str = "linear",
):
    """The LR for ``batch_size`` given ``base_lr`` tuned at ``base_batch_size``.

    With ``k = batch_size / base_batch_size``: ``"linear"`` gives
    ``base_lr * k`` (Goyal et al.), ``"sqrt"`` gives ``base_lr * sqrt(k)``
    (Krizhevsky, Hoffer et al.), ``"none"`` gives ``base_lr``.
    """
    _check_positive_int("base_batch_size", base_batch_size)
    _check_positive_int("batch_size", batch_size)
    k = batch_size / base_batch_size
    factors = {"linear": k, "sqrt": math.sqrt(k), "none": 1.0}
    if rule not in factors:
        raise ValueError(f"rule must be one of {sorted(factors)}, got {rule=}")
    return base_lr * factors[rule]


def batch_size_schedule(
    init_batch_size: int, milestones: Sequence[int], factor: float
) -> Callable[[int], int]:
    """``epoch -> round(init_batch_size * factor ** #{m <= epoch})`` as a Python int.

    The batch size changes array shapes, so it is static (one compiled group
    per distinct value). Smith et al. ("Don't decay the learning rate, increase
    the batch size") multiply it by ``factor`` where a step schedule would
    divide the LR by ``factor``.
    """
    _check_positive_int("init_batch_size", init_batch_size)
    ms = _check_static_steps("milestones", milestones)
    _check(lambda v: v > 0, "factor", factor, "positive")

    def schedule(epoch: int) -> int:
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch=}")
        size = int(round(init_batch_size * factor ** int(np.sum(ms <= epoch))))
        if size < 1:
            raise ValueError(f"batch size fell below 1 at {epoch=}: {size=}")
        return size

    return schedule


_GRID_MANTISSAS = {10: (1,), 3: (1, 3), 2: (1, 2, 5)}


def lr_grid(low: float, high: float, step: int = 3) -> np.ndarray:
    """Log-spaced grid of "round" values between ``low`` and ``high``.

    ``step`` is the approximate ratio between neighbours: ``10`` gives decades
    (1e-4, 1e-3, ...), ``3`` gives mantissas 1 and 3 (1e-5, 3e-5, 1e-4, ...),
    ``2`` gives 1, 2 and 5 (1e-3, 2e-3, 5e-3, 1e-2, ...). Ends are included
    when they lie on the grid. Returns ``[n]`` float64, ascending.
    """
    if step not in _GRID_MANTISSAS:
        raise ValueError(f"step must be one of {sorted(_GRID_MANTISSAS)}, got {step=}")
    if not (0 < low <= high) or not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"need finite 0 < low <= high, got {low=} and {high=}")
    values = [
        float(f"{m}e{e}")  # the decimal literal, so 3e-4 is exactly 3e-4
        for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
        for m in _GRID_MANTISSAS[step]
    ]
    tol = 1e-9
    return np.array([v for v in values if low * (1 - tol) <= v <= high * (1 + tol)])


def log_uniform(
    key: jax.Array, low: jax.typing.ArrayLike, high: jax.typing.ArrayLike, n: int
) -> jax.Array:
    """``n`` samples of ``10 ** U(log10 low, log10 high)``; shape ``[n]``."""
    _check(lambda v: v > 0, "low", low, "positive")
    _check(lambda v: v > 0, "high", high, "positive")
    lo, hi = _concrete(low), _concrete(high)
    if lo is not None and hi is not None and np.any(lo > hi):
        raise ValueError(f"log_uniform needs low <= high, got {low=} and {high=}")
    _check_positive_int("n", n)
    u = jax.random.uniform(
        key, (n,), minval=jnp.log10(low), maxval=jnp.log10(high), dtype=float
    )
    return jnp.power(10.0, u)


def random_search(
    key: jax.Array,
    n: int,
    *,
    lr_range: tuple[float, float] = (1e-5, 1e-1),
    weight_decay_range: tuple[float, float] = (1e-7, 1e-1),
    one_minus_momentum_range: tuple[float, float] = (1e-3, 1e-1),
) -> dict[str, jax.Array]:
    """The classic random-search distributions, ``n`` members each (``[n]``).

    ``learning_rate ~ 10^U(-5, -1)``, ``weight_decay ~ 10^U(-7, -1)``,
    ``momentum = 1 - 10^U(-3, -1)`` (log-uniform in ``1 - momentum``), each
    range overridable. Independent keys per hyperparameter.
    """
    k_lr, k_wd, k_mom = jax.random.split(key, 3)
    return {
        "learning_rate": log_uniform(k_lr, *lr_range, n),
        "weight_decay": log_uniform(k_wd, *weight_decay_range, n),
        "momentum": 1.0 - log_uniform(k_mom, *one_minus_momentum_range, n),
    }


def _freeze(stopped: jax.Array, old: NamedTuple, new: NamedTuple) -> NamedTuple:
    return jax.tree.map(lambda o, n: jnp.where(stopped, o, n), old, new)


class PlateauState(NamedTuple):
    """Per-member ReduceOnPlateau state (all scalars, or ``[members]`` when batched)."""

    scale: jax.Array  # LR multiplier, starts at 1.0
    best: jax.Array
    num_bad: jax.Array  # int32
    cooldown_counter: jax.Array  # int32
    stopped: jax.Array  # bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReduceOnPlateau:
    """Multiply the LR by ``factor`` when a metric stops improving.

    Decisions follow ``torch.optim.lr_scheduler.ReduceLROnPlateau`` step by step,
    with the LR replaced by a multiplier ``scale`` (starting at 1.0):

    1. ``value`` improves on ``best`` (see below) -> ``best = value``,
       ``num_bad = 0``; otherwise ``num_bad += 1``. NaN never improves.
    2. In cooldown (``cooldown_counter > 0``): ``cooldown_counter -= 1`` and
       ``num_bad = 0``.
    3. If ``num_bad > patience``: ``new = max(scale * factor, min_scale)`` is
       applied only when ``scale - new > eps``; either way ``cooldown_counter =
       cooldown`` and ``num_bad = 0``.
    4. ``stopped`` turns on once ``scale <= stop_scale`` (relative tolerance
       1e-6, so that e.g. ``0.1**3`` in float32 reaches ``1e-3``).

    Improvement, ``threshold_mode="rel"``: ``value < best - |best| * threshold``
    (min) or ``value > best + |best| * threshold`` (max). PyTorch writes
    ``best * (1 -/+ threshold)``, identical for positive ``best`` but demanding
    *less* than no improvement for a negative ``best`` (e.g. a log-likelihood);
    the ``|best|`` form means "better by a fraction threshold" for any sign.
    ``"abs"``: ``value < best - threshold`` / ``value > best + threshold``.

    ``min_scale`` plays PyTorch's ``min_lr`` and ``eps`` its ``eps``, both on the
    multiplier rather than the absolute LR (the same when the base LR is 1).
    Example "halve on no improvement in 5 evaluations, stop at 1/1024":
    ``ReduceOnPlateau(factor=0.5, patience=5, stop_scale=1/1024)``.

    optax's counterpart, ``optax.contrib.reduce_on_plateau``, is a gradient
    transformation with other decisions (improvement by ``rtol`` and ``atol``
    together, a reduction after ``patience`` bad evaluations where PyTorch
    waits for ``patience + 1``, no ``mode``, values averaged over
    ``accumulation_size`` updates) whose ``factor`` cannot be traced; here
    ``update(..., factor=...)`` takes a per-member traced factor.
    """

    factor: float = 0.1
    patience: int = 10
    mode: str = "min"
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_scale: float = 0.0
    stop_scale: float | None = None
    eps: float = 1e-8

    def __post_init__(self):
        factor, mode, threshold_mode = self.factor, self.mode, self.threshold_mode
        _check(lambda v: (v >= 0) & (v < 1), "factor", factor, "in [0, 1)")
        _check_nonneg_int("patience", self.patience)
        _check_nonneg_int("cooldown", self.cooldown)
        _check(lambda v: v >= 0, "threshold", self.threshold, "non-negative")
        _check(lambda v: v >= 0, "min_scale", self.min_scale, "non-negative")
        if self.stop_scale is not None:
            _check(lambda v: v > 0, "stop_scale", self.stop_scale, "positive")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode=}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"threshold_mode must be 'rel' or 'abs', got {threshold_mode=}"
            )

    def init(self, shape: tuple[int, ...] = ()) -> PlateauState:
        """Fresh state; ``shape=(members,)`` gives a batch for ``jax.vmap(update)``."""
        worst = jnp.inf if self.mode == "min" else -jnp.inf
        return PlateauState(
            scale=jnp.ones(shape, dtype=float),
            best=jnp.full(shape, worst, dtype=float),
            num_bad=jnp.zeros(shape, jnp.int32),
            cooldown_counter=jnp.zeros(shape, jnp.int32),
            stopped=jnp.zeros(shape, bool),
        )

    def improved(self, value: jax.Array, best: jax.Array) -> jax.Array:
        """Whether ``value`` improves on ``best`` (False for NaN)."""
        delta = self.threshold
        if self.threshold_mode == "rel":
            # |inf| * threshold is inf (or NaN); the first finite value improves.
            delta = jnp.where(jnp.isfinite(best), jnp.abs(best) * self.threshold, 0.0)
        if self.mode == "min":
            return value < best - delta
        return value > best + delta

    def update(
        self,
        state: PlateauState,
        value: jax.typing.ArrayLike,
        factor: jax.typing.ArrayLike | None = None,
    ) -> PlateauState:
        """Record one metric ``value`` (an evaluation); returns the new state.

        ``factor`` (possibly traced, per member) overrides ``self.factor``; a
        factor of 1 never reduces.
        """
        factor = self.factor if factor is None else factor
        value = jnp.asarray(value, dtype=state.best.dtype)
        better = self.improved(value, state.best)
        best = jnp.where(better, value, state.best)
        num_bad = jnp.where(better, 0, state.num_bad + 1)
        in_cooldown = state.cooldown_counter > 0
        cooldown_counter = jnp.where(
            in_cooldown, state.cooldown_counter - 1, state.cooldown_counter
        )
        num_bad = jnp.where(in_cooldown, 0, num_bad)
        reduce = num_bad > self.patience
        new_scale = jnp.maximum(state.scale * factor, self.min_scale)
        scale = jnp.where(
            reduce & (state.scale - new_scale > self.eps), new_scale, state.scale
        )
        cooldown_counter = jnp.where(reduce, self.cooldown, cooldown_counter)
        num_bad = jnp.where(reduce, 0, num_bad)
        stopped = state.stopped
        if self.stop_scale is not None:
            stopped = stopped | (scale <= self.stop_scale * (1 + 1e-6))
        new = PlateauState(
            scale=scale,
            best=best,
            num_bad=num_bad.astype(jnp.int32),
            cooldown_counter=cooldown_counter.astype(jnp.int32),
            stopped=stopped,
        )
        return _freeze(state.stopped, state, new)


class EarlyStoppingState(NamedTuple):
    """Per-member EarlyStopping state (all scalars, or ``[members]`` when batched)."""

    best: jax.Array
    best_step: jax.Array  # int32; update index of ``best``, -1 before any update
    num_bad: jax.Array  # int32
    count: jax.Array  # int32; number of updates seen
    stopped: jax.Array  # bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class EarlyStopping:
    """Stop a member whose metric has not improved for ``patience`` updates.

    As Keras ``EarlyStopping``: improvement is ``value < best - min_delta``
    (min) or ``value > best + min_delta`` (max); NaN never improves. On
    improvement ``best = value``, ``best_step = count`` (updates counted from
    0) and ``num_bad = 0``; otherwise ``num_bad += 1`` and ``stopped`` turns on
    when ``num_bad >= patience``. optax has no counterpart.
    """

    patience: int
    mode: str = "min"
    min_delta: float = 0.0

    def __post_init__(self):
        _check_nonneg_int("patience", self.patience)
        _check(lambda v: v >= 0, "min_delta", self.min_delta, "non-negative")
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got mode={self.mode!r}")

    def init(self, shape: tuple[int, ...] = ()) -> EarlyStoppingState:
        """Fresh state; ``shape=(members,)`` gives a batch for ``jax.vmap(update)``."""
        worst = jnp.inf if self.mode == "min" else -jnp.inf
        return EarlyStoppingState(
            best=jnp.full(shape, worst, dtype=float),
            best_step=jnp.full(shape, -1, jnp.int32),
            num_bad=jnp.zeros(shape, jnp.int32),
            count=jnp.zeros(shape, jnp.int32),
            stopped=jnp.zeros(shape, bool),
        )

    def update(
        self, state: EarlyStoppingState, value: jax.typing.ArrayLike
    ) -> EarlyStoppingState:
        """Record one metric ``value``; returns the new state."""
        value = jnp.asarray(value, dtype=state.best.dtype)
        if self.mode == "min":
            better = value < state.best - self.min_delta
        else:
            better = value > state.best + self.min_delta
        num_bad = jnp.where(better, 0, state.num_bad + 1).astype(jnp.int32)
        new = EarlyStoppingState(
            best=jnp.where(better, value, state.best),
            best_step=jnp.where(better, state.count, state.best_step),
            num_bad=num_bad,
            count=state.count + 1,
            stopped=~better & (num_bad >= self.patience),
        )
        return _freeze(state.stopped, state, new)
