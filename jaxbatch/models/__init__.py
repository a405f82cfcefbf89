"""The model zoo: Flax linen classifiers behind one registry.

    model = get_model("alexnet_small", num_classes=10, width=0.5)
    variables = model.init({"params": k1, "dropout": k2}, x, train=False)
    logits, updates = model.apply(
        variables, x, train=True, rngs={"dropout": k3}, mutable=["batch_stats"]
    )

Every model maps `x: [batch, H, W, C]` (float32, normalized) to
`logits: [batch, num_classes]` and takes `train` as a keyword: dropout draws
from the "dropout" RNG and BatchNorm uses batch statistics (and updates
"batch_stats") only when `train=True`; models without either ignore it. Every
model takes `small_input: bool`, which adapts ImageNet layouts to 28x28 / 32x32
images (see each class's docstring for exactly what changes). Layouts,
parameter counts and initializers follow torchvision, the PyTorch baseline
users compare against; `PARAM_COUNTS` holds the reference counts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxbatch.models.alexnet import AlexNet
from jaxbatch.models.cnn import AlexNetSmall, SimpleCNN, SimpleCNNBN
from jaxbatch.models.mlp import MLP
from jaxbatch.models.mobilenet import MobileNetV1, MobileNetV2
from jaxbatch.models.squeezenet import SqueezeNet1_0, SqueezeNet1_1

__all__ = [
    "MODELS",
    "PARAM_COUNTS",
    "available_models",
    "get_model",
    "model_kwargs",
    "param_count",
    "register_model",
    "uses_batch_norm",
]

MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "simple_cnn": SimpleCNN,
    "simple_cnn_bn": SimpleCNNBN,
    "alexnet_small": AlexNetSmall,
    "alexnet": AlexNet,
    "squeezenet1_0": SqueezeNet1_0,
    "squeezenet1_1": SqueezeNet1_1,
    "mobilenet_v1": MobileNetV1,
    "mobilenet_v2": MobileNetV2,
}

# Parameter counts at 224x224x3 input, 1000 classes, default widths: the
# torchvision counts (alexnet, squeezenets, mobilenet_v2) and Keras' trainable
# count for MobileNet v1 (BatchNorm scale + offset included, running stats not).
PARAM_COUNTS: dict[str, int] = {
    "alexnet": 61_100_840,
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
}

# Fields every linen Module has that are not model settings.
_LINEN_FIELDS = frozenset({"parent", "name"})


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a linen Module to the registry under `name`.

    The class must take `num_classes` and accept `train` as a keyword of
    `__call__`, like the built-in models.
    """

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        if "num_classes" not in _settings(cls):
            raise TypeError(f"{cls.__name__} has no num_classes field")
        MODELS[name] = cls
        return cls

    return register


def available_models() -> tuple[str, ...]:
    """Registered model names, sorted."""
    return tuple(sorted(MODELS))


def _settings(cls: type[nn.Module]) -> tuple[str, ...]:
    return tuple(
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.name not in _LINEN_FIELDS
    )


def _lookup(name: str) -> type[nn.Module]:
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model {name!r}; available: {', '.join(available_models())}"
        ) from None


def model_kwargs(name: str) -> tuple[str, ...]:
    """The keyword arguments `get_model(name, ...)` accepts besides num_classes."""
    return tuple(k for k in _settings(_lookup(name)) if k != "num_classes")


def get_model(name: str, /, *, num_classes: int, **kw) -> nn.Module:
    """The registered model `name` with `num_classes` outputs and settings `kw`.

    Raises ValueError for an unknown name (listing the available ones) or a bad
    value (naming the model and the setting), and TypeError for a keyword the
    model does not take (naming it and listing the accepted ones). Lists are
    turned into tuples so the module stays hashable.
    """
    cls = _lookup(name)
    accepted = model_kwargs(name)
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise TypeError(
            f"model {name!r} got unexpected keyword argument(s) "
            f"{', '.join(unknown)}; it accepts: {', '.join(accepted)}"
        )
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    return cls(num_classes=num_classes, **kw)


def _abstract_variables(module: nn.Module, input_shape: Sequence[int]) -> dict:
    """Shapes of `module.init(...)`'s variables, computed without allocating."""
    shape = tuple(input_shape)
    if len(shape) == 3:  # one [H, W, C] example
        shape = (1, *shape)
    key = jax.random.key(0)

    def init(x):
        return module.init({"params": key, "dropout": key}, x, train=False)

    return jax.eval_shape(init, jax.ShapeDtypeStruct(shape, jnp.float32))


def param_count(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Number of values in the "params" collection (BatchNorm running
    statistics excluded), via `jax.eval_shape` so nothing is allocated.

    input_shape: [batch, H, W, C] (or [H, W, C] for one example); only its
    trailing dimensions matter for the count.
    """
    params = _abstract_variables(module, input_shape)["params"]
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def uses_batch_norm(
    module: nn.Module, input_shape: Sequence[int] = (1, 224, 224, 3)
) -> bool:
    """Whether `module.init` creates a "batch_stats" collection, so training
    must pass `mutable=["batch_stats"]` and carry the returned statistics."""
    return "batch_stats" in _abstract_variables(module, input_shape)
