"""Schedules equal their closed forms (jitted and vmapped); control state is exact."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbatch import schedules as S

T = np.arange(0, 1001)  # steps, including 0 and every boundary below


def _close(actual, expected):
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), expected, rtol=2e-5, atol=1e-6
    )


def _step_decay_ref(t, init, step_size, gamma):
    return init * gamma ** (t // step_size)


def _multistep_ref(t, init, gamma, milestones):
    passed = np.sum(np.asarray(t)[..., None] >= np.asarray(milestones), axis=-1)
    return init * gamma**passed


def _poly_ref(t, init, end, decay_steps, power):
    return (init - end) * (1 - np.minimum(t, decay_steps) / decay_steps) ** power + end


def _cosine_ref(t, init, decay_steps, end):
    frac = np.minimum(t, decay_steps) / decay_steps
    return end + (init - end) * 0.5 * (1 + np.cos(np.pi * frac))


def _warmup_ref(t, init, step_size, warmup_steps, start):
    frac = np.minimum(t / warmup_steps, 1.0) if warmup_steps > 0 else np.ones_like(t)
    return _step_decay_ref(t, init, step_size, 0.5) * (start + (1 - start) * frac)


def _join_ref(t, init, warmup_steps, decay_steps):
    ramp = init * t / warmup_steps
    return np.where(
        t < warmup_steps, ramp, _cosine_ref(t - warmup_steps, init, decay_steps, 0.0)
    )


MILESTONES = (1, 300, 301, 700)

# name -> (schedule factory taking traced hyperparameters, numpy reference,
#          hyperparameter sets: each a tuple of floats/ints; the first few are
#          the edge cases, all sets together form the vmapped batch).
CASES = {
    "constant": (
        S.constant,
        lambda t, v: np.full(t.shape, v),
        [(0.1,), (3.0,), (1e-4,)],
    ),
    "step_decay": (
        S.step_decay,
        _step_decay_ref,
        [(0.1, 1, 0.9), (1.0, 30, 0.1), (0.5, 1000, 0.5), (2.0, 7, 0.99)],
    ),
    "multistep_decay": (
        lambda init, gamma: S.multistep_decay(init, MILESTONES, gamma),
        lambda t, init, gamma: _multistep_ref(t, init, gamma, MILESTONES),
        [(0.1, 0.1), (1.0, 0.5), (3.0, 0.9)],
    ),
    "exp_decay": (
        S.exp_decay,
        lambda t, init, rate: init * np.exp(-rate * t),
        [(0.1, 0.0), (1.0, 1e-3), (2.0, 0.01)],
    ),
    "inverse_time_decay": (
        S.inverse_time_decay,
        lambda t, init, k, p: init / (1 + k * t) ** p,
        [(0.01, 1e-4, 0.75), (1.0, 0.1, 1.0), (0.5, 1.0, 0.5)],
    ),
    "polynomial_decay": (
        S.polynomial_decay,
        _poly_ref,
        [(1.0, 0.0, 1, 1.0), (0.1, 0.01, 500, 2.0), (1.0, 0.5, 1000, 0.5)],
    ),
    "cosine_decay": (
        S.cosine_decay,
        _cosine_ref,
        [(1.0, 1, 0.0), (0.1, 500, 1e-3), (2.0, 999, 0.5)],
    ),
    "warmup": (
        lambda init, step_size, w, start: S.warmup(
            S.step_decay(init, step_size, 0.5), w, start
        ),
        _warmup_ref,
        [
            (0.1, 100, 0, 0.0),
            (1.0, 1, 1, 0.0),
            (0.4, 300, 100, 0.125),
            (1.0, 50, 999, 0.5),
        ],
    ),
    "join": (
        lambda init, w, d: S.join(
            [S.polynomial_decay(0.0, init, w), S.cosine_decay(init, d)], [w]
        ),
        _join_ref,
        [(1.0, 1, 1), (0.1, 100, 500), (0.3, 250, 1000)],
    ),
}

# join's boundary (and here its decay_steps) are static ints: the last
# STATIC[name] hyperparameters of a case are passed as Python values.
STATIC = {"join": 2}


def _split(name, hp):
    n = len(hp) - STATIC.get(name, 0)
    return hp[:n], hp[n:]


@pytest.mark.parametrize("name", list(CASES))
def test_schedule_matches_closed_form_jitted(name):
    factory, ref, hp_sets = CASES[name]
    n_traced = len(_split(name, hp_sets[0])[0])
    static_argnums = tuple(range(1 + n_traced, 1 + len(hp_sets[0])))
    f = jax.jit(lambda t, *hp: factory(*hp)(t), static_argnums=static_argnums)
    for hp in hp_sets:
        _close(f(T, *hp), ref(T.astype(np.float64), *hp))
        # Scalar steps too (the optimizer calls schedules with a scalar count).
        for t in (0, 1, 999):
            _close(f(t, *hp), ref(np.asarray(float(t)), *hp))
    # New hyperparameter values reuse the compiled program: one per input
    # signature (array of steps, scalar step) and per static value.
    statics = {_split(name, hp)[1] for hp in hp_sets}
    assert f._cache_size() == 2 * len(statics)


@pytest.mark.parametrize("name", list(CASES))
def test_schedule_vmapped_over_hyperparameters(name):
    factory, ref, hp_sets = CASES[name]
    traced_rows = [_split(name, hp)[0] for hp in hp_sets]
    columns = [np.asarray(col) for col in zip(*traced_rows, strict=True)]
    for static in {_split(name, hp)[1] for hp in hp_sets}:
        got = jax.jit(
            jax.vmap(lambda *tr, _s=static: factory(*tr, *_s)(jnp.asarray(T)))
        )(*columns)
        assert got.shape == (len(hp_sets), len(T))
        for row, traced in zip(got, traced_rows, strict=True):
            _close(row, ref(T.astype(np.float64), *traced, *static))


# --- optax: no name of optax's with another meaning; each counterpart exact --------

OPTAX_NAMESPACES = (optax, optax.schedules, optax.contrib)


def _public(module):
    return sorted(
        n for n, v in vars(module).items()
        if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
    )  # fmt: skip


def test_no_public_name_is_spelt_like_an_optax_function():
    """A name shared with optax would promise optax's signature and units
    (``exponential_decay(init, k)`` did not keep that promise)."""
    ours = _public(S)
    assert "exp_decay" in ours and "cosine_decay" in ours
    clashes = [n for n in ours for ns in OPTAX_NAMESPACES if hasattr(ns, n)]
    assert clashes == []


_MS = (1, 300, 700)  # distinct milestones (optax's boundaries are a dict)

# our factory, optax's, and argument sets; a set is (our args, optax's kwargs).
COUNTERPARTS = {
    "constant": (S.constant, optax.constant_schedule,
                 [((0.1,), dict(value=0.1))]),
    "step_decay": (S.step_decay, optax.exponential_decay, [
        ((0.1, 30, 0.5), dict(init_value=0.1, transition_steps=30, decay_rate=0.5,
                              staircase=True)),
        ((1.0, 1, 0.9), dict(init_value=1.0, transition_steps=1, decay_rate=0.9,
                             staircase=True)),
    ]),
    "multistep_decay": (S.multistep_decay, optax.piecewise_constant_schedule, [
        ((0.3, _MS, 0.1), dict(init_value=0.3,
                               boundaries_and_scales={m: 0.1 for m in _MS})),
    ]),
    "exp_decay": (S.exp_decay, optax.exponential_decay, [
        ((0.1, 0.01), dict(init_value=0.1, transition_steps=1,
                           decay_rate=math.exp(-0.01))),
        ((2.0, 1e-3), dict(init_value=2.0, transition_steps=1,
                           decay_rate=math.exp(-1e-3))),
    ]),
    "polynomial_decay": (S.polynomial_decay, optax.polynomial_schedule, [
        ((1.0, 0.01, 500, 2.0), dict(init_value=1.0, end_value=0.01, power=2.0,
                                     transition_steps=500)),
        ((0.1, 0.0, 999, 0.5), dict(init_value=0.1, end_value=0.0, power=0.5,
                                    transition_steps=999)),
    ]),
    "polynomial_decay power 1": (S.polynomial_decay, optax.linear_schedule, [
        ((0.5, 0.1, 300, 1.0), dict(init_value=0.5, end_value=0.1,
                                    transition_steps=300)),
    ]),
    "cosine_decay": (S.cosine_decay, optax.cosine_decay_schedule, [
        ((0.1, 500, 1e-3), dict(init_value=0.1, decay_steps=500, alpha=1e-2)),
        ((2.0, 999, 0.0), dict(init_value=2.0, decay_steps=999)),
    ]),
    "warmup": (
        lambda v, w, s: S.warmup(S.constant(v), w, s),
        optax.warmup_constant_schedule,
        [((0.4, 100, 0.125), dict(init_value=0.05, peak_value=0.4, warmup_steps=100))],
    ),
    "join": (
        lambda init, peak, w, d, end: S.join(
            [S.polynomial_decay(init, peak, w), S.cosine_decay(peak, d - w, end)], [w]
        ),
        optax.warmup_cosine_decay_schedule,
        [((0.0, 1.0, 100, 1000, 1e-3), dict(init_value=0.0, peak_value=1.0,
          warmup_steps=100, decay_steps=1000, end_value=1e-3)),
         ((0.01, 0.3, 1, 700, 0.0), dict(init_value=0.01, peak_value=0.3,
          warmup_steps=1, decay_steps=700))],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(COUNTERPARTS))
def test_schedule_equals_its_optax_counterpart(name):
    """The correspondence each docstring states, value for value."""
    ours, theirs, arg_sets = COUNTERPARTS[name]
    for args, kwargs in arg_sets:
        expected = np.asarray(jax.vmap(theirs(**kwargs))(jnp.asarray(T)), np.float64)
        _close(ours(*args)(jnp.asarray(T)), expected)


def test_docstrings_name_their_optax_counterpart():
    factories = ["constant", "step_decay", "multistep_decay", "exp_decay",
                 "inverse_time_decay", "polynomial_decay", "cosine_decay",
                 "warmup", "join", "ReduceOnPlateau", "EarlyStopping"]  # fmt: skip
    for name in factories:
        assert "optax" in getattr(S, name).__doc__, name
    for name in COUNTERPARTS:
        fn = COUNTERPARTS[name][1].__name__
        owner = name if hasattr(S, name) else name.split()[0]
        assert fn in getattr(S, owner).__doc__, (owner, fn)


@pytest.mark.parametrize(
    "theirs, ours, values",
    [
        (lambda r: optax.exponential_decay(1.0, 10, r)(5),
         lambda r: S.exp_decay(1.0, -jnp.log(r) / 10)(5), [0.5, 0.9]),
        (lambda p: optax.warmup_cosine_decay_schedule(0.0, p, 5, 20)(7),
         lambda p: S.join([S.polynomial_decay(0.0, p, 5), S.cosine_decay(p, 15)],
                          [5])(7), [1.0, 2.0]),
        (lambda d: optax.cosine_decay_schedule(1.0, d)(5),
         lambda d: S.cosine_decay(1.0, d)(5), [10, 20]),
        (lambda g: optax.piecewise_constant_schedule(1.0, {3: g})(5),
         lambda g: S.multistep_decay(1.0, [3], g)(5), [0.1, 0.2]),
    ],
)  # fmt: skip
def test_optax_counterparts_cannot_take_per_member_values(theirs, ours, values):
    """Why these schedules exist (the module's docstring): optax's branch in
    Python on these values, so a vmap over members fails; ours do not, and
    agree with optax's at each value."""
    values = jnp.asarray(values)
    with pytest.raises(jax.errors.TracerBoolConversionError):
        jax.vmap(theirs)(values)
    got = jax.vmap(ours)(values)
    _close(got, [float(theirs(v)) for v in np.asarray(values).tolist()])


def test_reduce_on_plateau_factor_is_per_member_unlike_optax():
    with pytest.raises(jax.errors.TracerBoolConversionError):
        jax.vmap(lambda f: optax.contrib.reduce_on_plateau(factor=f).init(0.0))(
            jnp.asarray([0.1, 0.5])
        )
    rule = S.ReduceOnPlateau(patience=0)
    state = rule.init((2,))
    for v in (1.0, 2.0):
        state = jax.vmap(rule.update)(state, jnp.full(2, v), jnp.asarray([0.1, 0.5]))
    _close(state.scale, [0.1, 0.5])


def test_join_pieces_see_local_step():
    sched = S.join([S.constant(1.0), lambda t: t * 1.0, lambda t: -t * 1.0], [10, 15])
    got = jax.jit(sched)(jnp.arange(20))
    expected = [1.0] * 10 + [0.0, 1.0, 2.0, 3.0, 4.0] + [-0.0, -1.0, -2.0, -3.0, -4.0]
    np.testing.assert_array_equal(got, expected)


def test_no_recompile_when_values_change():
    traces = []

    def lr_at(step, lr, gamma, step_size, warmup_steps):
        traces.append(1)  # runs once per trace, never per call
        return S.warmup(S.step_decay(lr, step_size, gamma), warmup_steps)(step)

    f = jax.jit(lr_at)
    for lr, gamma, size, w in [(0.1, 0.1, 30, 5), (0.3, 0.5, 7, 0), (1e-3, 0.9, 1, 1)]:
        got = f(40, lr, gamma, size, w)
        factor = 1.0 if w == 0 else min(40 / w, 1.0)
        np.testing.assert_allclose(got, lr * gamma ** (40 // size) * factor, rtol=1e-5)
    assert len(traces) == 1
    assert f._cache_size() == 1


def test_traced_values_skip_checks():
    # step_size=0 is invalid, but inside jit it is a tracer and cannot be checked;
    # building the schedule must not raise (the caller validates the sweep grid).
    jax.jit(lambda s: S.step_decay(1.0, s)(3))(0)
    with pytest.raises(ValueError, match="step_size=0"):
        S.step_decay(1.0, 0)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: S.step_decay(1.0, 2.5), "step_size=2.5"),
        (lambda: S.step_decay(1.0, 10, -0.1), "gamma=-0.1"),
        (lambda: S.multistep_decay(1.0, [5, 3]), r"milestones=\[5, 3\]"),
        (lambda: S.polynomial_decay(1.0, 0.0, 0), "decay_steps=0"),
        (lambda: S.cosine_decay(1.0, -3), "decay_steps=-3"),
        (lambda: S.warmup(S.constant(1.0), -1), "warmup_steps=-1"),
        (lambda: S.warmup(S.constant(1.0), 5, 1.5), "start_factor=1.5"),
        (lambda: S.join([S.constant(1.0)], [3]), "len"),
        (lambda: S.exp_decay(1.0, np.array([0.1, -1.0])), "rate="),
        (lambda: S.scaled_lr(0.1, 256, 1024, "cubic"), "rule='cubic'"),
        (lambda: S.scaled_lr(0.1, 0, 1024), "base_batch_size=0"),
        (lambda: S.batch_size_schedule(128, [30, 10], 5), "milestones="),
        (lambda: S.lr_grid(1e-3, 1e-1, step=4), "step=4"),
        (lambda: S.lr_grid(1e-1, 1e-3), "low=0.1"),
        (lambda: S.epochs_to_steps(2, 0), "steps_per_epoch=0"),
        (lambda: S.ReduceOnPlateau(factor=1.0), "factor=1.0"),
        (lambda: S.ReduceOnPlateau(mode="avg"), "mode='avg'"),
        (lambda: S.ReduceOnPlateau(threshold_mode="pct"), "threshold_mode='pct'"),
        (lambda: S.ReduceOnPlateau(patience=-1), "patience=-1"),
        (lambda: S.EarlyStopping(patience=3, min_delta=-1.0), "min_delta=-1.0"),
    ],
)
def test_bad_arguments_raise_with_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_epochs_to_steps():
    assert S.epochs_to_steps(5, 390) == 1950
    assert S.epochs_to_steps(0.5, 391) == 196  # round(195.5), half to even
    assert S.epochs_to_steps(0, 10) == 0
    np.testing.assert_array_equal(S.epochs_to_steps(np.array([1, 2.5]), 10), [10, 25])


