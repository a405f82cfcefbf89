"""Behavioural tests of the model zoo (jaxbatch.models).

Large models are only traced (jax.eval_shape); real forward passes use small
widths and small images so the file stays fast on 2 CPU cores.
"""

import functools
import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbatch import models
from jaxbatch.models import layers

SMALL_SHAPES = [(2, 28, 28, 1), (2, 32, 32, 3)]
# Cheap settings for real forward passes of the models no other test runs.
CHEAP_KW = {
    "simple_cnn": {"width": 0.25},
    "squeezenet1_1": {"small_input": True},
    "mobilenet_v1": {"alpha": 0.25, "small_input": True},
}


def _rngs(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"params": k1, "dropout": k2}


def _jit_init(model):
    # Keys are arguments, not closed-over constants, so XLA does not try to
    # constant-fold the random initializers while compiling.
    return jax.jit(functools.partial(model.init, train=False))


def _abstract_logits(model, shape):
    def forward(x):
        variables = model.init(_rngs(), x, train=False)
        return model.apply(variables, x, train=False)

    return jax.eval_shape(forward, jax.ShapeDtypeStruct(shape, jnp.float32))


def test_registry_lists_every_model():
    assert models.available_models() == (
        "alexnet",
        "alexnet_small",
        "mlp",
        "mobilenet_v1",
        "mobilenet_v2",
        "simple_cnn",
        "simple_cnn_bn",
        "squeezenet1_0",
        "squeezenet1_1",
    )


@pytest.mark.parametrize("name", sorted(models.PARAM_COUNTS))
def test_param_count_matches_reference(name):
    model = models.get_model(name, num_classes=1000)
    count = models.param_count(model, (1, 224, 224, 3))
    assert count == models.PARAM_COUNTS[name]


@pytest.mark.parametrize("name", models.available_models())
def test_logits_shape_at_224(name):
    out = _abstract_logits(models.get_model(name, num_classes=7), (3, 224, 224, 3))
    assert (out.shape, out.dtype) == ((3, 7), jnp.float32)


@pytest.mark.parametrize("shape", SMALL_SHAPES)
@pytest.mark.parametrize("name", models.available_models())
def test_logits_shape_small_input(name, shape):
    model = models.get_model(name, num_classes=10, small_input=True)
    out = _abstract_logits(model, shape)
    assert (out.shape, out.dtype) == ((2, 10), jnp.float32)


@pytest.mark.parametrize("name", sorted(CHEAP_KW))
def test_real_forward_small_image(name):
    model = models.get_model(name, num_classes=10, **CHEAP_KW[name])
    x = jax.random.normal(jax.random.key(1), (2, 28, 28, 1))
    variables = _jit_init(model)(_rngs(), x)
    logits = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    # The two examples give different logits: the input reaches the output.
    # (Relative test: BN nets at init have tiny eval-mode logits, as in PyTorch.)
    assert not np.allclose(logits[0], logits[1], rtol=1e-3, atol=0)


def test_mlp_hidden_widths_and_ignored_train_flag():
    model = models.get_model("mlp", num_classes=3, hidden=[5, 4])
    x = jnp.ones((2, 6, 6, 1))
    variables = model.init(_rngs(), x, train=False)
    kernels = [v["kernel"].shape for v in variables["params"].values()]
    assert kernels == [(36, 5), (5, 4), (4, 3)]
    np.testing.assert_array_equal(
        model.apply(variables, x, train=True), model.apply(variables, x, train=False)
    )


def test_dense_layers_use_pytorch_default_init():
    model = models.get_model("mlp", num_classes=10, hidden=(64,))
    params = model.init(_rngs(), jnp.ones((1, 100)), train=False)["params"]
    for layer in params.values():
        bound = 1 / math.sqrt(layer["kernel"].shape[0])
        assert 0.9 * bound < float(jnp.max(jnp.abs(layer["kernel"]))) <= bound
        assert 0.0 < float(jnp.max(jnp.abs(layer["bias"]))) <= bound


def test_dropout_active_only_in_training():
    model = models.get_model("alexnet_small", num_classes=10, width=0.25)
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    variables = _jit_init(model)(_rngs(), x)

    @functools.partial(jax.jit, static_argnums=1)
    def forward(key, train):
        return model.apply(variables, x, train=train, rngs={"dropout": key})

    key_a, key_b = jax.random.key(2), jax.random.key(3)
    assert not np.allclose(forward(key_a, True), forward(key_b, True))
    np.testing.assert_array_equal(forward(key_a, True), forward(key_a, True))
    np.testing.assert_array_equal(forward(key_a, False), forward(key_b, False))


