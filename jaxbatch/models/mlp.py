"""Multi-layer perceptron."""

from __future__ import annotations

import jax
from flax import linen as nn

from jaxbatch.models.layers import check_config, dense, flatten


class MLP(nn.Module):
    """Flatten, then `Dense(width) + ReLU` for each width in `hidden`, then a
    linear classifier.

    x: [batch, ...] (any trailing shape; flattened) -> logits [batch, num_classes].
    No dropout and no BatchNorm: `train` is accepted and ignored, and so is
    `small_input` (an MLP has no downsampling to reduce). Weights use PyTorch's
    `nn.Linear` default init.
    """

    num_classes: int
    hidden: tuple[int, ...] = (512, 512)
    small_input: bool = False

    def __post_init__(self) -> None:
        check_config("mlp", self.num_classes)
        widths = self.hidden
        if isinstance(widths, int) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths
        ):
            raise ValueError(
                f"mlp: hidden must be a tuple of positive ints, got hidden={widths!r}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # no dropout / batch norm
        x = flatten(x)
        for width in self.hidden:
            x = nn.relu(dense(x, width))
        return dense(x, self.num_classes)
