"""What a sweep and a group being trained carry between the runner and its hooks.

:class:`SweepRun` is the whole sweep (configuration, results directory, data
on the device, the plan); :class:`GroupRun` one group while it trains (its
compiled functions, state, history and final values). Hooks read them and
may change a group's state (the control rules do); the runner owns them.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from jaxbatch import data
from jaxbatch.config.sweep_config import SweepConfig
from jaxbatch.engine.group import GroupFns, fetch
from jaxbatch.engine.spec import TrainSpec
from jaxbatch.sweep.inputs import DeviceData
from jaxbatch.sweep.plan import GroupPlan


@dataclasses.dataclass
class SweepRun:
    """A sweep being run: the settings, where it writes, and what it trains on."""

    config: SweepConfig
    out: str
    dataset: data.Dataset
    plans: list[GroupPlan]
    device: DeviceData
    meta: dict  # what config.json holds
    resume: bool = False
    progress: bool = True
    writer: bool = True  # this host writes the results
    base: Mapping | None = None  # weights every member starts from (--init-from)
    lock: Any = None  # the run directory's lock, held by the writing host

    @property
    def config_path(self) -> str:
        return f"{self.out}/config.json"


@dataclasses.dataclass
class GroupRun:
    """One group while it trains.

    ``history`` holds ``[members, steps]`` and ``[members, evaluations]`` arrays
    (checkpointed with the state every epoch); ``final`` the per-member values
    measured after training (``[members]``); ``spec`` and ``fns`` are those of
    the current epoch's batch size.
    """

    plan: GroupPlan
    sweep: SweepRun
    strategy: str
    specs: dict[int, TrainSpec]  # batch size -> spec of that phase
    fns_of: dict[int, GroupFns]
    hp: dict
    n_real: int  # members before padding to the device multiple
    state: Any
    history: dict[str, np.ndarray]
    final: dict[str, Any] = dataclasses.field(default_factory=dict)
    epochs_done: int = 0  # restored from a checkpoint
    epoch: int = 0
    step: int = 0
    compile_s: float = 0.0
    t_start: float = 0.0  # perf_counter when training started, less wall_s so far
    epoch_started: float = 0.0  # perf_counter at the start of this epoch
    last_eval: dict = dataclasses.field(default_factory=dict)  # raw, [slots]
    # Compaction (jaxbatch.sweep.population): while members that stopped for
    # good are left out, ``state`` and ``hp`` hold the others' slots, ``active``
    # the member (history row) of each real slot (padding slots after them),
    # and ``full_state`` / ``full_hp`` every member; None: every member trains.
    active: np.ndarray | None = None
    full_state: Any = None
    full_hp: dict | None = None
    slots_seen: set = dataclasses.field(default_factory=set)  # counts compiled

    def write(self, name: str, index, values) -> None:
        """Put ``values[slots, ...]`` into ``history[name][members, index]``:
        each real slot's into its member's row (every row when not compacted)."""
        v = np.asarray(values)
        if self.active is None:
            self.history[name][:, index] = v
        else:
            self.history[name][self.active, index] = v[: len(self.active)]

    @property
    def config(self) -> SweepConfig:
        return self.sweep.config

    @property
    def spec(self) -> TrainSpec:
        return self.specs[self.plan.batch_sizes[self.epoch]]

    @property
    def fns(self) -> GroupFns:
        return self.fns_of[self.plan.batch_sizes[self.epoch]]

    @property
    def training_left(self) -> bool:
        return self.epochs_done < self.config.epochs

    @property
    def eval_index(self) -> dict[int, int]:
        """Step -> index of the evaluation after it."""
        return {int(s): e for e, s in enumerate(self.plan.eval_steps)}

    def first_call(self, fn: Callable, *args):
        """Call ``fn`` once and count the time as compilation (a hook compiles
        its functions this way before the clock of training starts)."""
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        self.compile_s += time.perf_counter() - t0
        return out

    def last_epoch(self, i: int) -> np.ndarray:
        """The steps of member ``i``'s last epoch of training (where it stopped
        or diverged, the epoch before that); empty for a diverged member."""
        trained = np.flatnonzero(np.isfinite(self.history["train_loss"][i]))
        if not len(trained) or bool(self.final["diverged"][i]):
            return trained[:0]
        return trained[-int(self.plan.epoch_steps[-1]) :]

    def gone(self) -> np.ndarray:
        """[members] whether each member has diverged or stopped (its curves
        end there)."""
        return fetch(self.state.diverged | self.state.stopped)

    def release(self) -> None:
        """Drop the device state and the gathered weights; what remains (plan,
        history, final values) is what the tables are written from."""
        self.state = None
        self.fns_of = {}
        self.__dict__.pop("weights", None)

    @functools.cached_property
    def weights(self) -> dict:
        """The final (and, under early stopping, best) weights of every member,
        gathered to the host once (a collective on several hosts)."""
        s = self.state
        out = {"final": {"params": s.params, "batch_stats": s.batch_stats}}
        if self.spec.early_stopping is not None:
            out["best"] = {"params": s.best_params, "batch_stats": s.best_batch_stats}
        return fetch(out)
