"""What a sweep costs, known before it runs, and what its first epoch achieved.

:func:`member_step_cost` is XLA's cost analysis of one member's training step
(the lowered program, before any compilation: FLOPs and bytes accessed).
Times the steps and the members it is the FLOP count of a group, and of the
whole sweep; after the first epoch the achieved FLOP/s give the estimated
time of the rest. :func:`device_peak_flops` is the nominal peak of the
device in use, :data:`REFERENCE_DEVICES` the peaks used for the estimates on
other hardware (one H100, one TPU v2-8) at an assumed utilisation.

The count is of the arithmetic XLA is asked to do (convolutions and matrix
products dominate); one member's step is counted, so the member-axis strategy
(which XLA's analysis cannot see through a ``lax.map`` loop) does not change
it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence

import jax
from tqdm.auto import tqdm

from jaxbatch.engine.group import group_fns
from jaxbatch.engine.hparams import pad_members
from jaxbatch.engine.member_axis import member_multiple
from jaxbatch.engine.spec import TrainSpec
from jaxbatch.engine.step import train_step

# Nominal dense peaks (FLOP/s) for the estimates on other hardware. A float32
# sweep on an H100 runs its matrix products in TF32 (JAX's default precision
# on GPU); a TPU multiplies in bfloat16 passes. Sources: NVIDIA H100 SXM5 data
# sheet (TF32 dense 495 TFLOP/s), Google Cloud TPU v2 (45 TFLOP/s per chip,
# 4 chips = 8 cores in a v2-8).
REFERENCE_DEVICES = {
    "H100 SXM (TF32 dense)": 495e12,
    "TPU v2-8 (4 chips, bfloat16)": 180e12,
}
# The share of the peak a small-batch training step reaches on those devices:
# an assumption, stated wherever an estimate is printed (small convolutions and
# per-step evaluations keep real sweeps far from the peak).
ASSUMED_UTILISATION = 0.2

_GPU_PEAKS = {  # float32 / TF32 dense FLOP/s by device kind
    "H100": 495e12, "A100": 156e12, "L4": 60e12, "V100": 15.7e12, "T4": 8.1e12,
    "A10G": 31e12,
}  # fmt: skip
# Per jax device: one core of a v2/v3 chip, one chip of v4/v5 (megacore).
_TPU_PEAKS = {
    "TPU v2": 22.5e12, "TPU v3": 61.5e12, "TPU v4": 275e12, "TPU v5 lite": 197e12,
    "TPU v5": 459e12, "TPU v6 lite": 918e12,
}  # fmt: skip


def member_step_cost(
    spec: TrainSpec, state, hp: Mapping, data: Mapping
) -> dict[str, float]:
    """``{"flops", "bytes"}`` of one member's training step (no probes),
    from XLA's cost analysis of the lowered program. ``state`` and ``hp``
    have the member axis (shapes only are used: nothing is computed)."""
    plain = dataclasses.replace(spec, probes=())

    def one(tree):
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), tree)

    def step(s, h, d):
        return train_step(plain, s, h, d)

    cost = jax.jit(step).lower(one(state), one(hp), data).cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per program
        cost = cost[0] if cost else {}
    cost = cost or {}
    return {
        "flops": float(cost.get("flops", math.nan)),
        "bytes": float(cost.get("bytes accessed", math.nan)),
    }


def _cpu_peak() -> float:
    """Cores x clock x 32 FP32 FLOPs per cycle (two 8-wide FMA units; 64
    with Intel's AVX-512), from ``/proc/cpuinfo``; NaN where it cannot be
    read. A nominal figure: turbo clocks and the SIMD width XLA uses vary."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return math.nan
    mhz = [float(v) for v in re.findall(r"cpu MHz\s*:\s*([\d.]+)", text)]
    if not mhz:
        return math.nan
    # AMD's AVX-512 (Zen 4) runs on 256-bit units: 32 FLOPs per cycle
    intel512 = " avx512f" in text and "GenuineIntel" in text
    per_cycle = 64 if intel512 else 32 if " fma" in text else 8
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return cores * max(mhz) * 1e6 * per_cycle


def device_peak_flops(devices=None) -> tuple[float, str]:
    """``(nominal peak FLOP/s of the devices in use, what it assumes)``."""
    devices = devices or jax.devices()
    kind = devices[0].device_kind
    n = len(devices)
    if devices[0].platform == "cpu":
        return _cpu_peak(), "CPU cores x clock x FP32 FMA width (nominal)"
    table = _TPU_PEAKS if devices[0].platform == "tpu" else _GPU_PEAKS
    for name, peak in sorted(table.items(), key=lambda kv: -len(kv[0])):
        if name.lower() in kind.lower():
            return n * peak, f"{n} x {kind} (nominal dense peak)"
    return math.nan, f"{kind}: peak unknown"


def flops_text(flops: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9),
                        ("MFLOP", 1e6)):  # fmt: skip
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g} FLOP"


