"""make_optimizer matches PyTorch's update rules, masks, multipliers and sweeps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbatch import schedules as S
from jaxbatch.optim import exclude_from_decay, make_optimizer, param_paths


@pytest.fixture
def x64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


P0 = {"kernel": np.array([[1.0, -2.0], [0.5, 3.0]]), "bias": np.array([0.1, -0.2])}
# Gradient of 0.5 * C * p**2 + D * p: depends on the params, so errors compound.
C = {"kernel": 0.7, "bias": 1.3}
D = {"kernel": np.array([[0.3, -0.1], [0.2, 0.4]]), "bias": np.array([0.5, -0.25])}


def _grad(p):
    return {k: C[k] * p[k] + D[k] for k in p}


def _lr_schedule(peak):
    return S.step_decay(peak, 2, 0.5)


def _run_jax(name, lr, steps=5, **kw):
    """``steps`` updates from P0; hyperparameters enter the jitted step traced.

    ``lr`` is a float, or ``("step", peak)`` for ``_lr_schedule(peak)``.
    """
    numeric = {k: v for k, v in kw.items() if isinstance(v, float)}
    static = {k: v for k, v in kw.items() if k not in numeric}
    scheduled = isinstance(lr, tuple)

    def make(lr_value, hp):
        learning_rate = _lr_schedule(lr_value) if scheduled else lr_value
        return make_optimizer(name, learning_rate, **hp, **static)

    @jax.jit
    def step(p, state, lr_value, hp):
        updates, state = make(lr_value, hp).update(_grad(p), state, p)
        return optax.apply_updates(p, updates), state

    lr_value = lr[1] if scheduled else lr
    p = jax.tree.map(jnp.asarray, P0)
    state = make(lr_value, numeric).init(p)
    for _ in range(steps):
        p, state = step(p, state, lr_value, numeric)
    return p


def _run_ref(
    name,
    lr,
    steps=5,
    momentum=0.0,
    nesterov=False,
    weight_decay=0.0,
    weight_decay_mode=None,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    rmsprop_decay=0.99,
):
    """torch.optim.SGD/Adam/AdamW/RMSprop, written out in numpy."""
    lr_at = _lr_schedule(lr[1]) if isinstance(lr, tuple) else (lambda t: lr)
    mode = weight_decay_mode or ("decoupled" if name == "adamw" else "l2")
    p = {k: v.copy() for k, v in P0.items()}
    buf = {k: np.zeros_like(v) for k, v in P0.items()}
    m = {k: np.zeros_like(v) for k, v in P0.items()}
    v = {k: np.zeros_like(v) for k, v in P0.items()}
    for t in range(steps):
        lr_t = float(lr_at(t))
        g = _grad(p)
        for k in p:
            gk = g[k]
            if mode == "l2":
                gk = gk + weight_decay * p[k]
            elif mode == "l1":
                gk = gk + weight_decay * np.sign(p[k])
            else:
                p[k] = p[k] * (1 - lr_t * weight_decay)  # decoupled, before the step
            if name == "sgd":
                buf[k] = momentum * buf[k] + gk
                d = gk + momentum * buf[k] if nesterov else buf[k]
            elif name == "rmsprop":
                v[k] = rmsprop_decay * v[k] + (1 - rmsprop_decay) * gk**2
                buf[k] = momentum * buf[k] + gk / (np.sqrt(v[k]) + eps)
                d = buf[k]
            else:
                m[k] = b1 * m[k] + (1 - b1) * gk
                v[k] = b2 * v[k] + (1 - b2) * gk**2
                m_hat, v_hat = m[k] / (1 - b1 ** (t + 1)), v[k] / (1 - b2 ** (t + 1))
                d = m_hat / (np.sqrt(v_hat) + eps)
            p[k] = p[k] - lr_t * d
    return p


CASES = [
    ("sgd", 0.1, {}),
    ("sgd", 0.1, dict(momentum=0.9)),
    ("sgd", 0.1, dict(momentum=0.9, nesterov=True)),
    ("sgd", 0.1, dict(momentum=0.9, weight_decay=0.1)),
    ("sgd", 0.1, dict(momentum=0.9, weight_decay=0.1, weight_decay_mode="l1")),
    (
        "sgd",
        ("step", 0.1),
        dict(momentum=0.9, weight_decay=0.1, weight_decay_mode="decoupled"),
    ),
    (
        "sgd",
        0.05,
        dict(
            momentum=0.5, nesterov=True, weight_decay=0.2, weight_decay_mode="decoupled"
        ),
    ),
    ("adam", 0.1, {}),
    ("adam", 0.05, dict(b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1)),
    ("adam", 0.05, dict(weight_decay=0.1, weight_decay_mode="l1")),
    ("adamw", ("step", 0.1), dict(weight_decay=0.1)),
    ("adamw", 0.01, dict(weight_decay=0.5, weight_decay_mode="decoupled")),
    ("rmsprop", 0.01, {}),
    ("rmsprop", 0.01, dict(momentum=0.5, rmsprop_decay=0.9, eps=1e-6)),
    ("rmsprop", 0.01, dict(weight_decay=0.1)),
    ("rmsprop", ("step", 0.1), dict(weight_decay=0.1, weight_decay_mode="decoupled")),
]


@pytest.mark.parametrize("name, lr, kw", CASES)
def test_matches_pytorch_reference(x64, name, lr, kw):
    got = _run_jax(name, lr, **kw)
    want = _run_ref(name, lr, **kw)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12, err_msg=k)
        assert not np.allclose(want[k], P0[k])  # the parameters did move


def _literal_run(name, steps, **kw):
    """A single weight w = 1 with a constant gradient 0.5."""
    tx = make_optimizer(name, **kw)
    p = {"w": jnp.array([1.0])}
    state = tx.init(p)
    out = []
    for _ in range(steps):
        u, state = tx.update({"w": jnp.array([0.5])}, state, p)
        p = optax.apply_updates(p, u)
        out.append(float(p["w"][0]))
    return out


@pytest.mark.parametrize(
    "name, kw, expected",
    [
        # buf = 0.5, 0.95, 1.355; p -= 0.1 * buf
        ("sgd", dict(learning_rate=0.1, momentum=0.9), [0.95, 0.855, 0.7195]),
        # d = g + 0.9 * buf = 0.95, 1.355
        ("sgd", dict(learning_rate=0.1, momentum=0.9, nesterov=True), [0.905, 0.7695]),
        # g' = 0.5 + 0.1 * p: 0.6, 0.594; buf = 0.6, 1.134
        (
            "sgd",
            dict(learning_rate=0.1, momentum=0.9, weight_decay=0.1),
            [0.94, 0.8266],
        ),
        # p -= 0.1 * (buf + 0.1 * p): buf = 0.5, 0.95
        (
            "sgd",
            dict(
                learning_rate=0.1,
                momentum=0.9,
                weight_decay=0.1,
                weight_decay_mode="decoupled",
            ),
            [0.94, 0.8356],
        ),
        # g' = 0.5 + 0.1 * sign(p) = 0.6; buf = 0.6, 1.14
        (
            "sgd",
            dict(
                learning_rate=0.1,
                momentum=0.9,
                weight_decay=0.1,
                weight_decay_mode="l1",
            ),
            [0.94, 0.826],
        ),
        # Adam's first steps move by ~lr for a constant gradient.
        ("adam", dict(learning_rate=0.1), [0.9, 0.8]),
        # v = 0.01 * g^2, so g / sqrt(v) = 10 on the first step.
        ("rmsprop", dict(learning_rate=0.01), [0.9]),
    ],
)
def test_hand_computed_literals(name, kw, expected):
    np.testing.assert_allclose(
        _literal_run(name, len(expected), **kw), expected, rtol=1e-5
    )  # float32: Adam's 1 - b2 = 0.001 is off by ~1e-6 relative


NET = {
    "Dense_0": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.full((3,), 2.0)},
    "BatchNorm_0": {"scale": jnp.full((3,), 2.0), "bias": jnp.full((3,), 2.0)},
    "head": {"kernel": jnp.full((3, 1), 2.0)},
}


def _decayed(decay_mask, mode="decoupled"):
    """Which leaves a pure-decay step (zero gradients) changes, by path."""
    tx = make_optimizer(
        "sgd", 0.1, weight_decay=0.5, weight_decay_mode=mode, decay_mask=decay_mask
    )
    zeros = jax.tree.map(jnp.zeros_like, NET)
    updates, _ = tx.update(zeros, tx.init(NET), NET)
    flat = dict(zip(param_paths(NET), jax.tree.leaves(updates), strict=True))
    # Decayed leaves move by exactly -lr * wd * p = -0.1 (l1: -lr * wd * sign(p)).
    step = -0.05 if mode == "l1" else -0.1
    for leaf in flat.values():
        assert np.all(np.isclose(leaf, step) | (leaf == 0.0))
    return sorted(path for path, leaf in flat.items() if np.any(leaf != 0.0))


ALL = [
    "BatchNorm_0/bias",
    "BatchNorm_0/scale",
    "Dense_0/bias",
    "Dense_0/kernel",
    "head/kernel",
]


@pytest.mark.parametrize("mode", ["decoupled", "l2", "l1"])
def test_decay_mask(mode):
    assert _decayed(None, mode) == ALL
    assert _decayed("no_bias_bn", mode) == ["Dense_0/kernel", "head/kernel"]
    assert _decayed("BatchNorm", mode) == [
        "Dense_0/bias",
        "Dense_0/kernel",
        "head/kernel",
    ]
    assert _decayed(["^head/", "bias$"], mode) == [
        "BatchNorm_0/scale",
        "Dense_0/kernel",
    ]
    assert _decayed(exclude_from_decay("Dense_0"), mode) == [
        "BatchNorm_0/bias",
        "BatchNorm_0/scale",
        "head/kernel",
    ]

    def only_head(params):  # optax convention: True = decay
        return jax.tree_util.tree_map_with_path(
            lambda path, _: jax.tree_util.keystr(path).startswith("['head']"), params
        )

    assert _decayed(only_head, mode) == ["head/kernel"]


def test_decay_mask_with_array_leaves_under_jit():
    # A mask of traced booleans selects with jnp.where instead of Python branching.
    def mask(params):
        return jax.tree.map(lambda p: jnp.asarray(p.ndim > 1), params)

    @jax.jit
    def step(params):
        tx = make_optimizer("sgd", 0.1, weight_decay=0.5, decay_mask=mask)
        zeros = jax.tree.map(jnp.zeros_like, params)
        return tx.update(zeros, tx.init(params), params)[0]

    got = step(NET)
    np.testing.assert_allclose(got["Dense_0"]["kernel"], -0.1)
    np.testing.assert_allclose(got["Dense_0"]["bias"], 0.0)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_lr_multipliers(name):
    grads = jax.tree.map(
        lambda p: jnp.linspace(-1.0, 1.0, p.size).reshape(p.shape), NET
    )

    def first_update(lr_multipliers):
        tx = make_optimizer(name, 0.1, weight_decay=0.01, lr_multipliers=lr_multipliers)
        return tx.update(grads, tx.init(NET), NET)[0]

    base = first_update(None)
    # Multiple matches multiply: Dense_0/bias gets 2 * 0.5.
    mult = first_update({"bias": 2.0, "^Dense_0/": 0.5})
    factors = {
        "BatchNorm_0": {"scale": 1.0, "bias": 2.0},
        "Dense_0": {"kernel": 0.5, "bias": 1.0},
        "head": {"kernel": 1.0},
    }
    jax.tree.map(
        lambda m, b, f: np.testing.assert_allclose(m, f * b, rtol=1e-6),
        mult,
        base,
        factors,
    )


def test_lr_multipliers_scale_decoupled_decay():
    tx = make_optimizer(
        "adamw", 0.1, weight_decay=0.5, lr_multipliers={"bias": 2.0, "head": 0.0}
    )
    zeros = jax.tree.map(jnp.zeros_like, NET)
    got = tx.update(zeros, tx.init(NET), NET)[0]
    np.testing.assert_allclose(got["Dense_0"]["bias"], -0.2)  # -2 * lr * wd * p
    np.testing.assert_allclose(got["Dense_0"]["kernel"], -0.1)
    np.testing.assert_allclose(got["head"]["kernel"], 0.0)  # a frozen layer


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam"])
def test_state_structure_does_not_depend_on_values(name):
    def state(lr, momentum, wd):
        tx = make_optimizer(name, lr, momentum=momentum, weight_decay=wd)
        return tx.init(NET)

    mom = 0.0 if name == "adam" else 0.9
    python_zeros = jax.tree.structure(state(0.1, 0.0, 0.0))
    traced = jax.tree.structure(jax.eval_shape(state, 0.1, mom, 1e-4))
    assert python_zeros == traced


def test_no_recompile_for_new_hyperparameter_values():
    @jax.jit
    def step(params, lr, momentum, wd):
        tx = make_optimizer(
            "sgd",
            lambda t: lr * S.cosine_decay(1.0, 100)(t),
            momentum=momentum,
            weight_decay=wd,
        )
        return tx.update(params, tx.init(params), params)[0]

    outs = [step(NET, lr, m, wd) for lr, m, wd in [(0.1, 0.9, 0.0), (0.3, 0.0, 1e-3)]]
    assert step._cache_size() == 1
    np.testing.assert_allclose(outs[0]["head"]["kernel"], -0.1 * 2.0)
    np.testing.assert_allclose(
        outs[1]["head"]["kernel"], -0.3 * (2.0 + 1e-3 * 2.0), rtol=1e-6
    )


def _make_regression():
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (32, 4))
    y = x @ jax.random.normal(kw, (4,)) + 0.5
    return x, y


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_vmapped_sweep_equals_solo_runs(name):
    x, y = _make_regression()

    def loss_fn(params):
        return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)

    def train(lr, wd):
        """10 steps of one member; returns final params and [steps] losses."""
        tx = make_optimizer(
            name,
            S.warmup(lambda t: lr * S.cosine_decay(1.0, 10)(t), 2, 0.1),
            momentum=0.9 if name == "sgd" else 0.0,
            weight_decay=wd,
            decay_mask="^b$",
        )
        params = {"w": jnp.zeros(4), "b": jnp.zeros(())}

        def step(carry, _):
            params, state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, 10)
        return params, losses

    lrs = jnp.array([0.01, 0.05, 0.1, 0.2])
    wds = jnp.array([0.0, 1e-4, 1e-2, 1e-1])
    swept, swept_losses = jax.jit(jax.vmap(train))(lrs, wds)
    solo_train = jax.jit(train)
    for i in range(len(lrs)):
        params, losses = solo_train(lrs[i], wds[i])
        for k in params:
            np.testing.assert_allclose(swept[k][i], params[k], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(swept_losses[i], losses, rtol=1e-6)
        assert losses[-1] < losses[0]
    # Members really differ (the hyperparameters were not ignored).
    assert len({round(float(v), 6) for v in swept["b"]}) == len(lrs)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(name="lbfgs", learning_rate=0.1), "name='lbfgs'"),
        (
            dict(name="adamw", learning_rate=0.1, weight_decay_mode="l2"),
            "weight_decay_mode='l2'",
        ),
        (
            dict(name="sgd", learning_rate=0.1, weight_decay_mode="l3"),
            "weight_decay_mode='l3'",
        ),
        (dict(name="sgd", learning_rate=0.1, nesterov=True), "momentum=0.0"),
        (
            dict(name="rmsprop", learning_rate=0.1, nesterov=True, momentum=0.9),
            "name='rmsprop'",
        ),
        (dict(name="adam", learning_rate=0.1, momentum=0.9), "momentum=0.9"),
        (dict(name="sgd", learning_rate=-0.1), "learning_rate=-0.1"),
        (
            dict(name="sgd", learning_rate=0.1, weight_decay=-1e-4),
            "weight_decay=-0.0001",
        ),
        (dict(name="adam", learning_rate=0.1, b2=1.0), "b2=1.0"),
        (dict(name="sgd", learning_rate=0.1, decay_mask=3), "decay_mask=3"),
        (dict(name="sgd", learning_rate=0.1, decay_mask="(bias"), "decay_mask"),
        (
            dict(name="sgd", learning_rate=0.1, lr_multipliers={"[": 2.0}),
            "lr_multipliers",
        ),
    ],
)
def test_bad_arguments_raise_with_value(kw, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer(**kw)


def test_param_paths():
    assert param_paths(NET) == ALL
    assert param_paths({"params": {"layers": [{"w": 1}, {"w": 2}]}}) == [
        "params/layers/0/w",
        "params/layers/1/w",
    ]
