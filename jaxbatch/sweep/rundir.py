"""The run directory: where a sweep may write, what it records about itself.

An ``--out`` is refused when it is a file, a foreign non-empty directory, or
a run that already started (without ``--resume``); ``--resume`` is refused
when the run was made with a different configuration, naming the
difference. ``config.json`` holds the resolved configuration, the versions
and devices, the data's sizes, image shape, normalisation statistics and
class names, and the groups; one host writes, all train.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import functools
import json
import os
import platform
import socket
import time
from collections.abc import Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxbatch import __version__, results
from jaxbatch.config.schema import EVAL_EVERY, PLATEAU_PATIENCE
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


LOCK = ".jaxbatch.lock"  # held by the process writing the run; not a result


class RunLock:
    """An exclusive lock on a run directory for the whole of a run, so that a
    second process cannot write into it. It is an ``flock`` on
    ``<out>/.jaxbatch.lock``: the kernel drops it when its process ends, however
    it ends, so a run killed with SIGKILL leaves no lock that blocks
    ``--resume``. The file names the holder (pid, host) for the refusal."""

    def __init__(self, out: str):
        results.makedirs(out)
        path = os.path.join(out, LOCK)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip()
            os.close(self.fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise ValueError(
                f"{out} is being written by another run ({holder or 'unknown'}); "
                "wait for it to finish, or choose another --out"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _entries(out: str) -> list[str]:
    return [n for n in os.listdir(out) if n not in (LOCK, "command.json")]


def check_out(out: str, resume: bool) -> None:
    """Refuse an --out that is a file, a foreign non-empty directory, or a
    finished or started run without --resume."""
    config_path = os.path.join(out, "config.json")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file; give a directory")
    up = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(up):
        up = os.path.dirname(up)
    if not os.path.isdir(up):
        raise ValueError(f"--out {out}: {up} is a file, not a folder; give a directory")
    if resume:
        if not os.path.exists(config_path):
            raise ValueError(f"--resume: no run to resume in {out} (no config.json)")
        return
    if not os.path.isdir(out) or not _entries(out):
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


# Settings that change how a run goes, never its numbers: a resume may change them.
NO_RESULT = ("execution.compile_cache",)
# Defaults that became None (unset: the same value), so that a run made before
# resumes: its config.json holds the value, a config now None.
WAS_DEFAULT = {
    "evaluation.eval_every": EVAL_EVERY,
    "control.plateau_patience": PLATEAU_PATIENCE,
}


def _config_diff(saved: Mapping, current: Mapping) -> list[str]:
    current = {**current, **{
        k: v for k, v in WAS_DEFAULT.items()
        if current.get(k) is None and saved.get(k) == v
    }}  # fmt: skip
    # A setting added since the run was made is equal where it is at its default.
    defaults = _defaults()
    saved = {**{k: defaults[k] for k in current
                if k not in saved and k in defaults}, **saved}  # fmt: skip
    keys = sorted((set(saved) | set(current)) - set(NO_RESULT))
    norm = lambda v: json.loads(json.dumps(v))  # noqa: E731 tuples vs lists
    return [
        f"{k}: {saved.get(k)!r} in the run, {current.get(k)!r} now"
        for k in keys
        if norm(saved.get(k)) != norm(current.get(k))
    ]


@functools.cache
def _defaults() -> dict:
    """Every setting's default, as ``section.field`` keys."""
    return _flat(
        {section: {f.name: f.default for f in dataclasses.fields(cls)
                   if f.default is not dataclasses.MISSING}
         for section, cls in SECTIONS.items()}
    )  # fmt: skip


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
            **data_stats(ds),
        },
        "groups": [
            {"group": g.index, "model": g.spec.model, "optimizer": g.spec.optimizer,
             "batch_sizes": sorted(set(g.batch_sizes), key=g.batch_sizes.index),
             "batch_size": g.spec.batch_size,
             "model_kwargs": dict(g.spec.model_kwargs),
             "steps_per_epoch": [int(s) for s in g.epoch_steps],
             "total_steps": g.total_steps,
             "members": [m["member"] for m in g.members],
             "shared": {str(s["member"]): m["member"] for m in g.members
                        for s in m["listings"]}}
            for g in plans
        ],
    }  # fmt: skip


NORMALIZATION = "(x / 255 - mean) / std, x: [n, H, W, C] uint8, per channel"


def data_stats(ds) -> dict:
    """What using the weights needs besides them (``config.json``'s ``data``):
    the per-channel ``mean`` and ``std`` the members' inputs were normalised
    with (:func:`jaxbatch.data.normalize`; float32 values, written so that
    they read back to the same bits), the ``class_names`` in label order,
    and the formula."""
    return {
        "mean": [float(v) for v in np.asarray(ds.mean, np.float32)],
        "std": [float(v) for v in np.asarray(ds.std, np.float32)],
        "class_names": [str(c) for c in ds.class_names],
        "normalization": NORMALIZATION,
    }


def update_json(path: str, **fields) -> None:
    """Set ``fields`` in ``config.json``, keeping what else was recorded there
    since (e.g. each group's measured strategy)."""
    saved = results.read_json(path)
    saved.update(fields)
    results.write_json(path, saved)
