"""Ctrl-C and SIGTERM, taken at safe points.

A signal handler that raises runs wherever Python happens to be, and where
that is a callback of a library (JAX's garbage-collection hook, matplotlib's
font cache), the exception is printed as "Exception ignored" and lost: the
run goes on and exits 0. So the command line installs :func:`deferred`,
whose handler only records the signal, and the long loops call
:func:`check` between units of work (a run of steps, a figure, a stage),
which raises there. A second signal of the same kind raises at once.
Without :func:`deferred` (research code), :func:`check` does nothing.
"""

from __future__ import annotations

import contextlib
import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised at a safe point (a KeyboardInterrupt, so the same
    clean-up runs)."""


_pending: list[int] = []


def _raise(signum: int):
    if signum == signal.SIGTERM:
        raise Terminated
    raise KeyboardInterrupt


def _record(signum, frame):
    if signum in _pending:  # asked twice: stop now
        _pending.clear()
        _raise(signum)
    _pending.append(signum)


def check() -> None:
    """Raise the signal received since the last check, if any."""
    if _pending:
        signum = _pending.pop(0)
        _pending.clear()
        _raise(signum)


@contextlib.contextmanager
def deferred():
    """SIGINT and SIGTERM recorded for :func:`check` while inside; at the
    exit of the block a signal not yet taken is raised."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _pending.clear()
    for s in old:
        signal.signal(s, _record)
    try:
        yield
        check()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        _pending.clear()
