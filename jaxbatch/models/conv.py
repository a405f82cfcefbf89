"""Convolutions that XLA:CPU runs fast, as a drop-in `lax.conv_general_dilated`.

XLA:CPU computes a dense KxK convolution near the machine's matmul peak, but
is slow at two kinds the model zoo is full of (measured on a 2-core AVX-512
Xeon, jax 0.10, batch 64; benchmarks/README.md):

- 1x1 (pointwise) convolutions, the bulk of SqueezeNet and MobileNet: the
  weight gradient of a 1x1 32->64 convolution at 28x28 takes 19 ms, the same
  product as a matrix multiplication 1.7 ms;
- depthwise convolutions (MobileNet): a 3x3 over 64 channels at 14x14 takes
  17 ms forward, 17 ms for the input gradient and 23 ms for the weight
  gradient, for 14 MFLOP; a stride-2 one 54 ms for its input gradient.

So, on the CPU backend:

- a 1x1 convolution is a matrix product ``x[:, ::s, ::s, :] @ w[0, 0]``;
- a depthwise convolution (groups = input channels = output channels) is
  ``sum over kernel taps (i, j) of tap_ij(x) * w[i, j, 0]``, where ``tap_ij(x)``
  is the padded input strided-sliced at offset (i, j): elementwise work (0.4,
  0.3 and 3.1 ms for the three directions above).

Gradients are what autodiff makes of these forms (products, pads, sums), and
the results equal XLA's convolutions up to float summation order (relative
differences ~1e-6 in float32). MobileNetV1 (alpha 0.25) trains 3x faster per
step on CPU. Dense KxK convolutions stay XLA's. Their weight gradient was
slow in YNNPACK, the library jaxlib 0.10 hands CPU convolutions to (3x3 32->64
at 14x14: 11.8 ms against 4 ms forward); `jaxbatch.xla_flags` turns YNNPACK
off for the models where XLA's own kernels win. Rewriting the weight gradient
as im2col plus one matrix product (a custom VJP) was 1.5-2.7x faster in
isolation but slower inside the models, with YNNPACK and without: the
concatenated taps cost more than the product saves (benchmarks/README.md).
Dilated, grouped (other than depthwise) and string-padded convolutions also
go to `lax.conv_general_dilated` unchanged.

Which form runs is decided when a function is traced: ``JAXBATCH_CONV=auto``
(default) uses these forms on the CPU backend only (cuDNN and the TPU compiler
have fast kernels of their own), ``fast`` everywhere, ``xla`` nowhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("auto", "fast", "xla")


def impl() -> str:
    """The convolution implementation ``JAXBATCH_CONV`` asks for, resolved."""
    name = os.environ.get("JAXBATCH_CONV", "auto")
    if name not in IMPLS:
        raise ValueError(f"JAXBATCH_CONV must be one of {IMPLS}, got {name!r}")
    if name == "auto":
        return "fast" if jax.default_backend() == "cpu" else "xla"
    return name


def _is_nhwc(dimension_numbers) -> bool:
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return tuple(dimension_numbers) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    return dimension_numbers is not None and tuple(dimension_numbers) == (
        "NHWC",
        "HWIO",
        "NHWC",
    )


def _pairs(padding) -> tuple[tuple[int, int], ...] | None:
    if isinstance(padding, str):
        return None
    pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
    return pairs if all(lo >= 0 and hi >= 0 for lo, hi in pairs) else None


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
) -> jax.Array:
    """`lax.conv_general_dilated`, in the fast forms above where they apply."""
    pads = _pairs(padding)
    plain = (
        lhs.ndim == 4
        and _is_nhwc(dimension_numbers)
        and pads is not None
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and batch_group_count == 1
        and preferred_element_type is None
    )
    if plain and impl() == "fast":
        strides = tuple(int(s) for s in window_strides)
        kh, kw, cin_per_group, cout = rhs.shape
        if feature_group_count == 1 and kh == kw == 1:
            return _pointwise(lhs, rhs, strides, pads, precision)
        if feature_group_count == lhs.shape[-1] == cout and cin_per_group == 1:
            return _depthwise(lhs, rhs, strides, pads)
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )


def _taps(x, kernel_hw, strides, pads):
    """``[(i, j, tap)]``: the padded input strided-sliced at every kernel offset,
    each ``[batch, out_h, out_w, C]`` (what kernel entry (i, j) multiplies)."""
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    (kh, kw), (sh, sw) = kernel_hw, strides
    ho = (xp.shape[1] - kh) // sh + 1
    wo = (xp.shape[2] - kw) // sw + 1
    b, c = x.shape[0], x.shape[-1]
    return [
        (
            i,
            j,
            lax.slice(
                xp,
                (0, i, j, 0),
                (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                (1, sh, sw, 1),
            ),
        )
        for i in range(kh)
        for j in range(kw)
    ]


def _pointwise(x, w, strides, pads, precision):
    """1x1 convolution: a matrix product over the channel axis."""
    ((_, _, tap),) = _taps(x, (1, 1), strides, pads)
    return jnp.matmul(tap, w[0, 0], precision=precision)


def _depthwise(x, w, strides, pads):
    """Depthwise convolution (one filter per channel) as a sum of scaled taps."""
    out = None
    for i, j, tap in _taps(x, w.shape[:2], strides, pads):
        term = tap * w[i, j, 0]
        out = term if out is None else out + term
    return out
