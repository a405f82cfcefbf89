"""Building blocks shared by the model zoo, in PyTorch's conventions.

The zoo mirrors torchvision layouts so that parameter counts, feature-map
shapes and initial weights match the PyTorch baseline users compare against:

- `conv` / `dense` use explicit symmetric padding (never "SAME") and, unless
  told otherwise, PyTorch's default init: weights and biases uniform in
  ±1/sqrt(fan_in) (what `nn.Conv2d`/`nn.Linear` do with kaiming_uniform(a=√5)).
- `max_pool` reproduces `nn.MaxPool2d` including `ceil_mode=True`.
- `adaptive_avg_pool` reproduces `nn.AdaptiveAvgPool2d`'s window rule.
- `batch_norm` is `nn.BatchNorm2d` with PyTorch's defaults (momentum 0.1 in
  PyTorch's convention is 0.9 in Flax's, epsilon 1e-5).

All functions take `x: [batch, H, W, C]` and must be called from inside a
`@nn.compact` method (the layers they create belong to the calling module).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxbatch.models import conv as fast_conv

Initializer = Callable[..., jax.Array]

# PyTorch's default weight init for Conv2d/Linear: kaiming_uniform(a=sqrt(5)),
# i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), whose variance is 1/(3 fan_in).
torch_default_kernel_init: Initializer = nn.initializers.variance_scaling(
    1.0 / 3.0, "fan_in", "uniform"
)
# torch.nn.init.kaiming_uniform_ / kaiming_normal_(mode="fan_out") with ReLU gain.
kaiming_uniform_fan_in: Initializer = nn.initializers.variance_scaling(
    2.0, "fan_in", "uniform"
)
kaiming_normal_fan_out: Initializer = nn.initializers.variance_scaling(
    2.0, "fan_out", "normal"
)


def torch_default_bias_init(fan_in: int) -> Initializer:
    """PyTorch's default bias init for a layer with `fan_in` inputs per output."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def conv(
    x: jax.Array,
    features: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    *,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init: Initializer | None = None,
    bias_init: Initializer | None = None,
    name: str | None = None,
) -> jax.Array:
    """`torch.nn.Conv2d(C, features, kernel, stride, padding, groups=groups)`.

    Computed by `jaxbatch.models.conv.conv_general_dilated`: on CPU, 1x1
    convolutions as matrix products and depthwise ones as sums of shifted
    slices (XLA:CPU is slow at both); XLA's own convolutions otherwise.
    """
    fan_in = (x.shape[-1] // groups) * kernel * kernel
    layer = nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        feature_group_count=groups,
        use_bias=use_bias,
        kernel_init=kernel_init or torch_default_kernel_init,
        bias_init=bias_init or torch_default_bias_init(fan_in),
        name=name,
        conv_general_dilated=fast_conv.conv_general_dilated,
    )
    return layer(x)


def dense(
    x: jax.Array,
    features: int,
    *,
    kernel_init: Initializer | None = None,
    bias_init: Initializer | None = None,
    name: str | None = None,
) -> jax.Array:
    """`torch.nn.Linear(x.shape[-1], features)`, PyTorch init unless overridden."""
    layer = nn.Dense(
        features,
        kernel_init=kernel_init or torch_default_kernel_init,
        bias_init=bias_init or torch_default_bias_init(x.shape[-1]),
        name=name,
    )
    return layer(x)


def batch_norm(x: jax.Array, train: bool, name: str | None = None) -> jax.Array:
    """`torch.nn.BatchNorm2d` defaults; batch statistics only when `train`."""
    layer = nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name
    )
    return layer(x)


