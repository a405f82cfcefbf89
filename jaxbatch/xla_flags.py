"""XLA:CPU settings chosen from the models a run trains, before JAX starts.

XLA:CPU (jaxlib 0.10) hands convolutions and matrix products to the YNNPACK
library by default. For most of the model zoo that is the slower path: its
convolution weight gradients are where a CPU step loses to PyTorch (conv 2 of
``simple_cnn``, 3x3 32->64 at 14x14, batch 64: 11.8 ms of a 27 ms step).
Turning the YNNPACK fusions off (``--xla_cpu_experimental_ynn_fusion_type=``,
XLA's own Eigen kernels instead) measured, one member at batch 64 on a 2-core
AVX-512 Xeon (benchmarks/README.md):

==================  ==========  ==========
model               YNNPACK     off
==================  ==========  ==========
simple_cnn          27-28 ms    18-21 ms
alexnet_small w0.5  84-94 ms    86 ms
squeezenet1_1       193 ms      155 ms
mlp 784-100-10      0.50 ms     0.30-0.38 ms
mobilenet_v1 a0.5   173 ms      224 ms
mobilenet_v2 w0.5   960 ms      1149 ms
==================  ==========  ==========

So the fusions go off unless a run trains a model that is faster with them
(the MobileNets, whose depthwise blocks XLA's own kernels run slower). The
flag is process-wide and read once, when JAX starts its CPU backend; hence
:func:`configure` must run before the first computation, and does nothing
(returning False) when the backend has already started, when ``XLA_FLAGS``
already sets the flag (the user's choice wins), when this jaxlib does not know
the flag (an unknown flag in ``XLA_FLAGS`` aborts the process), or, for the
YNNPACK choice, when ``JAXBATCH_XLA_DEFAULTS=0``. It only affects XLA:CPU;
GPU and TPU programs compile as before (with ``devices > 1`` the host also
gets that many CPU devices, which a GPU or TPU run does not use).
"""

from __future__ import annotations

import functools
import mmap
import os
import pathlib
from collections.abc import Iterable

YNN_FLAG = "xla_cpu_experimental_ynn_fusion_type"
HOST_DEVICES_FLAG = "xla_force_host_platform_device_count"
# Models whose step is faster with the YNNPACK fusions on (measured; see above).
PREFER_YNN = frozenset({"mobilenet_v1", "mobilenet_v2"})


@functools.cache
def flag_known(name: str) -> bool:
    """Whether the installed jaxlib defines XLA flag ``name`` (its shared
    libraries hold the flag's name)."""
    try:
        import jaxlib
    except ImportError:
        return False
    needle = name.encode()
    for path in pathlib.Path(jaxlib.__file__).parent.rglob("*.so*"):
        try:
            with (
                open(path, "rb") as f,
                mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm,
            ):
                if mm.find(needle) >= 0:
                    return True
        except (OSError, ValueError):
            continue
    return False


def backend_started() -> bool:
    """Whether JAX has started a backend (XLA_FLAGS are read by then)."""
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - layout of a future jax
        return True
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if started is not None else True


def wanted(model_names: Iterable[str], devices: int = 1) -> dict[str, str]:
    """The XLA:CPU flags a run of these models should use: ``{flag: value}``.

    ``devices > 1`` (members split over that many devices) also makes the CPU
    that many devices, so that ``--devices 2`` works on a CPU-only machine and
    each core runs its own block of members (16 ``simple_cnn`` members at
    batch 64: 0.70x -> 0.86x the throughput of 16 sequential PyTorch runs).
    """
    names = set(model_names)
    flags = {YNN_FLAG: ""} if names and not names & PREFER_YNN else {}
    if devices > 1:
        flags[HOST_DEVICES_FLAG] = str(devices)
    return flags


def configure(model_names: Iterable[str], environ=None, *, devices: int = 1) -> bool:
    """Add the flags :func:`wanted` names to ``XLA_FLAGS`` (see the module
    docstring for when it does nothing; ``JAXBATCH_XLA_DEFAULTS=0`` keeps the
    devices and drops only the speed settings); returns whether it changed them."""
    environ = os.environ if environ is None else environ
    if backend_started():
        return False
    want = wanted(model_names, devices)
    if environ.get("JAXBATCH_XLA_DEFAULTS", "1") == "0":
        want.pop(YNN_FLAG, None)
    flags = environ.get("XLA_FLAGS", "")
    added = [
        f"--{name}={value}"
        for name, value in want.items()
        if f"--{name}" not in flags and flag_known(name)
    ]
    if added:
        environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()
    return bool(added)
