"""The results directory: ``config.json``, ``members.csv``, ``history.csv``.

Plain CSV and JSON so that any tool reads them; :func:`read_csv` gives columns
as numpy arrays for the plots.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping

import numpy as np

MEMBER_COLUMNS = (
    "member", "group", "model", "batch_size", "lr", "weight_decay", "momentum",
    "gamma", "seed", "final_train_loss", "final_train_acc", "final_val_loss",
    "final_val_acc", "val_acc_at_best_loss", "max_val_acc", "best_val_step",
    "gap_loss", "gap_acc",
    "diverged", "stopped", "lr_scale", "steps", "wall_s", "compile_s", "strategy",
)  # fmt: skip
HISTORY_COLUMNS = (
    "member", "step", "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
)  # fmt: skip


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


class WriteError(OSError):
    """A results file could not be written; the message names it and says
    what to do (one line)."""


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path to write ``path``'s content to; it replaces
    ``path`` only when the block succeeds, so a reader (or a killed run) never
    sees half a file and processes writing one file at once never share a
    temporary one. A failed write leaves no temporary file and raises
    :class:`WriteError` naming the path (for a full disk, the space free)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(err, WriteError):
            raise
        raise WriteError(_write_failure(path, err)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _write_failure(path: str, err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        folder = os.path.dirname(os.path.abspath(path))
        free = shutil.disk_usage(folder).free if os.path.isdir(folder) else 0
        return (
            f"disk full while writing {path} ({free / 2**20:.1f} MB free); free "
            "some space, then run the same command with --resume"
        )
    if err.errno == errno.ENOTDIR:
        return f"cannot write {path}: a part of the path is a file, not a folder"
    return f"cannot write {path}: {err.strerror or err}"


def makedirs(path: str) -> None:
    """``os.makedirs`` with a one-line error naming the path."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise WriteError(_write_failure(path, err)) from None


def write_json(path: str, obj: Mapping) -> None:
    """Write atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def write_csv(path: str, columns: Iterable[str], rows: Iterable[Mapping]) -> None:
    """Write rows (dicts) atomically; missing and NaN values become empty cells."""
    columns = tuple(columns)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_fmt(row.get(c)) for c in columns])


class ResultsError(ValueError):
    """A results file that cannot be read as written: missing, empty, cut
    short, or without a column its reader needs. The message is one line
    that names the file, what is wrong and what to do."""


SWEEP_FIX = "rerun the sweep with --resume or rebuild it"


def read_csv(path: str, *, fix: str = "write it again") -> dict[str, np.ndarray]:
    """Columns of a CSV as numpy arrays: numbers as float (empty -> NaN), else str.

    A file without a header (empty) or with a row of more or fewer fields
    than the header (e.g. cut short mid-row) is a :class:`ResultsError`
    whose message ends with ``fix``; blank lines are skipped."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ResultsError(f"{path}: empty, not even a header; {fix}")
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                n = len(rows) + 1
                raise ResultsError(_ragged(path, reader, n, row, header, fix))
            rows.append(row)
    cells = list(zip(*rows)) or [()] * len(header)
    out = {}
    for name, col in zip(header, cells):
        try:
            out[name] = np.array([float(v) if v != "" else np.nan for v in col])
        except ValueError:
            out[name] = np.array(col)
    return out


def _ragged(path, reader, n, row, header, fix) -> str:
    """The message for row ``n`` of ``path`` whose width is not the header's:
    cut short where it is the last row, shorter than the header, and the
    file does not end in a newline."""
    last = not any(rest for rest in reader)
    with open(path, "rb") as raw:
        raw.seek(max(0, os.path.getsize(path) - 1))
        newline = raw.read(1) in (b"\n", b"\r")
    cut = last and len(row) < len(header) and not newline
    why = " (truncated?)" if cut else ""
    return (
        f"{path}: row {n} has {len(row)} fields, the header {len(header)}{why}; {fix}"
    )


def read_members(
    run_dir: str, *, healthy: bool = False, require: Iterable = ()
) -> dict[str, np.ndarray]:
    """A run's ``members.csv`` as columns; ``healthy``: the members that did
    not diverge only (what a verdict compares).

    ``require``: columns the caller needs, each a name or a tuple of names
    of which one will do; one missing is a :class:`ResultsError` (as is a
    missing, empty or cut-short file, see :func:`read_csv`).

    A run written before the columns were renamed reads with the new names
    (:func:`upgrade_members`)."""
    path = os.path.join(run_dir, "members.csv")
    if not os.path.isfile(path):
        raise ResultsError(f"{path}: missing (the sweep did not finish?); {SWEEP_FIX}")
    members = upgrade_members(run_dir, read_csv(path, fix=SWEEP_FIX))
    for need in (*require, *(("diverged",) if healthy else ())):
        names = (need,) if isinstance(need, str) else tuple(need)
        if not any(n in members for n in names):
            which = " or ".join(repr(n) for n in names)
            raise ResultsError(
                f"{path}: no column {which} (the header has {len(members)} "
                f"columns); {SWEEP_FIX}"
            )
    if not healthy:
        return members
    keep = np.asarray([str(v) != "True" for v in members["diverged"]], bool)
    return {k: v[keep] for k, v in members.items()}


