"""The run directory: where a sweep may write, what it records about itself.

An ``--out`` is refused when it is a file, a foreign non-empty directory, or
a run that already started (without ``--resume``); ``--resume`` is refused
when the run was made with a different configuration, naming the
difference. ``config.json`` holds the resolved configuration, the versions
and devices, the data's sizes and the groups; one host writes, all train.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping

import jax
from jax.experimental import multihost_utils

from jaxbatch import __version__, results
from jaxbatch.config.sweep_config import SECTIONS, SweepConfig


def default_out(experiment: str) -> str:
    return os.path.join("runs", experiment, time.strftime("%Y%m%d-%H%M%S"))


def is_writer() -> bool:
    """Whether this host writes the results (one host writes; all train)."""
    return jax.process_index() == 0


def sync_hosts(name: str) -> None:
    """A barrier across hosts (nothing on a single host)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def environment() -> dict:
    """Versions and devices, recorded in ``config.json``."""
    devices = jax.devices()
    return {
        "jaxbatch": __version__,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def check_out(out: str, resume: bool) -> None:
    """Refuse an --out that is a file, a foreign non-empty directory, or a
    finished or started run without --resume."""
    config_path = os.path.join(out, "config.json")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file; give a directory")
    if resume:
        if not os.path.exists(config_path):
            raise ValueError(f"--resume: no run to resume in {out} (no config.json)")
        return
    if not os.path.isdir(out) or not os.listdir(out):
        return
    if not os.path.exists(config_path):
        raise ValueError(
            f"--out {out} is a non-empty directory that holds no jaxbatch run; "
            "choose an empty or new directory"
        )
    started = os.path.exists(os.path.join(out, "members.csv")) or os.path.isdir(
        os.path.join(out, "checkpoints")
    )
    if started:
        raise ValueError(
            f"{out} already holds a run; pass --resume to continue it or choose "
            "another --out"
        )
    # config.json alone: a run that stopped before training; start it afresh.


def check_resume(out: str, config: SweepConfig) -> None:
    """Refuse to resume a run made with another configuration, naming every
    field that differs."""
    path = os.path.join(out, "config.json")
    try:
        saved = results.read_json(path)["config"]
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"--resume: {path} is damaged ({err}); start a new --out"
        ) from None
    diff = _config_diff(_flat(saved), _flat(config.to_dict()))
    if diff:
        raise ValueError(
            f"--resume: the run in {out} was made with a different configuration: "
            + "; ".join(diff)
            + ". Resume with the same flags, or start a new --out."
        )


def _config_diff(saved: Mapping, current: Mapping) -> list[str]:
    keys = sorted(set(saved) | set(current))
    norm = lambda v: json.loads(json.dumps(v))  # noqa: E731 tuples vs lists
    return [
        f"{k}: {saved.get(k)!r} in the run, {current.get(k)!r} now"
        for k in keys
        if norm(saved.get(k)) != norm(current.get(k))
    ]


def _flat(d: Mapping) -> dict:
    """A nested config dict as ``section.field`` keys (for readable diffs)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and k in SECTIONS:
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def describe(config: SweepConfig, ds, plans) -> dict:
    """What ``config.json`` holds at the start of a run."""
    return {
        "config": config.to_dict(),
        "environment": environment(),
        "data": {
            "name": ds.name,
            "n_train": int(len(ds.x_train)),
            "n_val": int(len(ds.x_val)),
            "n_test": 0 if ds.x_test is None else int(len(ds.x_test)),
            "image_shape": list(ds.x_train.shape[1:]),
            "num_classes": ds.num_classes,
        },
        "groups": [
            {"group": g.index, "model": g.spec.model, "optimizer": g.spec.optimizer,
             "batch_sizes": sorted(set(g.batch_sizes), key=g.batch_sizes.index),
             "batch_size": g.spec.batch_size,
             "model_kwargs": dict(g.spec.model_kwargs),
             "steps_per_epoch": [int(s) for s in g.epoch_steps],
             "total_steps": g.total_steps,
             "members": [m["member"] for m in g.members]}
            for g in plans
        ],
    }  # fmt: skip


def update_json(path: str, **fields) -> None:
    """Set ``fields`` in ``config.json``, keeping what else was recorded there
    since (e.g. each group's measured strategy)."""
    saved = results.read_json(path)
    saved.update(fields)
    results.write_json(path, saved)
