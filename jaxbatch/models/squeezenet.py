"""SqueezeNet 1.0 and 1.1 in torchvision's layout (`torchvision.models.squeezenet`)."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxbatch.models.layers import (
    check_config,
    check_dropout,
    conv,
    global_avg_pool,
    kaiming_uniform_fan_in,
    max_pool,
)

_zeros = nn.initializers.zeros
# "M" is a 3x3/2 ceil-mode max-pool; a tuple is Fire(squeeze, expand1x1, expand3x3).
_LAYOUTS = {
    "1_0": ("M", (16, 64, 64), (16, 64, 64), (32, 128, 128), "M", (32, 128, 128),
            (48, 192, 192), (48, 192, 192), (64, 256, 256), "M", (64, 256, 256)),
    "1_1": ("M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128),
            "M", (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)),
}  # fmt: skip
# Stem conv per version: (channels, kernel, stride) as torchvision has it.
_STEMS = {"1_0": (96, 7, 2), "1_1": (64, 3, 2)}


class Fire(nn.Module):
    """1x1 squeeze conv + ReLU, then 1x1 and 3x3 (pad 1) expand convs + ReLU,
    concatenated along channels: [B, H, W, C] -> [B, H, W, expand1x1 + expand3x3]."""

    squeeze: int
    expand1x1: int
    expand3x3: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = dict(kernel_init=kaiming_uniform_fan_in, bias_init=_zeros)
        x = nn.relu(conv(x, self.squeeze, 1, **init))
        left = nn.relu(conv(x, self.expand1x1, 1, **init))
        right = nn.relu(conv(x, self.expand3x3, 3, padding=1, **init))
        return jnp.concatenate([left, right], axis=-1)


class _SqueezeNet(nn.Module):
    """SqueezeNet (Iandola et al. 2016), torchvision layout.

    Stem conv (no padding) + ReLU, Fire modules with 3x3/2 max-pools in ceil
    mode (as torchvision's `ceil_mode=True`), then the classifier: dropout
    (`dropout_rate`, 0.5; only with `train=True`, "dropout" RNG), a 1x1 conv to
    `num_classes`, ReLU (torchvision keeps it, so logits are >= 0), global
    average pool. Init as torchvision: kaiming-uniform convs, the final conv
    N(0, 0.01), zero biases.

    `small_input=True` (28x28 / 32x32 images) changes only the stem conv: 3x3,
    stride 1, padding 1 (same channel count) instead of 7x7/2 (1.0) or 3x3/2
    (1.1). The three max-pools stay, so 32 px -> 16 -> 8 -> 4 and
    28 px -> 14 -> 7 -> 3 at the classifier.

    x: [batch, H, W, C] -> logits [batch, num_classes].
    """

    num_classes: int
    dropout_rate: float = 0.5
    small_input: bool = False

    version: ClassVar[str]

    def __post_init__(self) -> None:
        check_config(f"squeezenet{self.version}", self.num_classes)
        check_dropout(f"squeezenet{self.version}", self.dropout_rate)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        channels, kernel, stride = _STEMS[self.version]
        if self.small_input:
            kernel, stride, padding = 3, 1, 1
        else:
            padding = 0
        x = conv(
            x,
            channels,
            kernel,
            stride,
            padding,
            kernel_init=kaiming_uniform_fan_in,
            bias_init=_zeros,
        )
        x = nn.relu(x)
        for layer in _LAYOUTS[self.version]:
            if layer == "M":
                x = max_pool(x, 3, 2, ceil_mode=True)
            else:
                x = Fire(*layer)(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        final_init = nn.initializers.normal(stddev=0.01)
        x = nn.relu(
            conv(x, self.num_classes, 1, kernel_init=final_init, bias_init=_zeros)
        )
        return global_avg_pool(x)


class SqueezeNet1_0(_SqueezeNet):
    __doc__ = _SqueezeNet.__doc__
    version: ClassVar[str] = "1_0"


class SqueezeNet1_1(_SqueezeNet):
    __doc__ = _SqueezeNet.__doc__
    version: ClassVar[str] = "1_1"