# Columns of members.csv before they were renamed, by the run's control
# metric: ``best_val_*`` were the values at the best evaluation by it.
LEGACY_COLUMNS = {
    "val_loss": {
        "best_val_loss": "min_val_loss",
        "best_val_acc": "val_acc_at_best_loss",
    },
    "val_acc": {"best_val_acc": "max_val_acc"},
}
# The columns over every evaluation, from history.csv's val_loss and val_acc.
EVAL_EXTREMES = ("min_val_loss", "val_acc_at_best_loss", "max_val_acc")


def upgrade_members(run_dir: str, members: dict) -> dict:
    """Old ``members.csv`` columns under their new names: ``best_val_acc``
    and ``best_val_loss`` (the best evaluation by the control metric, the
    lowest validation loss by default) become ``val_acc_at_best_loss`` and
    ``min_val_loss`` (under ``control_metric = "val_acc"``, ``best_val_acc``
    becomes ``max_val_acc`` and ``best_val_loss``, the loss at that
    evaluation, is dropped). Where ``history.csv`` is there,
    :data:`EVAL_EXTREMES` are computed from its evaluations instead (exactly
    their definitions, whatever the control metric and early stopping did).
    The new columns take the old ones' place (the columns after the
    standard results are the measurements'). A table without the old
    columns is returned as it is."""
    legacy = ("best_val_loss", "best_val_acc")
    if not any(old in members for old in legacy):
        return members
    renames = LEGACY_COLUMNS[_control_metric(run_dir)]
    new = {renames[k]: v for k, v in members.items() if k in renames}
    history = os.path.join(run_dir, "history.csv")
    if "member" in members and os.path.isfile(history):
        history = read_csv(history, fix=SWEEP_FIX)
        new.update(_eval_extremes(history, members["member"]))
    new = {c: new[c] for c in EVAL_EXTREMES if c in new and c not in members}
    out = {}
    for name, column in members.items():
        if name in legacy:
            out.update(new)  # at the first old column
        else:
            out[name] = column
    return out


def _control_metric(run_dir: str) -> str:
    """The control metric a run's ``config.json`` names (in any section),
    ``val_loss`` (the default) when it names none."""
    path = os.path.join(run_dir, "config.json")
    try:
        config = read_json(path).get("config", {})
    except (OSError, ValueError):
        return "val_loss"
    found = [config.get("control_metric")] + [
        v.get("control_metric") for v in config.values() if isinstance(v, Mapping)
    ]
    metric = next((m for m in found if m is not None), "val_loss")
    return metric if metric in LEGACY_COLUMNS else "val_loss"


def _eval_extremes(history: Mapping, member_ids) -> dict[str, np.ndarray]:
    """:data:`EVAL_EXTREMES` of each member from its evaluations in
    ``history.csv`` (NaN for a member without a finite one)."""
    if not {"member", "val_loss", "val_acc"} <= set(history):
        return {}
    out = {c: np.full(len(member_ids), np.nan) for c in EVAL_EXTREMES}
    for row, m in enumerate(member_ids):
        mine = history["member"] == m
        loss, acc = history["val_loss"][mine], history["val_acc"][mine]
        if np.isfinite(loss).any():
            lowest = int(np.nanargmin(np.where(np.isnan(loss), np.inf, loss)))
            out["min_val_loss"][row] = loss[lowest]
            out["val_acc_at_best_loss"][row] = acc[lowest]
        if np.isfinite(acc).any():
            out["max_val_acc"][row] = np.nanmax(acc)
    return out


def read_history(run_dir: str) -> dict[str, np.ndarray]:
    """A run's ``history.csv`` as columns."""
    return read_csv(os.path.join(run_dir, "history.csv"), fix=SWEEP_FIX)


# --- trained weights ------------------------------------------------------------------
# ``<run>/params/member_<i>.msgpack``: {"final": {"params", "batch_stats"},
# "best": {...} (under early stopping)}, numpy arrays in flax's msgpack format.