def seconds_text(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def estimates(total_flops: float) -> dict[str, float]:
    """Seconds for ``total_flops`` on each reference device at
    :data:`ASSUMED_UTILISATION` of its peak."""
    return {
        name: total_flops / (peak * ASSUMED_UTILISATION)
        for name, peak in REFERENCE_DEVICES.items()
    }


# --- the cost of a sweep --------------------------------------------------------------


def sweep_cost(plans: Sequence, train: Mapping) -> dict:
    """The sweep's cost before it runs: per group, XLA's FLOPs and bytes of
    one member's step (at the first epoch's batch size; other batch sizes
    scale it by their examples), times members and steps; the total; and
    the time it would take on the reference devices at the assumed
    utilisation."""
    out = []
    for g in plans:
        spec = dataclasses.replace(g.spec, strategy="vmap")
        hp, _ = pad_members(g.hp, member_multiple(spec))
        state = jax.eval_shape(group_fns(spec).init, hp)
        c = member_step_cost(spec, state, hp, train)
        # examples of the whole run, in units of the first batch size
        steps = float(g.step_batch_sizes().sum()) / g.batch_sizes[0]
        out.append({
            "group": g.index,
            "flops_per_member_step": c["flops"],
            "bytes_per_member_step": c["bytes"],
            "members": len(g.members),
            "shared": sum(len(m["listings"]) for m in g.members),
            "steps": g.total_steps,
            "flops": c["flops"] * len(g.members) * steps,
        })  # fmt: skip
    total = float(sum(g["flops"] for g in out))
    peak, assumes = device_peak_flops()
    return {
        "groups": out,
        "flops": total,
        "device_peak_flops": peak,
        "device_peak": assumes,
        "estimates_s": estimates(total),
        "assumed_utilisation": ASSUMED_UTILISATION,
    }


def cost_line(c: Mapping) -> str:
    """The cost in one line, as a run prints it before it trains."""
    est = ", ".join(f"{name} {seconds_text(s)}" for name, s in c["estimates_s"].items())
    return (
        f"cost: {flops_text(c['flops'])} in all (XLA cost analysis, "
        + "; ".join(
            f"group {g['group'] + 1}: {flops_text(g['flops_per_member_step'])}"
            f"/step x {g['members']} members"
            + (f" (+{g['shared']} sharing their training)" if g.get("shared") else "")
            + f" x {g['steps']} steps"
            for g in c["groups"]
        )
        + f"); at {c['assumed_utilisation']:.0%} of peak: {est}"
    )


def record_throughput(c: dict, group: int, achieved: float, epoch_s: float) -> None:
    """Into the cost ``c``: group ``group``'s achieved FLOP/s in its first
    epoch, their share of the device's peak, and (from the first group
    measured) the whole sweep's estimated time at that rate, printed."""
    g = c["groups"][group]
    g.update(achieved_flops=achieved, epoch_s=epoch_s)
    peak = c["device_peak_flops"]
    g["utilisation"] = achieved / peak if peak == peak else None
    if "estimated_s" not in c:  # from the first group measured
        c["estimated_s"] = c["flops"] / achieved
        tqdm.write(
            f"estimated time of the sweep at that rate: "
            f"{seconds_text(c['estimated_s'])}"
            + (f" ({g['utilisation']:.1%} of the nominal peak, {c['device_peak']})"
               if g["utilisation"] is not None else "")
        )  # fmt: skip


MEASURED = ("achieved_flops", "epoch_s", "utilisation")


def keep_measured(c: dict, saved: dict) -> None:
    """Into a resumed run's cost ``c``: the throughput its interrupted run
    measured (per group, and the sweep's estimate), which a resume does not
    measure again for the epochs already trained."""
    for g, old in zip(c.get("groups", []), saved.get("groups", [])):
        g.update({k: old[k] for k in MEASURED if k in old})
    if "estimated_s" in saved:
        c["estimated_s"] = saved["estimated_s"]
