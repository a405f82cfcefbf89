"""jaxbatch.models.conv: the CPU forms equal XLA's convolutions, value and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxbatch import models
from jaxbatch.models import conv

NHWC = ("NHWC", "HWIO", "NHWC")

CASES = {
    # name: (input shape, kernel shape, stride, padding, groups)
    "pointwise": ((4, 9, 9, 6), (1, 1, 6, 5), 1, 0, 1),
    "pointwise_strided_padded": ((4, 9, 9, 6), (1, 1, 6, 5), 2, 1, 1),
    "depthwise": ((4, 9, 9, 6), (3, 3, 1, 6), 1, 1, 6),
    "depthwise_strided": ((4, 10, 10, 6), (3, 3, 1, 6), 2, 1, 6),
    "depthwise_5x5_unpadded": ((2, 11, 11, 3), (5, 5, 1, 3), 1, 0, 3),
}


def _apply(fn, x, w, stride=1, pad=0, groups=1):
    return fn(x, w, (stride, stride), ((pad, pad), (pad, pad)),
              dimension_numbers=NHWC, feature_group_count=groups)  # fmt: skip


def _value_and_grads(fn, stride, pad, groups):
    def loss(x, w):
        y = _apply(fn, x, w, stride, pad, groups)
        return jnp.sum(jnp.sin(y)), y

    return jax.value_and_grad(loss, (0, 1), has_aux=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_forms_equal_xla(name, monkeypatch):
    monkeypatch.setenv("JAXBATCH_CONV", "fast")
    x_shape, w_shape, stride, pad, groups = CASES[name]
    x = jax.random.normal(jax.random.key(0), x_shape)
    w = jax.random.normal(jax.random.key(1), w_shape)
    ref = _value_and_grads(lax.conv_general_dilated, stride, pad, groups)
    fast = _value_and_grads(conv.conv_general_dilated, stride, pad, groups)
    (_, y_ref), g_ref = ref(x, w)
    (_, y), g = fast(x, w)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g, g_ref):  # input and kernel gradients
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # and no XLA convolution is left in the program, forward or backward
    assert "convolution" not in jax.jit(fast).lower(x, w).as_text()


def test_other_convolutions_stay_xla(monkeypatch):
    monkeypatch.setenv("JAXBATCH_CONV", "fast")
    x = jnp.ones((2, 8, 8, 4))
    for w_shape, groups in (((3, 3, 4, 8), 1), ((3, 3, 2, 4), 2)):  # dense, grouped
        w = jnp.ones(w_shape)
        fn = jax.jit(
            lambda x, w, g=groups: _apply(conv.conv_general_dilated, x, w, 1, 1, g)
        )
        assert "convolution" in fn.lower(x, w).as_text()
        ref = _apply(lax.conv_general_dilated, x, w, 1, 1, groups)
        np.testing.assert_array_equal(fn(x, w), ref)


def test_impl_setting(monkeypatch):
    monkeypatch.setenv("JAXBATCH_CONV", "auto")
    assert conv.impl() == ("fast" if jax.default_backend() == "cpu" else "xla")
    monkeypatch.setenv("JAXBATCH_CONV", "xla")  # a pointwise conv stays XLA's
    x, w = jnp.ones((1, 4, 4, 3)), jnp.ones((1, 1, 3, 2))
    fn = jax.jit(lambda x, w: _apply(conv.conv_general_dilated, x, w))
    assert "convolution" in fn.lower(x, w).as_text()
    monkeypatch.setenv("JAXBATCH_CONV", "cudnn")
    with pytest.raises(ValueError, match="JAXBATCH_CONV must be one of"):
        conv.impl()


@pytest.mark.parametrize(
    "model,kwargs",
    [
        ("mobilenet_v1", {"alpha": 0.25}),
        ("mobilenet_v2", {"width_mult": 0.25}),
        ("squeezenet1_1", {}),
    ],
)
def test_models_train_the_same_either_way(model, kwargs, monkeypatch):
    """A whole model's loss and gradients, fast forms vs XLA's convolutions.

    In float64: in float32, BatchNorm over a few images amplifies the two forms'
    different summation orders through a MobileNet's blocks to up to 4e-3 of the
    gradient's scale, by an amount that depends on the CPU (AMD EPYC vs Xeon).
    In float64 they agree to ~1e-13 of the scale; a wrong tap or stride is O(1) off.
    """
    with jax.enable_x64(True):
        net = models.get_model(model, num_classes=10, small_input=True, **kwargs)
        x = jax.random.normal(jax.random.key(0), (8, 32, 32, 3), jnp.float64)
        # variables from their shapes (tracing net.init costs no compile): random
        # normal weights, BatchNorm scales 1, the running statistics 0 and 1
        shapes = jax.eval_shape(net.init, jax.random.key(1), x)
        leaves, tree = jax.tree.flatten_with_path(shapes)
        rng = np.random.default_rng(1)  # numpy: no compile per leaf shape
        variables = jax.tree.unflatten(
            tree, [_init_leaf(jax.tree_util.keystr(p), s.shape, rng) for p, s in leaves]
        )

        def loss(params):
            out, _ = net.apply(
                {**variables, "params": params},
                x,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": jax.random.key(2)},
            )
            return jnp.mean(out**2)

        results = {}
        for impl in ("xla", "fast"):
            monkeypatch.setenv("JAXBATCH_CONV", impl)
            results[impl] = jax.jit(jax.value_and_grad(loss))(variables["params"])
        (l_xla, g_xla), (l_fast, g_fast) = results["xla"], results["fast"]
        assert l_xla.dtype == jnp.float64
        np.testing.assert_allclose(l_fast, l_xla, rtol=1e-10)
        # compared to the gradient's overall scale (biases before a BatchNorm have
        # gradient 0 up to rounding); measured: 6-7e-14 of it (MobileNets, Xeon)
        scale = max(float(np.abs(b).max()) for b in jax.tree.leaves(g_xla))
        for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_xla)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * scale)


def _init_leaf(path: str, shape, rng):
    if "batch_stats" in path:
        return jnp.full(shape, 1.0 if "var" in path else 0.0, jnp.float64)
    if path.endswith("['scale']"):
        return jnp.ones(shape, jnp.float64)
    fan_in = int(np.prod(shape[:-1])) or 1
    return jnp.asarray(rng.standard_normal(shape) / np.sqrt(fan_in))
