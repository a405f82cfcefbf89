"""Orbax checkpoints of a group: its member-axis state plus the history so far.

Layout: ``<out>/checkpoints/group_<g>/epoch_<e>/`` (an orbax directory). Orbax
writes into a temporary directory and renames it when complete, so a directory
with the final name is a complete checkpoint; a run killed mid-save leaves
only a temporary directory, which is ignored and later removed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
import zlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxbatch import results

_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")
MANIFEST = "jaxbatch_manifest.json"


def group_dir(out: str, group: int) -> str:
    return os.path.join(os.path.abspath(out), "checkpoints", f"group_{group}")


def list_epochs(directory: str) -> list[int]:
    """Epochs with a complete checkpoint in ``directory``, ascending."""
    if not os.path.isdir(directory):
        return []
    found = (_EPOCH_DIR.match(name) for name in os.listdir(directory))
    return sorted(int(m.group(1)) for m in found if m)


class DiskFullError(OSError):
    """Not enough free space for a checkpoint; the message says how much."""


def tree_bytes(tree: Any) -> int:
    """Bytes of the arrays in ``tree`` (what a checkpoint of it takes, roughly)."""
    return sum(
        int(np.prod(np.shape(x))) * np.dtype(getattr(x, "dtype", np.float32)).itemsize
        for x in jax.tree.leaves(tree)
    )


def check_free_space(
    directory: str,
    needed: int,
    *,
    then: str = "free some space, then run the same command with --resume",
) -> None:
    """Raise DiskFullError naming the path, the space needed and the space
    free. Creates nothing: the space is that of the nearest existing folder."""
    where = os.path.abspath(directory)
    while not os.path.isdir(where) and os.path.dirname(where) != where:
        where = os.path.dirname(where)
    free = shutil.disk_usage(where).free
    if free < needed:
        raise DiskFullError(
            f"not enough disk space for the checkpoints in {directory}: need "
            f"{_mb(needed)}, {_mb(free)} free; {then}"
        )


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


@contextlib.contextmanager
def quiet_orbax():
    """orbax reports a failure of its background threads by logging whole
    tracebacks (absl, asyncio); the failure also reaches the caller, which
    says it in one line. Keep those logs quiet while inside, and after a
    failure for good: the failed save's threads keep logging as they wind
    down, after the caller has said what went wrong."""
    names = ("absl", "orbax", "asyncio", "jax._src.distributed")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    yield
    for lg, level in zip(loggers, levels):  # not reached when the block raised
        lg.setLevel(level)


@contextlib.contextmanager
def deferred_signals():
    """Hold SIGINT and SIGTERM until the block ends, then act on them.

    A checkpoint interrupted half-way would leave orbax's background threads
    printing tracebacks; a save takes moments, so the signal waits for it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.getsignal(sig)
        signal.signal(sig, lambda s, _frame: received.append(s))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in received[:1]:
            handler = old[sig]
            if callable(handler):
                handler(sig, None)
            elif handler == signal.SIG_DFL and sig == signal.SIGINT:
                raise KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                signal.raise_signal(sig)