def pool_output_size(n: int, kernel: int, stride: int, padding: int, ceil: bool) -> int:
    """Output length of `torch.nn.MaxPool2d` along one axis of length `n`."""
    span = n + 2 * padding - kernel
    if span < 0:
        raise ValueError(
            f"max_pool: window {kernel} larger than padded input {n + 2 * padding}"
        )
    out = (-(-span // stride) if ceil else span // stride) + 1
    # PyTorch: the last window must start inside the input or the left padding.
    if ceil and (out - 1) * stride >= n + padding:
        out -= 1
    return out


def max_pool(
    x: jax.Array,
    kernel: int,
    stride: int,
    padding: int = 0,
    *,
    ceil_mode: bool = False,
) -> jax.Array:
    """`torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)`.

    Ceil mode pads the bottom/right with -inf (Flax's max-pool pads with its
    init value), so the extra window sees only real values plus -inf.

    A 2x2 pool of stride 2 is computed as two pairwise maxima of a reshaped
    array: the same values, but its gradient is an elementwise select instead
    of XLA's `select_and_scatter`, which took 35% of a small CNN's training
    step on XLA:CPU (55 -> 35 ms per step measured). Gradients are equal except
    at exact ties, where a pairwise maximum splits the gradient between the two.
    """
    if kernel == stride == 2 and padding == 0:
        return _pairwise_max_pool_2x2(x, ceil_mode)
    pads = []
    for n in x.shape[1:3]:
        out = pool_output_size(n, kernel, stride, padding, ceil_mode)
        right = max(padding, (out - 1) * stride + kernel - n - padding)
        pads.append((padding, right))
    return nn.max_pool(x, (kernel, kernel), (stride, stride), padding=tuple(pads))


def _pairwise_max_pool_2x2(x: jax.Array, ceil_mode: bool) -> jax.Array:
    b, h, w, c = x.shape
    oh, ow = (pool_output_size(n, 2, 2, 0, ceil_mode) for n in (h, w))
    x = x[:, : 2 * oh, : 2 * ow]
    pad = ((0, 0), (0, 2 * oh - x.shape[1]), (0, 2 * ow - x.shape[2]), (0, 0))
    x = jnp.pad(x, pad, constant_values=-jnp.inf).reshape(b, oh, 2, ow, 2, c)
    x = jnp.maximum(x[:, :, 0], x[:, :, 1])
    return jnp.maximum(x[:, :, :, 0], x[:, :, :, 1])


def _adaptive_mean(x: jax.Array, axis: int, out: int) -> jax.Array:
    n = x.shape[axis]
    if n == out:
        return x
    if n % out == 0:
        shape = x.shape[:axis] + (out, n // out) + x.shape[axis + 1 :]
        return x.reshape(shape).mean(axis=axis + 1)
    # PyTorch's rule: window i covers [floor(i*n/out), ceil((i+1)*n/out)).
    parts = [
        jax.lax.slice_in_dim(x, (i * n) // out, -(-((i + 1) * n) // out), axis=axis)
        for i in range(out)
    ]
    return jnp.concatenate([p.mean(axis=axis, keepdims=True) for p in parts], axis)


def adaptive_avg_pool(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
    """`torch.nn.AdaptiveAvgPool2d(output_size)`: [B, H, W, C] -> [B, oh, ow, C].

    A window's mean is the mean over its rows of the means over its columns,
    so the two spatial axes are pooled one after the other.
    """
    x = _adaptive_mean(x, 1, output_size[0])
    return _adaptive_mean(x, 2, output_size[1])


def global_avg_pool(x: jax.Array) -> jax.Array:
    """[batch, H, W, C] -> [batch, C]."""
    return x.mean(axis=(1, 2))


def flatten(x: jax.Array) -> jax.Array:
    """[batch, ...] -> [batch, features] (NHWC order, unlike PyTorch's NCHW)."""
    return x.reshape((x.shape[0], -1))


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's `_make_divisible`: round `v` to a multiple of `divisor`,
    never going below `min_value` or more than 10% below `v`."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def scale_width(channels: int, width: float) -> int:
    """`channels * width` rounded to the nearest integer, at least 1."""
    return max(1, round(channels * width))


def check_config(model: str, num_classes: int, **positive: float) -> None:
    """Raise ValueError naming `model` for a bad `num_classes` or a value in
    `positive` that is not > 0."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"{model}: num_classes must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"{model}: num_classes must be >= 1, got {num_classes=}")
    for key, value in positive.items():
        if not value > 0:
            raise ValueError(f"{model}: {key} must be > 0, got {key}={value!r}")


def check_dropout(model: str, rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{model}: dropout_rate must be in [0, 1), got {rate!r}")


class Dropout(nn.Module):
    """Dropout whose rate is a traced value (a member's hyperparameter), the
    computation of ``flax.linen.Dropout`` with the same module names and
    random stream: at a rate given as data it equals ``nn.Dropout`` at that
    rate as a Python number, and rate 0 passes the inputs through
    unchanged (every element kept, divided by 1)."""

    @nn.compact
    def __call__(self, x: jax.Array, rate, *, deterministic: bool) -> jax.Array:
        if deterministic:
            return x
        keep = 1.0 - jnp.asarray(rate, jnp.float32)
        mask = jax.random.bernoulli(self.make_rng("dropout"), p=keep, shape=x.shape)
        return jax.lax.select(mask, x / keep.astype(x.dtype), jnp.zeros_like(x))


def dropout(x: jax.Array, static_rate: float, rate, *, train: bool) -> jax.Array:
    """``nn.Dropout(static_rate)`` (the model's own, a program constant), or
    with ``rate`` given (a traced per-member value) :class:`Dropout`."""
    if rate is None:
        return nn.Dropout(static_rate, deterministic=not train)(x)
    return Dropout()(x, rate, deterministic=not train)