@pytest.fixture(scope="module")
def bn():
    """mobilenet_v2 at width 0.25 on 32x32x3, with jitted init / train apply
    shared by the BatchNorm tests (compiling them dominates the test time)."""
    model = models.get_model(
        "mobilenet_v2", num_classes=10, width_mult=0.25, small_input=True
    )

    def train_apply(variables, x, key):
        return model.apply(
            variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
        )

    return SimpleNamespace(
        model=model,
        x=jax.random.normal(jax.random.key(4), (4, 32, 32, 3)) * 2.0 + 1.0,
        init=_jit_init(model),
        train_apply=train_apply,
        train=jax.jit(train_apply),
    )


def test_batch_norm_train_updates_stats_eval_does_not(bn):
    variables = bn.init(_rngs(), bn.x)
    assert set(variables) == {"params", "batch_stats"}
    assert models.uses_batch_norm(bn.model)

    _, updates = bn.train(variables, bn.x, jax.random.key(5))
    before = variables["batch_stats"]
    after = updates["batch_stats"]
    # Every running variance moves; running means move where the batch mean is
    # not ~0 (BN after a linear layer fed by BN outputs sees zero-mean input).
    moved = jax.tree_util.tree_map_with_path(
        lambda path, old, new: not np.allclose(old, new), before, after
    )
    moved = {
        jax.tree_util.keystr(path): flag
        for path, flag in jax.tree_util.tree_leaves_with_path(moved)
    }
    assert moved["['ConvBNAct_0']['BatchNorm_0']['mean']"]
    variances = {k: flag for k, flag in moved.items() if k.endswith("['var']")}
    assert len(variances) == 52 and all(variances.values())

    eval_fn = jax.jit(
        lambda v: bn.model.apply(v, bn.x, train=False, mutable=["batch_stats"])
    )
    out1, eval_state = eval_fn(variables)
    out2, _ = eval_fn(variables)
    np.testing.assert_array_equal(out1, out2)
    jax.tree.map(np.testing.assert_array_equal, eval_state["batch_stats"], before)


def test_vmapped_members_keep_their_own_batch_stats(bn):
    members = 3
    per_member = [bn.init(_rngs(seed), bn.x) for seed in range(members)]
    variables = jax.tree.map(lambda *leaves: jnp.stack(leaves), *per_member)
    # Each member sees its own batch, as it would with its own data order.
    xs = bn.x[None] * jnp.arange(1.0, members + 1.0)[:, None, None, None, None]
    keys = jax.random.split(jax.random.key(6), members)

    logits, updates = jax.jit(jax.vmap(bn.train_apply))(variables, xs, keys)
    assert logits.shape == (members, 4, 10)
    stem_mean = updates["batch_stats"]["ConvBNAct_0"]["BatchNorm_0"]["mean"]
    assert stem_mean.shape[0] == members
    assert not np.allclose(stem_mean[0], stem_mean[1])
    assert not np.allclose(stem_mean[1], stem_mean[2])
    # Member 1 inside the vmapped program equals member 1 trained alone.
    solo_logits, solo_updates = bn.train(per_member[1], xs[1], keys[1])
    np.testing.assert_allclose(logits[1], solo_logits, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        stem_mean[1],
        solo_updates["batch_stats"]["ConvBNAct_0"]["BatchNorm_0"]["mean"],
        rtol=1e-4,
        atol=1e-6,
    )


def test_models_without_batch_norm_have_no_batch_stats():
    assert not models.uses_batch_norm(models.get_model("alexnet", num_classes=10))
    assert not models.uses_batch_norm(models.get_model("squeezenet1_0", num_classes=2))


def test_unknown_model_name_lists_available():
    with pytest.raises(ValueError, match="resnet50") as info:
        models.get_model("resnet50", num_classes=10)
    for name in models.available_models():
        assert name in str(info.value)


def test_unknown_kwarg_names_model_and_kwarg():
    with pytest.raises(TypeError, match="mobilenet_v2.*alpha.*width_mult"):
        models.get_model("mobilenet_v2", num_classes=10, alpha=0.5)
    assert models.model_kwargs("mobilenet_v1") == (
        "alpha",
        "dropout_rate",
        "small_input",
    )