def save(
    directory: str, epoch: int, tree: Any, *, keep: int = 2, meta: Any = None
) -> str:
    """Save ``tree`` as the checkpoint of ``epoch``; keep the newest ``keep``.

    Older checkpoints beyond ``keep - 1`` are removed *before* the save, so the
    disk never holds more than ``keep`` (the newest complete one always stays).
    A save that fails (disk full) leaves no partial directory behind and raises
    :class:`DiskFullError` with one line; SIGINT/SIGTERM wait for the save.
    ``meta`` (JSON) is kept in the manifest (:func:`read_meta`).
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"epoch_{epoch:04d}")
    _hush_closed_loops()
    with deferred_signals(), quiet_orbax():
        for old in [e for e in list_epochs(directory) if e != epoch][
            : -(keep - 1) or None
        ]:
            shutil.rmtree(
                os.path.join(directory, f"epoch_{old:04d}"), ignore_errors=True
            )
        _remove_leftovers(directory)
        if os.path.exists(path):
            shutil.rmtree(path)
        try:
            checkpointer = ocp.StandardCheckpointer()
            checkpointer.save(path, tree)
            checkpointer.wait_until_finished()
            results.write_json(
                os.path.join(path, MANIFEST), {**_manifest(path), "meta": meta}
            )
        except Exception as err:
            with contextlib.suppress(Exception):  # let its threads wind down
                checkpointer.close()
            _clear_failed_save(directory, path)
            if _is_disk_full(err):
                free = shutil.disk_usage(directory).free
                raise DiskFullError(
                    f"disk full while writing the checkpoint {path} (about "
                    f"{_mb(tree_bytes(tree))} needed, {_mb(free)} free); free "
                    "some space, then run the same command with --resume"
                ) from None
            raise
    return path


def _hush_closed_loops() -> None:
    """After a failed save (a full disk), orbax's storage threads still
    finish their writes and hand the results to its event loop, which the
    failure has closed; each hand-off raises ``RuntimeError: Event loop is
    closed`` in a native thread, which Python reports as unraisable (dozens
    of tracebacks around the one line that says what happened). Drop exactly
    those; everything else is reported as before."""
    previous = sys.unraisablehook
    if getattr(previous, "_hushes_closed_loops", False):
        return

    def hook(unraisable):
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        previous(unraisable)

    hook._hushes_closed_loops = True
    sys.unraisablehook = hook


def _clear_failed_save(directory: str, path: str, settle_s: float = 1.0) -> None:
    """Remove what a failed save wrote. Its storage threads may still be
    writing (a full disk fails some writes and not others): remove, then
    again until nothing new has appeared for ``settle_s`` (at most 10 s)."""
    quiet_since, start = time.monotonic(), time.monotonic()
    while time.monotonic() - start < 10:
        shutil.rmtree(path, ignore_errors=True)
        _remove_leftovers(directory)
        time.sleep(0.1)
        if os.path.exists(path) or any(
            not _EPOCH_DIR.match(n) for n in os.listdir(directory)
        ):
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle_s:
            return


def _remove_leftovers(directory: str) -> None:
    for name in os.listdir(directory):
        if not _EPOCH_DIR.match(name):  # leftovers of an interrupted save
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def _is_disk_full(err: BaseException) -> bool:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(err) or "ENOSPC" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def restore(directory: str, epoch: int, like: Any) -> Any:
    """Restore the checkpoint of ``epoch`` into the structure/shapes of ``like``.

    Leaves of ``like`` that are numpy arrays come back as numpy arrays.
    """
    path = os.path.join(directory, f"epoch_{epoch:04d}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = ocp.StandardCheckpointer().restore(path, abstract)
    return jax.tree.map(
        lambda ref, x: np.asarray(x) if isinstance(ref, np.ndarray) else x,
        like,
        restored,
    )


def _manifest(path: str) -> dict:
    """Size and CRC-32 of every file of a checkpoint (but the manifest itself)."""
    files = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            if rel == MANIFEST:
                continue
            crc = 0
            with open(full, "rb") as f:
                while chunk := f.read(1 << 22):
                    crc = zlib.crc32(chunk, crc)
            files[rel] = [os.path.getsize(full), crc]
    return {"files": files}


def read_meta(directory: str, epoch: int) -> Any:
    """The ``meta`` saved with the checkpoint of ``epoch`` (None if none)."""
    path = os.path.join(directory, f"epoch_{epoch:04d}", MANIFEST)
    try:
        return results.read_json(path).get("meta")
    except (OSError, ValueError):
        return None


def verify(directory: str, epoch: int) -> str | None:
    """Why the checkpoint of ``epoch`` is damaged, or None if it is whole.

    Checked against the manifest written after the save (sizes and CRC-32 of
    every file), without asking orbax to read a damaged checkpoint (which
    would fail with pages of background-thread tracebacks). A checkpoint
    without a manifest (a run killed between the two writes) is not judged.
    """
    path = os.path.join(directory, f"epoch_{epoch:04d}")
    manifest = os.path.join(path, MANIFEST)
    if not os.path.exists(manifest):
        return None if os.listdir(path) else "the directory is empty"
    try:
        want = results.read_json(manifest)["files"]
    except (ValueError, KeyError, OSError):
        return "its manifest is damaged"
    have = _manifest(path)["files"]
    missing = sorted(set(want) - set(have))
    if missing:
        return f"{len(missing)} file(s) missing, e.g. {missing[0]}"
    changed = sorted(k for k in want if have[k] != want[k])
    if changed:
        return f"{len(changed)} file(s) changed since the save, e.g. {changed[0]}"
    return None


def restore_latest(directory: str, like: Any, *, log=print) -> tuple[int, Any]:
    """Restore the newest checkpoint that restores; ``(0, like)`` if none does.

    A damaged checkpoint (truncated data, missing metadata, an empty directory)
    is reported in one line and skipped; training resumes from the one before
    and ends with the same numbers.
    """
    epochs = list_epochs(directory)
    damaged = False
    for epoch in reversed(epochs):
        why = verify(directory, epoch)
        if why is None:
            try:
                with quiet_orbax():
                    restored = restore(directory, epoch, like)
                if damaged:
                    log(f"resuming from the checkpoint of epoch {epoch}")
                return epoch, restored
            except Exception as err:  # noqa: BLE001 - any failure means "damaged"
                text = " ".join(str(err).split())[:120]
                why = f"{type(err).__name__}: {text}"
        damaged = True
        path = os.path.join(directory, f"epoch_{epoch:04d}")
        log(f"checkpoint {path} does not restore ({why}); skipped")
    if damaged:
        log(f"no checkpoint in {directory} restores; training from the start")
    return 0, like