def test_scaled_lr_rules():
    assert S.scaled_lr(0.1, 256, 1024, "linear") == pytest.approx(0.4)
    assert S.scaled_lr(0.1, 256, 1024, "sqrt") == pytest.approx(0.2)
    assert S.scaled_lr(0.1, 256, 1024, "none") == pytest.approx(0.1)
    assert S.scaled_lr(0.1, 256, 64, "linear") == pytest.approx(0.025)
    # Traced base_lr (one per member).
    got = jax.vmap(lambda lr: S.scaled_lr(lr, 128, 512, "sqrt"))(jnp.array([0.1, 0.3]))
    np.testing.assert_allclose(got, [0.2, 0.6], rtol=1e-6)


def test_batch_size_schedule():
    sched = S.batch_size_schedule(128, [60, 120, 160], 5)
    got = [sched(e) for e in (0, 59, 60, 119, 120, 160, 200)]
    assert got == [128, 128, 640, 640, 3200, 16000, 16000]
    assert all(type(b) is int for b in got)
    assert S.batch_size_schedule(64, [10], 2)(10) == 128
    with pytest.raises(ValueError, match="epoch=-1"):
        sched(-1)


def test_lr_grid():
    np.testing.assert_array_equal(
        S.lr_grid(1e-5, 1e-1), [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
    )
    np.testing.assert_array_equal(S.lr_grid(3e-4, 3e-2), [3e-4, 1e-3, 3e-3, 1e-2, 3e-2])
    np.testing.assert_array_equal(
        S.lr_grid(2e-4, 0.5), [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3]
    )
    np.testing.assert_array_equal(
        S.lr_grid(1e-4, 1e-1, step=10), [1e-4, 1e-3, 1e-2, 1e-1]
    )
    np.testing.assert_array_equal(
        S.lr_grid(1e-2, 1.0, step=2), [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    )
    assert S.lr_grid(1.0, 1.0).tolist() == [1.0]


def test_log_uniform_and_random_search():
    x = np.asarray(S.log_uniform(jax.random.key(0), 1e-5, 1e-1, 4000))
    assert x.shape == (4000,)
    assert x.min() >= 1e-5 * (1 - 1e-5) and x.max() <= 1e-1 * (1 + 1e-5)
    # Uniform in log10: each decade holds about a quarter of the samples.
    counts = np.histogram(np.log10(x), bins=[-5, -4, -3, -2, -1])[0]
    np.testing.assert_allclose(counts / 4000, 0.25, atol=0.03)

    hp = S.random_search(jax.random.key(1), 2000)
    assert set(hp) == {"learning_rate", "weight_decay", "momentum"}
    for name, (lo, hi) in {
        "learning_rate": (1e-5, 1e-1),
        "weight_decay": (1e-7, 1e-1),
        "momentum": (0.9, 0.999),
    }.items():
        v = np.asarray(hp[name])
        assert v.shape == (2000,)
        assert lo * (1 - 1e-5) <= v.min() and v.max() <= hi * (1 + 1e-5), name
    one_minus = np.log10(1 - np.asarray(hp["momentum"], np.float64))
    assert abs(np.median(one_minus) + 2.0) < 0.1  # median of U(-3, -1)
    # Different keys per hyperparameter: lr and wd are not the same draw rescaled.
    u_lr = (np.log10(hp["learning_rate"]) + 5) / 4
    u_wd = (np.log10(hp["weight_decay"]) + 7) / 6
    assert abs(np.corrcoef(u_lr, u_wd)[0, 1]) < 0.1


# --- control state -----------------------------------------------------------


def _run(ctrl, values, attrs):
    """Feed ``values`` one at a time through a jitted update; record ``attrs``."""
    update = jax.jit(ctrl.update)
    state = ctrl.init()
    out = {a: [] for a in attrs}
    for v in values:
        state = update(state, v)
        for a in attrs:
            out[a].append(np.asarray(getattr(state, a)).item())
    return out


PLATEAU_CASES = {
    # Improving, then flat: reduce after patience + 1 bad evaluations.
    "flat": (
        dict(factor=0.5, patience=2),
        [10, 9, 9, 9, 9, 9, 9, 9],
        dict(scale=[1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25], num_bad=[0, 0, 1, 2, 0, 1, 2, 0]),
    ),
    "noisy": (
        dict(factor=0.1, patience=2),
        [1.0, 0.8, 0.9, 0.85, 0.79, 0.95, 0.81, 0.82, 0.83],
        dict(
            scale=[1, 1, 1, 1, 1, 1, 1, 0.1, 0.1],
            num_bad=[0, 0, 1, 2, 0, 1, 2, 0, 1],
            best=[1.0, 0.8, 0.8, 0.8, 0.79, 0.79, 0.79, 0.79, 0.79],
        ),
    ),
    # 0.99995 is within the default rel threshold 1e-4 of 1.0: not an improvement.
    "rel_threshold": (
        dict(factor=0.1, patience=0),
        [1.0, 0.99995, 0.9998],
        dict(scale=[1, 0.1, 0.1], best=[1.0, 1.0, 0.9998]),
    ),
    "abs_threshold": (
        dict(factor=0.1, patience=0, threshold=0.01, threshold_mode="abs"),
        [1.0, 0.995, 0.98],
        dict(scale=[1, 0.1, 0.1], best=[1.0, 1.0, 0.98]),
    ),
    "cooldown": (
        dict(factor=0.5, patience=1, cooldown=2),
        [5.0] * 11,
        dict(
            scale=[1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.125],
            cooldown_counter=[0, 0, 2, 1, 0, 0, 2, 1, 0, 0, 2],
            num_bad=[0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0],
        ),
    ),
    "floor": (
        dict(factor=0.1, patience=0, min_scale=0.05),
        [3.0, 3.0, 3.0, 3.0],
        dict(scale=[1, 0.1, 0.05, 0.05]),
    ),
    # eps: a reduction of at most eps is skipped (0.5 -> 0.25 is 0.25 <= 0.3).
    "eps": (
        dict(factor=0.5, patience=0, eps=0.3),
        [3.0, 3.0, 3.0, 3.0],
        dict(scale=[1, 0.5, 0.5, 0.5]),
    ),
    "stop": (
        dict(factor=0.5, patience=0, stop_scale=1 / 8),
        [3.0, 3.0, 3.0, 3.0, 1.0, 3.0],
        dict(
            scale=[1, 0.5, 0.25, 0.125, 0.125, 0.125],
            stopped=[False, False, False, True, True, True],
            best=[3.0] * 6,  # frozen once stopped: the 1.0 is never recorded
        ),
    ),
    "stop_float32_rounding": (
        dict(factor=0.1, patience=0, stop_scale=1e-3),
        [3.0] * 4,
        dict(stopped=[False, False, False, True]),
    ),
    "max": (
        dict(mode="max", factor=0.5, patience=1, threshold=0.1),
        [0.5, 0.54, 0.56, 0.7, 0.7, 0.7],
        dict(scale=[1, 1, 1, 1, 1, 0.5], best=[0.5, 0.5, 0.56, 0.7, 0.7, 0.7]),
    ),
    # PyTorch would call -10.5 an improvement on -10 (it tests a < best * 0.9 =
    # -9); here improvement means a < best - |best| * 0.1 = -11.
    "negative_min": (
        dict(factor=0.5, patience=0, threshold=0.1),
        [-10.0, -10.5, -11.5, -11.6],
        dict(scale=[1, 0.5, 0.5, 0.25], best=[-10.0, -10.0, -11.5, -11.5]),
    ),
    "negative_max": (
        dict(mode="max", factor=0.5, patience=0, threshold=0.1),
        [-10.0, -9.5, -8.9],
        dict(scale=[1, 0.5, 0.5], best=[-10.0, -10.0, -8.9]),
    ),
    "nan": (
        dict(factor=0.1, patience=0),
        [1.0, float("nan"), 0.5],
        dict(scale=[1, 0.1, 0.1], best=[1.0, 1.0, 0.5], num_bad=[0, 0, 0]),
    ),
}


@pytest.mark.parametrize("case", list(PLATEAU_CASES))
def test_reduce_on_plateau_hand_sequences(case):
    config, values, expected = PLATEAU_CASES[case]
    got = _run(S.ReduceOnPlateau(**config), values, list(expected))
    for attr, want in expected.items():
        np.testing.assert_allclose(got[attr], want, rtol=1e-6, err_msg=attr)


EARLY_CASES = {
    "flat": (
        dict(patience=2),
        [5, 4, 4, 4.5, 3, 3, 3, 2],
        dict(
            stopped=[False, False, False, True, True, True, True, True],
            best=[5, 4, 4, 4, 4, 4, 4, 4],
            best_step=[0, 1, 1, 1, 1, 1, 1, 1],
            num_bad=[0, 0, 1, 2, 2, 2, 2, 2],
            count=[1, 2, 3, 4, 4, 4, 4, 4],
        ),
    ),
    "min_delta_stop": (
        dict(patience=1, min_delta=0.5),
        [5.0, 4.6, 4.4],
        dict(stopped=[False, True, True], best=[5.0, 5.0, 5.0]),
    ),
    "min_delta_improve": (
        dict(patience=3, min_delta=0.5),
        [5.0, 4.6, 4.4, 3.0],
        dict(best_step=[0, 0, 2, 3], num_bad=[0, 1, 0, 0], stopped=[False] * 4),
    ),
    "max": (
        dict(patience=2, mode="max"),
        [0.1, 0.5, 0.4, 0.6, 0.6, 0.55],
        dict(stopped=[False] * 5 + [True], best_step=[0, 1, 1, 3, 3, 3]),
    ),
    "negative": (
        dict(patience=1, min_delta=0.1),
        [-1.0, -1.05, -1.2],
        dict(stopped=[False, True, True], best=[-1.0, -1.0, -1.0]),
    ),
    "patience_zero": (
        dict(patience=0),
        [3.0, 2.0, 2.0],
        dict(stopped=[False, False, True]),
    ),
    "nan": (
        dict(patience=2),
        [1.0, float("nan"), float("nan")],
        dict(stopped=[False, False, True], best=[1.0, 1.0, 1.0]),
    ),
}


@pytest.mark.parametrize("case", list(EARLY_CASES))
def test_early_stopping_hand_sequences(case):
    config, values, expected = EARLY_CASES[case]
    got = _run(S.EarlyStopping(**config), values, list(expected))
    for attr, want in expected.items():
        np.testing.assert_allclose(got[attr], want, rtol=1e-6, err_msg=attr)


@pytest.mark.parametrize(
    "ctrl",
    [
        S.ReduceOnPlateau(factor=0.5, patience=1, cooldown=1, stop_scale=0.25),
        S.EarlyStopping(patience=2, min_delta=0.01),
    ],
)
def test_control_state_vmapped_equals_solo(ctrl):
    # [members, steps] of metrics: improving, flat, noisy, negative, NaN-bearing.
    values = np.array(
        [
            [5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.25, 0.1],
            [2.0] * 8,
            [1.0, 0.8, 0.9, 0.85, 0.79, 0.95, 0.81, 0.82],
            [-1.0, -1.5, -1.4, -1.6, -1.6, -1.6, -1.6, -1.6],
            [1.0, np.nan, 0.9, np.nan, np.nan, 0.5, 0.5, 0.5],
        ],
        np.float32,
    )
    members = values.shape[0]

    @jax.jit
    def run_batch(values):
        def step(state, v):
            state = jax.vmap(ctrl.update)(state, v)
            return state, state

        return jax.lax.scan(step, ctrl.init((members,)), values.T)[1]

    batched = run_batch(values)
    solo_update = jax.jit(ctrl.update)
    for m in range(members):
        state = ctrl.init()
        for t in range(values.shape[1]):
            state = solo_update(state, values[m, t])
            for field, got in zip(state._fields, batched, strict=True):
                np.testing.assert_array_equal(got[t, m], getattr(state, field), field)
    # The sweep actually exercised stopping and (for plateau) reductions.
    assert bool(batched.stopped[-1].any()) and not bool(batched.stopped[-1].all())


def test_stop_scale_halving_reaches_1_over_1024():
    rp = S.ReduceOnPlateau(factor=0.5, patience=0, stop_scale=1 / 1024)
    got = _run(rp, [1.0] * 13, ["scale", "stopped"])
    assert got["stopped"].index(True) == 10  # 10 halvings after the first value
    assert got["scale"][-1] == math.ldexp(1.0, -10)