@pytest.mark.parametrize(
    ("name", "kw", "match"),
    [
        ("alexnet_small", {"width": 0.0}, "alexnet_small: width"),
        ("alexnet", {"dropout_rate": 1.0}, "alexnet: dropout_rate"),
        ("mlp", {"hidden": (10, -1)}, "mlp: hidden"),
        ("simple_cnn", {"num_classes": 0}, "simple_cnn: num_classes"),
    ],
)
def test_bad_values_raise_before_tracing(name, kw, match):
    kw = {"num_classes": 10, **kw}
    with pytest.raises(ValueError, match=match):
        models.get_model(name, **kw)


def _reference_adaptive_avg_pool(x, out_h, out_w):
    """PyTorch's AdaptiveAvgPool2d on NHWC, written as loops."""
    n, h, w, c = x.shape
    out = np.zeros((n, out_h, out_w, c), x.dtype)
    for i in range(out_h):
        h0, h1 = (i * h) // out_h, -(-((i + 1) * h) // out_h)
        for j in range(out_w):
            w0, w1 = (j * w) // out_w, -(-((j + 1) * w) // out_w)
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("size", [3, 6, 7, 12, 13])
def test_adaptive_avg_pool_matches_pytorch_rule(size):
    x = np.random.default_rng(0).normal(size=(2, size, size + 1, 3)).astype(np.float32)
    np.testing.assert_allclose(
        layers.adaptive_avg_pool(jnp.asarray(x), (6, 6)),
        _reference_adaptive_avg_pool(x, 6, 6),
        rtol=1e-5,
        atol=1e-6,
    )


def test_ceil_mode_max_pool_sizes_and_values():
    # SqueezeNet 1.0 at 224 px: 109 -> 54 -> 27 -> 13 in ceil mode (torchvision);
    # floor mode would give 54 -> 26.
    sizes = [layers.pool_output_size(n, 3, 2, 0, True) for n in (109, 54, 27)]
    assert sizes == [54, 27, 13]
    assert layers.pool_output_size(54, 3, 2, 0, False) == 26
    x = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1) - 100.0
    pooled = layers.max_pool(x, 3, 2, ceil_mode=True)
    assert pooled.shape == (2, 3, 3, 1)
    # The last window covers only rows/cols 4..5: its max is the real corner
    # value, never a padding value.
    np.testing.assert_array_equal(pooled[:, -1, -1, 0], x[:, 5, 5, 0])
    np.testing.assert_array_equal(pooled[:, 0, 0, 0], x[:, 2, 2, 0])


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (28, 28)])
def test_pairwise_2x2_pool_equals_reduce_window(size, ceil_mode):
    from flax import linen as nn

    x = jax.random.normal(jax.random.PRNGKey(0), (2, *size, 3))  # no ties

    def reference(x):
        pads = [
            (
                0,
                max(
                    0, (layers.pool_output_size(n, 2, 2, 0, ceil_mode) - 1) * 2 + 2 - n
                ),
            )
            for n in size
        ]
        return nn.max_pool(x, (2, 2), (2, 2), padding=tuple(pads))

    def pool(x):
        return layers.max_pool(x, 2, 2, ceil_mode=ceil_mode)

    np.testing.assert_array_equal(pool(x), reference(x))
    g = jax.grad(lambda x: jnp.sum(jnp.sin(pool(x))))(x)
    g_ref = jax.grad(lambda x: jnp.sum(jnp.sin(reference(x))))(x)
    np.testing.assert_array_equal(g, g_ref)


def test_simple_cnn_batch_norm_swaps_conv_biases_for_bn_scale_and_offset():
    """BatchNorm after each convolution: the 32 + 64 conv biases go, a scale
    and an offset per channel come (2 x 96), and running statistics appear."""
    x = jnp.zeros((2, 28, 28, 1))
    counts = {}
    for name in ("simple_cnn", "simple_cnn_bn"):
        variables = jax.eval_shape(
            lambda x, n=name: models.get_model(n, num_classes=10).init(_rngs(), x), x
        )
        counts[name] = sum(v.size for v in jax.tree.leaves(variables["params"]))
        assert ("batch_stats" in variables) == (name == "simple_cnn_bn")
    assert counts["simple_cnn"] == 421_642
    assert counts["simple_cnn_bn"] == 421_642 - 96 + 2 * 96
    net = models.get_model("simple_cnn_bn", num_classes=10)
    assert models.uses_batch_norm(net, (1, 28, 28, 1))
