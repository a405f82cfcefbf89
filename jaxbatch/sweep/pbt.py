"""Population-based training (Jaderberg et al. 2017) inside the program.

Every ``interval`` epochs (at the epoch's end, never after the last one) the
members of a group are ranked by the metric of that epoch's last evaluation
(``val_loss`` lowest first, ``val_acc`` highest first; a diverged member is
the worst). Each of the bottom ``floor(n x quantile)`` members **exploits**:
it takes the parameters, optimizer state, BatchNorm statistics and control
state (plateau scale, early-stopping record, the divergence and stop flags)
of a parent drawn uniformly from the top as many; then it **explores**: each
explored hyperparameter is the parent's times a factor drawn from
``perturb``, or, with probability ``resample``, a log-uniform draw in the
range the population started with. The LR is multiplied as it is; the
momentum through ``1 - momentum`` (so it stays below 1); the weight decay
in whichever form (L2, L1, decoupled) the member uses. A member keeps its
own data order and dropout key, so its batches stay its own.

Hyperparameters are data of the compiled step, so nothing recompiles. The
draws come from ``numpy.random.default_rng([seed, group, epoch])``: a run and
its resume draw the same. The current hyperparameters and each step's
parents are kept in the group's checkpointed history, ``lineage.csv``
records every member after every step (``epoch`` 0: the start), and
``history.csv``'s ``lr`` column shows each member's LR as it changes.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxbatch import results
from jaxbatch.sweep.hooks import Columns, Hook
from jaxbatch.sweep.plan import GroupPlan
from jaxbatch.sweep.population import ranked
from jaxbatch.sweep.state import GroupRun, SweepRun

# Each explored field and the hyperparameters (engine.hparams) it is.
HPARAMS = {"lr": ("lr",), "momentum": ("momentum",),
           "weight_decay": ("wd_l2", "wd_l1", "wd_decoupled")}  # fmt: skip
# What an exploiting member copies from its parent: everything but its data
# order and clocks (step, epoch, pos, seen, perm stay its own).
COPIED = ("params", "batch_stats", "opt_state", "lr_scale", "diverged", "stopped",
          "plateau", "early", "best_params", "best_batch_stats")  # fmt: skip
LINEAGE_COLUMNS = ("group", "epoch", "member", "parent", "exploited", *HPARAMS)


@jax.jit
def _copy_members(state, child, parent):
    """``state`` with the members ``child`` holding the COPIED fields of
    ``parent`` (index arrays of one length)."""
    new = {
        name: jax.tree.map(lambda a: a.at[child].set(a[parent]), getattr(state, name))
        for name in COPIED
    }
    return state.replace(**new)


def _keys(fields) -> list[str]:
    return [k for f in fields for k in HPARAMS[f]]


class PBT(Hook):
    """Exploit and explore at every ``interval`` epochs (module docstring)."""

    def __init__(
        self,
        interval: int,
        quantile: float,
        perturb: tuple[float, ...],
        fields: tuple[str, ...],
        resample: float,
        metric: str,
        seed: int,
    ):
        self.interval, self.quantile, self.perturb = interval, quantile, perturb
        self.fields, self.resample, self.metric, self.seed = (
            tuple(fields), resample, metric, seed,
        )  # fmt: skip
        self.lineage: dict[int, list[dict]] = {}

    @property
    def name(self) -> str:
        return "PBT"

    def columns(self, plan: GroupPlan) -> Columns:
        return Columns(members=(*(f"pbt_{f}" for f in self.fields), "pbt_exploits"))

    def buffers(self, plan: GroupPlan, n: int) -> dict[str, np.ndarray]:
        epochs = len(plan.epoch_steps)
        nan = lambda: np.full((n, epochs), np.nan, np.float32)  # noqa: E731
        return {"pbt_parent": nan(), **{f"pbt_{k}": nan() for k in _keys(HPARAMS)}}

    # --- the hyperparameters: the newest step's, else the plan's ---------------

    @staticmethod
    def _last_step(g: GroupRun, before: int) -> int | None:
        done = np.flatnonzero(np.isfinite(g.history["pbt_parent"][0, :before]))
        return int(done[-1]) if len(done) else None

    def _current(self, g: GroupRun, before: int) -> dict[str, np.ndarray]:
        """``{hparam: [slots]}`` after the last step before epoch ``before``."""
        t = self._last_step(g, before)
        out = {}
        for k in _keys(HPARAMS):
            v = np.array(g.plan.hp[k], np.float32)
            v = np.concatenate(
                [v, np.repeat(v[-1:], len(g.history["pbt_parent"]) - len(v))]
            )
            if t is not None:
                v[: g.n_real] = g.history[f"pbt_{k}"][: g.n_real, t]
            out[k] = v
        return out

    def start(self, g: GroupRun) -> None:
        """On resume, the hyperparameters the run had reached."""
        if self._last_step(g, g.epochs_done) is None:
            return
        cur = self._current(g, g.epochs_done)
        g.hp = {**g.hp, **{k: jnp.asarray(v, g.hp[k].dtype) for k, v in cur.items()}}

    # --- a step ------------------------------------------------------------------

    def after_epoch(self, g: GroupRun, epoch: int) -> None:
        done = epoch + 1
        if done % self.interval or done >= len(g.plan.epoch_steps):
            return
        n = g.n_real
        order = ranked(g, epoch, self.metric, np.arange(n))
        k = int(math.floor(n * self.quantile + 1e-9))
        rng = np.random.default_rng([self.seed, g.plan.index, done])
        parent = np.arange(n)
        hp = {key: np.array(g.hp[key], np.float32) for key in _keys(HPARAMS)}
        if k:
            children = np.sort(order[n - k :])
            parent[children] = rng.choice(order[:k], size=k)
            for c in children:
                p = parent[c]
                for f in self.fields:
                    self._explore(g, hp, f, c, p, rng)
            g.state = _copy_members(
                g.state, jnp.asarray(children, jnp.int32),
                jnp.asarray(parent[children], jnp.int32),
            )  # fmt: skip
            g.hp = {
                **g.hp,
                **{key: jnp.asarray(v, g.hp[key].dtype) for key, v in hp.items()},
            }
            if g.sweep.progress and g.sweep.writer:
                tqdm.write(
                    f"group {g.plan.index + 1}: pbt at epoch {done}: {k} of {n} "
                    f"members copy the top {k} by {self.metric}"
                )
        g.history["pbt_parent"][:n, epoch] = parent
        for key, v in hp.items():
            g.history[f"pbt_{key}"][:n, epoch] = v[:n]

    def _explore(self, g: GroupRun, hp: dict, field: str, c: int, p: int, rng) -> None:
        """Member ``c``'s ``field`` from its parent ``p``'s: times a factor,
        or (with probability ``resample``) drawn in the starting range."""
        resample = rng.random() < self.resample
        factor = float(rng.choice(self.perturb))
        start = {
            k: np.asarray(g.plan.hp[k], np.float64)[: g.n_real] for k in HPARAMS[field]
        }
        for key in HPARAMS[field]:
            parent = float(hp[key][p])
            if key.startswith("wd_") and parent == 0.0:
                hp[key][c] = 0.0  # a decay form the member does not use
                continue
            if resample:
                lo, hi = float(start[key].min()), float(start[key].max())
                if key == "momentum":
                    lo, hi = 1 - hi, 1 - lo
                u = rng.random()
                new = lo * (hi / lo) ** u if lo > 0 else lo + (hi - lo) * u
                new = 1 - new if key == "momentum" else new
            elif key == "momentum":
                new = 1 - (1 - parent) * factor
            else:
                new = parent * factor
            if key == "momentum":
                new = min(max(new, 0.0), 0.999)
            hp[key][c] = new

    # --- the record ----------------------------------------------------------------

    def at_end(self, g: GroupRun) -> dict:
        n = g.n_real
        epochs = len(g.plan.epoch_steps)
        cur = self._current(g, epochs)
        parents = g.history["pbt_parent"][:n]
        exploits = np.sum(np.isfinite(parents) & (parents != np.arange(n)[:, None]), 1)
        ids = [entry["member"] for entry in g.plan.members]
        rows = []
        start = self._values({k: np.asarray(g.plan.hp[k]) for k in _keys(HPARAMS)}, n)
        for i in range(n):
            rows.append({"group": g.plan.index, "epoch": 0, "member": ids[i],
                         "parent": ids[i], "exploited": False,
                         **{f: start[f][i] for f in HPARAMS}})  # fmt: skip
        for t in np.flatnonzero(np.isfinite(parents[0])):
            vals = self._values(
                {k: g.history[f"pbt_{k}"][:n, t] for k in _keys(HPARAMS)}, n
            )
            for i in range(n):
                p = int(parents[i, t])
                rows.append({"group": g.plan.index, "epoch": int(t) + 1,
                             "member": ids[i], "parent": ids[p], "exploited": p != i,
                             **{f: vals[f][i] for f in HPARAMS}})  # fmt: skip
        self.lineage[g.plan.index] = rows
        values = self._values({k: cur[k][:n] for k in _keys(HPARAMS)}, n)
        values = {
            f: np.array([float(f"{x:.7g}") for x in v]) for f, v in values.items()
        }
        return {**{f"pbt_{f}": values[f] for f in self.fields},
                "pbt_exploits": exploits.astype(np.float64)}  # fmt: skip

    @staticmethod
    def _values(hp: dict, n: int) -> dict[str, np.ndarray]:
        """``{field: [n]}`` of hyperparameters (the weight decay: the form in use)."""
        f = lambda k: np.asarray(hp[k], np.float64)[:n]  # noqa: E731
        decay = f("wd_l2") + f("wd_l1") + f("wd_decoupled")
        return {"lr": f("lr"), "momentum": f("momentum"), "weight_decay": decay}

    def results(self, g: GroupRun, i: int) -> dict:
        names = self.columns(g.plan).members
        return {k: float(g.final[k][i]) for k in names}

    def after_sweep(self, sweep: SweepRun) -> None:
        rows = [r for index in sorted(self.lineage) for r in self.lineage[index]]
        for r in rows:
            for f in HPARAMS:
                r[f] = float(f"{r[f]:.7g}")
        results.write_csv(os.path.join(sweep.out, "lineage.csv"), LINEAGE_COLUMNS, rows)


def pbt_hooks(population) -> list[Hook]:
    """The PBT hook of a config's ``population`` section; none when off."""
    p = population.exploit
    return [PBT(**p)] if p is not None else []
