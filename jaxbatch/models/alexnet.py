"""AlexNet in torchvision's layout (`torchvision.models.alexnet`)."""

from __future__ import annotations

import jax
from flax import linen as nn

from jaxbatch.models.layers import (
    adaptive_avg_pool,
    check_config,
    check_dropout,
    conv,
    dense,
    dropout,
    flatten,
    max_pool,
)


class AlexNet(nn.Module):
    """torchvision's AlexNet (the one-GPU variant of Krizhevsky et al. 2012).

    features: conv 64 11x11/4 pad 2, ReLU, max-pool 3/2; conv 192 5x5 pad 2,
    ReLU, max-pool 3/2; conv 384 3x3, conv 256 3x3, conv 256 3x3 (pad 1, ReLU
    each); max-pool 3/2. Then adaptive average pool to 6x6 (identity at
    224x224), dropout, `Dense(4096)` + ReLU, dropout, `Dense(4096)` + ReLU,
    `Dense(num_classes)`. 61,100,840 parameters at 224x224x3 / 1000 classes.
    Dropout (`dropout_rate`, 0.5) only with `train=True`, "dropout" RNG.
    PyTorch default init (torchvision sets none of its own for AlexNet).

    `small_input=True` (28x28 / 32x32 images) changes only the stem: the
    11x11 stride-4 conv becomes a 3x3 stride-1 conv with padding 1 (still 64
    channels) and the max-pool after it is dropped. The later stages then see
    28/32 -> 13/15 -> 6/7 px, the same progression as ImageNet AlexNet's
    27 -> 13 -> 6; the 6x6 adaptive pool keeps the classifier (and so almost
    all of the 61M parameters) unchanged.

    x: [batch, H, W, C] -> logits [batch, num_classes]. Without `small_input`
    the input must be at least 63x63.
    """

    num_classes: int
    dropout_rate: float = 0.5
    small_input: bool = False

    def __post_init__(self) -> None:
        check_config("alexnet", self.num_classes)
        check_dropout("alexnet", self.dropout_rate)
        super().__post_init__()

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, dropout_rate=None
    ) -> jax.Array:
        if self.small_input:
            x = nn.relu(conv(x, 64, 3, stride=1, padding=1))
        else:
            x = nn.relu(conv(x, 64, 11, stride=4, padding=2))
            x = max_pool(x, 3, 2)
        x = nn.relu(conv(x, 192, 5, padding=2))
        x = max_pool(x, 3, 2)
        for channels in (384, 256, 256):
            x = nn.relu(conv(x, channels, 3, padding=1))
        x = max_pool(x, 3, 2)
        x = flatten(adaptive_avg_pool(x, (6, 6)))
        for units in (4096, 4096):
            x = dropout(x, self.dropout_rate, dropout_rate, train=train)
            x = nn.relu(dense(x, units))
        return dense(x, self.num_classes)
