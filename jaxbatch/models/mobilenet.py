"""MobileNet v1 (Howard et al. 2017) and v2 (torchvision's `mobilenet_v2`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import jax
from flax import linen as nn

from jaxbatch.models.layers import (
    batch_norm,
    check_config,
    check_dropout,
    conv,
    dense,
    global_avg_pool,
    kaiming_normal_fan_out,
    make_divisible,
)

_classifier_init = nn.initializers.normal(stddev=0.01)
_zeros = nn.initializers.zeros


class ConvBNAct(nn.Module):
    """Conv (no bias, padding (kernel-1)//2) + BatchNorm + optional activation,
    torchvision's `Conv2dNormActivation`. `groups=C` makes it depthwise."""

    features: int
    kernel: int = 3
    stride: int = 1
    groups: int = 1
    act: Callable[[jax.Array], jax.Array] | None = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = conv(
            x,
            self.features,
            self.kernel,
            self.stride,
            (self.kernel - 1) // 2,
            groups=self.groups,
            use_bias=False,
            kernel_init=kaiming_normal_fan_out,
        )
        x = batch_norm(x, train)
        return x if self.act is None else self.act(x)


class MobileNetV1(nn.Module):
    """MobileNet v1: a 3x3/2 conv with 32 channels, then 13 depthwise-separable
    blocks (3x3 depthwise conv + 1x1 pointwise conv, each without bias and
    followed by BatchNorm + ReLU) with output channels / strides
    64/1, 128/2, 128/1, 256/2, 256/1, 512/2, 5 × 512/1, 1024/2, 1024/1
    (Table 1 of the paper), global average pool, dropout (`dropout_rate`,
    default 0.001 as in Keras' MobileNet; only with `train=True`, "dropout"
    RNG), and a 1x1 conv WITH bias as classifier.

    Channels are `int(c * alpha)` (Keras' rule). 4,231,976 parameters at
    224x224x3 / 1000 classes / alpha 1 (BatchNorm scale and offset counted,
    running statistics not): Keras' trainable count. Convs use kaiming-normal
    (fan_out) init, the classifier N(0, 0.01), as torchvision's MobileNets do.
    ReLU, as in the paper (Keras uses ReLU6).

    `small_input=True` (28x28 / 32x32 images) makes the stem conv stride 1,
    so the net downsamples 16x instead of 32x (32 px -> 2x2 at the pool), as
    the common CIFAR MobileNet does.

    x: [batch, H, W, C] -> logits [batch, num_classes].
    """

    num_classes: int
    alpha: float = 1.0
    dropout_rate: float = 1e-3
    small_input: bool = False

    blocks: ClassVar[tuple[tuple[int, int], ...]] = (
        (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
        (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_config("mobilenet_v1", self.num_classes, alpha=self.alpha)
        check_dropout("mobilenet_v1", self.dropout_rate)
        if int(32 * self.alpha) < 1:
            raise ValueError(f"mobilenet_v1: alpha too small, got alpha={self.alpha}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        stem_stride = 1 if self.small_input else 2
        x = ConvBNAct(int(32 * self.alpha), 3, stem_stride)(x, train)
        for channels, stride in self.blocks:
            in_channels = x.shape[-1]
            x = ConvBNAct(in_channels, 3, stride, groups=in_channels)(x, train)
            x = ConvBNAct(int(channels * self.alpha), 1)(x, train)
        x = global_avg_pool(x)[:, None, None, :]
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = conv(x, self.num_classes, 1, kernel_init=_classifier_init, bias_init=_zeros)
        return x.reshape((x.shape[0], self.num_classes))


class InvertedResidual(nn.Module):
    """MobileNet v2 block: 1x1 expand (skipped when `expand_ratio == 1`),
    3x3 depthwise with `stride`, 1x1 linear projection to `features`; ReLU6
    after the first two; residual when stride 1 and channels unchanged."""

    features: int
    stride: int
    expand_ratio: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        in_channels = x.shape[-1]
        hidden = int(round(in_channels * self.expand_ratio))
        y = x
        if self.expand_ratio != 1:
            y = ConvBNAct(hidden, 1, act=nn.relu6)(y, train)
        y = ConvBNAct(hidden, 3, self.stride, groups=hidden, act=nn.relu6)(y, train)
        y = ConvBNAct(self.features, 1, act=None)(y, train)
        if self.stride == 1 and in_channels == self.features:
            return x + y
        return y


class MobileNetV2(nn.Module):
    """torchvision's MobileNet v2 (Sandler et al. 2018).

    Stem 3x3/2 conv (32 channels) + BN + ReLU6; inverted-residual stages
    (t, c, n, s) = (1,16,1,1), (6,24,2,2), (6,32,3,2), (6,64,4,2), (6,96,3,1),
    (6,160,3,2), (6,320,1,1); 1x1 conv to 1280 + BN + ReLU6; global average
    pool; dropout (`dropout_rate`, 0.2; only with `train=True`, "dropout" RNG);
    linear classifier. Channels are `c * width_mult` rounded by torchvision's
    `_make_divisible(., 8)`; the last conv keeps 1280 for `width_mult <= 1`.
    3,504,872 parameters at 224x224x3 / 1000 classes / width_mult 1. Init as
    torchvision: kaiming-normal (fan_out) convs, BN scale 1 / offset 0,
    classifier N(0, 0.01) with zero bias.

    `small_input=True` (28x28 / 32x32 images) makes the stem conv stride 1 and
    the first stride-2 stage (t=6, c=24) stride 1, so the net downsamples 8x
    instead of 32x (32 px -> 4x4 at the pool), as the common CIFAR MobileNetV2.

    x: [batch, H, W, C] -> logits [batch, num_classes].
    """

    num_classes: int
    width_mult: float = 1.0
    dropout_rate: float = 0.2
    small_input: bool = False

    stages: ClassVar[tuple[tuple[int, int, int, int], ...]] = (
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_config("mobilenet_v2", self.num_classes, width_mult=self.width_mult)
        check_dropout("mobilenet_v2", self.dropout_rate)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        stem = make_divisible(32 * self.width_mult)
        last = make_divisible(1280 * max(1.0, self.width_mult))
        x = ConvBNAct(stem, 3, 1 if self.small_input else 2, act=nn.relu6)(x, train)
        for index, (t, c, n, s) in enumerate(self.stages):
            if self.small_input and index == 1:
                s = 1
            features = make_divisible(c * self.width_mult)
            for i in range(n):
                x = InvertedResidual(features, s if i == 0 else 1, t)(x, train)
        x = ConvBNAct(last, 1, act=nn.relu6)(x, train)
        x = global_avg_pool(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return dense(
            x, self.num_classes, kernel_init=_classifier_init, bias_init=_zeros
        )