def parse_run_member(spec: str) -> tuple[str, int]:
    """``"RUN_DIR[:MEMBER]"`` -> ``(run_dir, member)``; without a member, the
    run's best member by validation accuracy."""
    run_dir, sep, member = spec.rpartition(":")
    if not sep or not member.isdigit():
        run_dir, member = spec, ""
    if not os.path.isfile(os.path.join(run_dir, "members.csv")):
        raise ValueError(
            f"--init-from {spec}: {run_dir} holds no finished run (no members.csv)"
        )
    if member:
        return run_dir, int(member)
    members = read_members(run_dir)
    accs = np.nan_to_num(members["val_acc_at_best_loss"].astype(float), nan=-1.0)
    return run_dir, int(members["member"][int(np.argmax(accs))])


def params_path(run_dir: str, member: int) -> str:
    path = os.path.join(run_dir, "params", f"member_{member}.msgpack")
    if not os.path.isfile(path):
        raise ValueError(
            f"{run_dir} has no saved weights of member {member} ({path}); the "
            "members with weights are: "
            + (", ".join(sorted(os.listdir(os.path.dirname(path))))
               if os.path.isdir(os.path.dirname(path)) else "none")
        )  # fmt: skip
    return path


def save_params(run_dir: str, member: int, weights: Mapping) -> str:
    """Write one member's weights (atomically)."""
    from flax import serialization  # only here: reading the tables needs no JAX

    directory = os.path.join(run_dir, "params")
    makedirs(directory)
    path = os.path.join(directory, f"member_{member}.msgpack")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(serialization.msgpack_serialize(_numpy(weights)))
    return path


def load_params(run_dir: str, member: int, which: str = "final") -> dict:
    """A member's trained weights: ``{"params": ..., "batch_stats": ...}``,
    the variables ``model.apply`` takes.

    ``which``: ``"final"`` (the end of training, or where the member stopped)
    or ``"best"`` (the best evaluation under early stopping). The weights
    alone: :func:`load_member` adds what using them needs (the
    normalisation statistics, class names, image shape and the model).
    """
    from flax import serialization

    with open(params_path(run_dir, member), "rb") as f:
        saved = serialization.msgpack_restore(f.read())
    if which not in saved:
        raise ValueError(
            f"member {member} of {run_dir} has no {which!r} weights (saved: "
            f"{', '.join(saved)}); 'best' needs early stopping"
        )
    return saved[which]


def data_info(run_dir: str) -> dict:
    """What a run's members were trained on, from its ``config.json``:
    ``name``, ``image_shape`` ``[H, W, C]``, ``num_classes``,
    ``class_names`` (in label order), and the per-channel ``mean`` and
    ``std`` (float32 ``[C]``) of the normalisation ``(x / 255 - mean) /
    std`` that every input (uint8 ``[n, H, W, C]``) went through.

    A run made before these were recorded raises a ``ValueError`` saying how
    to get them."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"{run_dir} holds no run (no config.json)")
    saved = read_json(path).get("data", {})
    missing = [k for k in ("mean", "std", "class_names") if k not in saved]
    if missing:
        raise ValueError(
            f"{path} records no {', '.join(missing)} (a run made before "
            "jaxbatch recorded its normalisation); load the data with the run's "
            "data settings (jaxbatch.data.load) and use its mean, std, class_names"
        )
    out = dict(saved)
    out["mean"] = np.asarray(saved["mean"], np.float32)
    out["std"] = np.asarray(saved["std"], np.float32)
    out["class_names"] = tuple(saved["class_names"])
    out["image_shape"] = tuple(saved["image_shape"])
    return out


def load_member(run_dir: str, member: int, which: str = "final") -> dict:
    """Everything needed to use a member's weights, from the run directory
    alone: ``variables`` (:func:`load_params`), ``data``
    (:func:`data_info`: normalisation statistics, class names, image
    shape), ``model`` and ``model_kwargs`` (for
    ``jaxbatch.models.get_model(model, num_classes=..., **model_kwargs)``),
    ``num_classes``, ``member`` and ``which``."""
    variables = load_params(run_dir, member, which)
    info = data_info(run_dir)
    groups = read_json(os.path.join(run_dir, "config.json")).get("groups", [])
    group = next((g for g in groups if member in g.get("members", ())), None)
    if group is None:
        raise ValueError(f"{run_dir}/config.json names no group of member {member}")
    kwargs = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in group.get("model_kwargs", {}).items()
    }
    return {
        "member": member, "which": which, "model": group["model"],
        "model_kwargs": kwargs, "num_classes": info["num_classes"],
        "variables": variables, "data": info,
    }  # fmt: skip


def _numpy(tree):
    if isinstance(tree, Mapping):
        return {k: _numpy(v) for k, v in tree.items()}
    return np.asarray(tree)
