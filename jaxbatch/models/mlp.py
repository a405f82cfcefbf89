"""Multi-layer perceptron."""

from __future__ import annotations

import jax
from flax import linen as nn

from jaxbatch.models.layers import check_config, check_dropout, dense, dropout, flatten


class MLP(nn.Module):
    """Flatten, then `Dense(width) + ReLU` for each width in `hidden`, then a
    linear classifier.

    x: [batch, ...] (any trailing shape; flattened) -> logits [batch, num_classes].
    Dropout (`dropout_rate`, default 0: none) after each hidden ReLU, only
    with `train=True`; no BatchNorm; `small_input` is accepted and ignored (an
    MLP has no downsampling to reduce). Weights use PyTorch's `nn.Linear`
    default init.
    """

    num_classes: int
    hidden: tuple[int, ...] = (512, 512)
    dropout_rate: float = 0.0
    small_input: bool = False

    def __post_init__(self) -> None:
        check_config("mlp", self.num_classes)
        check_dropout("mlp", self.dropout_rate)
        widths = self.hidden
        if isinstance(widths, int) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths
        ):
            raise ValueError(
                f"mlp: hidden must be a tuple of positive ints, got hidden={widths!r}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, dropout_rate=None
    ) -> jax.Array:
        x = flatten(x)
        for width in self.hidden:
            x = nn.relu(dense(x, width))
            if dropout_rate is not None or self.dropout_rate:
                x = dropout(x, self.dropout_rate, dropout_rate, train=train)
        return dense(x, self.num_classes)
