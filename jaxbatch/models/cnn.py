"""Small convolutional nets for 28x28 / 32x32 images: `simple_cnn`, `alexnet_small`."""

from __future__ import annotations

from typing import ClassVar

import jax
from flax import linen as nn

from jaxbatch.models.layers import (
    adaptive_avg_pool,
    batch_norm,
    check_config,
    check_dropout,
    conv,
    dense,
    dropout,
    flatten,
    kaiming_uniform_fan_in,
    max_pool,
    scale_width,
)


class SimpleCNN(nn.Module):
    """Two 3x3 convolutions (32, 64 channels × `width`, padding 1, ReLU, 2x2
    max-pool after each), `Dense(128 × width)` + ReLU, linear classifier.

    x: [batch, H, W, C] -> logits [batch, num_classes]. For 28x28 inputs the
    classifier sees 7x7x64 features; the dense layer grows with the image
    (at 224x224 it holds 25.7M weights). `small_input` is accepted and ignored:
    the net is a small-image layout already. `batch_norm`: a BatchNorm after
    each convolution (before its ReLU; the convolutions then have no bias),
    which is what `train` switches; otherwise `train` is ignored (no dropout).
    PyTorch default init.
    """

    num_classes: int
    width: float = 1.0
    small_input: bool = False
    batch_norm: bool = False

    def __post_init__(self) -> None:
        check_config("simple_cnn", self.num_classes, width=self.width)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        for channels in (32, 64):
            x = conv(x, scale_width(channels, self.width), 3, padding=1,
                     use_bias=not self.batch_norm)  # fmt: skip
            if self.batch_norm:
                x = batch_norm(x, train)
            x = max_pool(nn.relu(x), 2, 2)
        x = nn.relu(dense(flatten(x), scale_width(128, self.width)))
        return dense(x, self.num_classes)


class SimpleCNNBN(SimpleCNN):
    """`simple_cnn` with a BatchNorm after each convolution (`batch_norm=True`)."""

    batch_norm: bool = True


class AlexNetSmall(nn.Module):
    """AlexNet-style net for 28–32 px images.

    Five 3x3 convolutions (padding 1, ReLU) with AlexNet's channel progression
    64, 192, 384, 256, 256 scaled by `width` (0.25 -> 16, 48, 96, 64, 64);
    a 2x2 max-pool (ceil mode) after conv 1, conv 2 and conv 5, taking
    28 -> 14 -> 7 -> 4 and 32 -> 16 -> 8 -> 4; an adaptive average pool to 4x4
    (identity at 28 and 32 px, so other image sizes also work); then AlexNet's
    classifier: dropout, `Dense(1024 × width)` + ReLU, dropout,
    `Dense(512 × width)` + ReLU, linear output. Dropout (rate `dropout_rate`)
    is active only with `train=True` and draws from the "dropout" RNG.

    x: [batch, H, W, C] -> logits [batch, num_classes]. `small_input` is
    accepted and ignored: this is the small-image layout.

    Init: He (kaiming-uniform, fan_in, ReLU gain) weights and zero biases on
    every ReLU layer, PyTorch's default on the output layer. PyTorch's default
    (variance 1/(3 fan_in)) shrinks the signal ~0.6x per layer through eight
    layers, and with SGD at LR 0.01 the net then sat at chance for epochs on
    Fashion-MNIST; He init keeps the signal's scale and trains from step one.
    """

    num_classes: int
    width: float = 1.0
    dropout_rate: float = 0.5
    small_input: bool = True

    channels: ClassVar[tuple[int, ...]] = (64, 192, 384, 256, 256)
    hidden: ClassVar[tuple[int, ...]] = (1024, 512)
    pool_after: ClassVar[frozenset[int]] = frozenset({0, 1, 4})

    def __post_init__(self) -> None:
        check_config("alexnet_small", self.num_classes, width=self.width)
        check_dropout("alexnet_small", self.dropout_rate)
        super().__post_init__()

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, dropout_rate=None
    ) -> jax.Array:
        he = dict(kernel_init=kaiming_uniform_fan_in, bias_init=nn.initializers.zeros)
        for i, channels in enumerate(self.channels):
            x = nn.relu(conv(x, scale_width(channels, self.width), 3, padding=1, **he))
            if i in self.pool_after:
                x = max_pool(x, 2, 2, ceil_mode=True)
        x = flatten(adaptive_avg_pool(x, (4, 4)))
        for units in self.hidden:
            x = dropout(x, self.dropout_rate, dropout_rate, train=train)
            x = nn.relu(dense(x, scale_width(units, self.width), **he))
        return dense(x, self.num_classes)
