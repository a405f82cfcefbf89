"""The names a sweep chooses from: member-axis strategies, precisions, probes.

Plain Python, no JAX: the configuration validates against these names and the
engine reads them, so both depend on this vocabulary and neither on the other.
"""

from __future__ import annotations

from collections.abc import Sequence

STRATEGIES = ("vmap", "map", "unroll", "loop", "chunk:N", "auto")
PRECISIONS = ("float32", "bfloat16")
CONTROL_METRICS = ("val_loss", "val_acc")

# Probes by cadence: every (probed) step, every evaluation, the final parameters.
STEP_PROBES = ("update_ratio", "grad_norm", "param_norm")
EVAL_PROBES = ("noise_scale",)
FINAL_PROBES = ("sharpness", "weights")
PROBES = STEP_PROBES + EVAL_PROBES + FINAL_PROBES
NOISE_PARTS = 16  # the small batch of the noise-scale estimate: probe_size / 16


def parse_strategy(strategy: str) -> tuple[str, int]:
    """``"vmap" -> ("vmap", 0)``, ``"chunk:4" -> ("chunk", 4)``; raises on others."""
    if strategy in ("vmap", "map", "unroll", "loop", "auto"):
        return strategy, 0
    if strategy.startswith("chunk:"):
        n = strategy.split(":", 1)[1]
        if n.isdigit() and int(n) > 0:
            return "chunk", int(n)
    raise ValueError(
        f"unknown strategy {strategy!r}; use 'auto', 'vmap', 'map', 'unroll', "
        "'loop' or 'chunk:N' with N >= 1"
    )


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def check_control_metric(metric: str) -> None:
    if metric not in CONTROL_METRICS:
        raise ValueError(
            f"control_metric must be 'val_loss' or 'val_acc', got {metric!r}"
        )


def check_probes(names: Sequence[str]) -> tuple[str, ...]:
    """The probe names, validated (an unknown one names the choices)."""
    for name in names:
        if name not in PROBES:
            raise ValueError(f"unknown probe {name!r}; choose from {', '.join(PROBES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"probes lists a name twice: {list(names)}")
    return tuple(names)
