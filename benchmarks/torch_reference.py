"""PyTorch twins of jaxbatch's small models and its training step: the baseline.

Users compare jaxbatch against the PyTorch loop they would otherwise write, so
this is that loop, kept as plain as possible: the model in NCHW, the training
set preloaded as a uint8 tensor, each step a slice of a per-epoch permutation
turned into floats, cross-entropy, ``torch.optim.SGD`` with momentum.

    model = make_model("simple_cnn", num_classes=10, image_shape=(28, 28, 1))
    losses = train_steps(model, x, y, steps=50, batch_size=64, lr=0.01, momentum=0.9)

The layouts mirror ``jaxbatch.models`` (``mlp``, ``simple_cnn``,
``alexnet_small``) layer for layer, so parameter counts match exactly
(tests/test_benchmark.py checks it). PyTorch is an optional extra
(``pip install 'jaxbatch[bench]'``); the library never imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

MODELS = ("mlp", "simple_cnn", "alexnet_small")


def _scale(channels: int, width: float) -> int:
    """jaxbatch's ``scale_width``: ``channels * width`` rounded, at least 1."""
    return max(1, round(channels * width))


def _he_init(layer: nn.Module) -> nn.Module:
    """alexnet_small's init for ReLU layers: kaiming-uniform (fan_in), zero bias."""
    nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(num_classes: int, in_features: int, hidden: Sequence[int] = (512, 512)):
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    return nn.Sequential(*layers, nn.Linear(in_features, num_classes))


def _simple_cnn(num_classes: int, channels: int, flat: int, width: float = 1.0):
    c1, c2, hidden = _scale(32, width), _scale(64, width), _scale(128, width)
    return nn.Sequential(
        nn.Conv2d(channels, c1, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(c2 * flat, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def _alexnet_small(
    num_classes: int, channels: int, width: float = 1.0, dropout_rate: float = 0.5
):
    layers: list[nn.Module] = []
    in_ch = channels
    for i, out in enumerate(_scale(c, width) for c in (64, 192, 384, 256, 256)):
        layers += [_he_init(nn.Conv2d(in_ch, out, 3, padding=1)), nn.ReLU()]
        if i in (0, 1, 4):
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        in_ch = out
    layers += [nn.AdaptiveAvgPool2d((4, 4)), nn.Flatten()]
    in_features = in_ch * 16
    for units in (1024, 512):
        units = _scale(units, width)
        layers += [
            nn.Dropout(dropout_rate),
            _he_init(nn.Linear(in_features, units)),
            nn.ReLU(),
        ]
        in_features = units
    return nn.Sequential(*layers, nn.Linear(in_features, num_classes))


def make_model(
    name: str,
    num_classes: int,
    image_shape: tuple[int, int, int] = (28, 28, 1),
    **kw,
) -> nn.Module:
    """The PyTorch twin of ``jaxbatch.models.get_model(name, ...)``.

    image_shape: ``(H, W, C)`` as in jaxbatch; the model itself takes NCHW.
    kw: the jaxbatch model's settings (``hidden`` for mlp, ``width`` for the
    CNNs, ``dropout_rate`` for alexnet_small); ``small_input`` is accepted and
    ignored, as in jaxbatch.
    """
    kw.pop("small_input", None)
    h, w, c = image_shape
    if name == "mlp":
        return _mlp(num_classes, h * w * c, **kw)
    if name == "simple_cnn":
        return _simple_cnn(num_classes, c, (h // 4) * (w // 4), **kw)
    if name == "alexnet_small":
        return _alexnet_small(num_classes, c, **kw)
    raise ValueError(f"no PyTorch reference for model {name!r}; have {MODELS}")


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def make_optimizer(model: nn.Module, lr: float, momentum: float):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)


def train_steps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    momentum: float,
    *,
    mean: float | torch.Tensor = 0.0,
    std: float | torch.Tensor = 1.0,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
) -> torch.Tensor:
    """``steps`` SGD steps on batches sliced from a per-epoch permutation.

    x: ``[n, C, H, W]`` uint8 (preloaded); y: ``[n]`` int64; mean, std: scalars
    or ``[1, C, 1, 1]``, applied to ``x / 255`` as jaxbatch does. Pass
    ``optimizer`` (from :func:`make_optimizer`) to keep the momentum buffers
    across calls. Returns the losses ``[steps]``.
    """
    if batch_size > len(x):
        raise ValueError(f"batch_size {batch_size} > {len(x)} training examples")
    opt = optimizer or make_optimizer(model, lr, momentum)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    per_epoch = len(x) // batch_size
    model.train()
    losses = []
    perm = None
    for step in range(steps):
        pos = step % per_epoch
        if pos == 0:
            perm = torch.randperm(len(x), generator=gen)
        idx = perm[pos * batch_size : (pos + 1) * batch_size]
        xb = (x[idx].float() / 255.0 - mean) / std
        loss = loss_fn(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses) if losses else torch.zeros(0)
