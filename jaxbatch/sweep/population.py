"""The population of a group decides while it trains: compaction and
successive halving.

**Compaction.** A member that stopped for good (successive halving dropped
it, early stopping or the plateau rule ended it, it diverged) is frozen by
the step, and under ``vmap`` a frozen member still costs a full step. At
every epoch's start :func:`compact` gathers the members still training into
a smaller state (``g.state``, ``g.hp``; ``g.active`` names each slot's
member) and the group runs the program of that count: ``pow2`` pads the
count to a power of two times the device multiple (a handful of programs,
each compiled once), ``exact`` to the multiple only (one program per count).
The padding slots repeat the last survivor and are never written back. At
the epoch's end :func:`expand` scatters the survivors back into the state of
every member (``g.full_state``), so the hooks of the epoch's end (the
checkpoint, the rungs) and of the run's end (final evaluation, weights) see
every member, exactly as without compaction; a resume restores that full
state and compacts again from its flags. The member axis keeps its sharding
over the devices.

**Successive halving** (Jamieson & Talwalkar 2016; the rung rule of ASHA, Li
et al. 2018, run synchronously): after ``first`` epochs and every factor
``eta`` more, the best ``1/eta`` of the group's members still training (by
the validation loss, lowest, or accuracy, highest, of the epoch's last
evaluation; a diverged member is the worst) continue; the others stop there,
their numbers those of that epoch, and compaction drops them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxbatch.engine.group import fetch
from jaxbatch.engine.member_axis import make_mesh, member_multiple
from jaxbatch.sweep.hooks import Hook
from jaxbatch.sweep.state import GroupRun


def slot_count(n: int, multiple: int, mode: str) -> int:
    """The slots a group of ``n`` training members runs: ``n`` rounded up to
    the device ``multiple`` (``exact``), or to ``multiple`` times a power of
    two (``pow2``)."""
    blocks = -(-n // multiple)
    if mode == "pow2":
        blocks = 1 << max(0, math.ceil(math.log2(blocks)))
    return blocks * multiple


def training(g: GroupRun) -> np.ndarray:
    """The real members (history rows) still training: not stopped, not
    diverged, as the full state's flags say."""
    state = g.state if g.active is None else g.full_state
    gone = fetch(state.diverged | state.stopped)[: g.n_real]
    return np.flatnonzero(~gone)


def _place(tree, spec):
    """The member axis of ``tree`` split over the group's devices."""
    if spec.n_devices <= 1:
        return tree
    return jax.device_put(tree, NamedSharding(make_mesh(spec.n_devices), P("sweep")))


@jax.jit
def _gather(tree, idx):
    return jax.tree.map(lambda a: a[idx], tree)


def _scatter(full, part, idx):
    return jax.tree.map(lambda f, p: f.at[idx].set(p[: len(idx)]), full, part)


_scatter = jax.jit(_scatter, donate_argnums=0)


def compact(g: GroupRun, compile_new=None) -> bool:
    """Train only the members still training from here on (see the module
    docstring); returns False when none is left. A no-op with compaction
    off or while the slots would not shrink. ``compile_new(g)``: the first
    calls of a slot count not trained before (its compile time counted)."""
    mode = g.config.compaction
    alive = training(g)
    if not len(alive):
        return False
    if mode == "off":
        return True
    slots = slot_count(len(alive), member_multiple(g.spec), mode)
    if slots >= len(g.hp["lr"]):
        return True
    g.full_state, g.full_hp = g.state, g.hp  # every member's, kept aside
    idx = np.concatenate([alive, np.full(slots - len(alive), alive[-1])])
    jidx = jnp.asarray(idx, jnp.int32)
    g.state = _place(_gather(g.full_state, jidx), g.spec)
    g.hp = {k: v[jidx] for k, v in g.full_hp.items()}
    g.active = alive
    if slots not in g.slots_seen:  # a new count: its programs compile now
        g.slots_seen.add(slots)
        if compile_new is not None:
            compile_new(g)
        if g.sweep.progress and g.sweep.writer:
            tqdm.write(
                f"group {g.plan.index + 1}: {len(alive)} of {g.n_real} members "
                f"still training: {slots} slots from epoch {g.epoch + 1}"
            )
    return True


def expand(g: GroupRun) -> None:
    """Every member's state again: the survivors' slots written back into the
    full state (the padding slots are not)."""
    if g.active is None:
        return
    idx = jnp.asarray(g.active, jnp.int32)
    g.full_state = _scatter(g.full_state, g.state, idx)
    g.state, g.hp = g.full_state, g.full_hp
    g.active = None


def ranked(g: GroupRun, epoch: int, metric: str, members: np.ndarray) -> np.ndarray:
    """``members`` best first by ``metric`` at the evaluation that ends
    ``epoch`` (0-based): ``val_loss`` lowest, ``val_acc`` highest; a member
    without a finite value (diverged) last; ties by member."""
    end = int(g.plan.epoch_starts[epoch + 1])
    e = int(np.flatnonzero(g.plan.eval_steps == end)[0])  # every epoch ends with one
    value = g.history[metric][members, e].astype(np.float64)
    sign = 1.0 if metric == "val_loss" else -1.0
    value = np.where(np.isfinite(value), sign * value, np.inf)
    return members[np.argsort(value, kind="stable")]


class SuccessiveHalving(Hook):
    """The rungs of successive halving (module docstring): at the end of each
    rung's epoch, on the full state, the members outside the best ``1/eta``
    of those still training are stopped (before that epoch's checkpoint, so
    a resume sees the decision). Hyperband: ``brackets`` maps each value of
    the members' ``bracket`` tag to its rungs, and each bracket is halved
    among its own members."""

    def __init__(self, eta: float, metric: str, rungs: tuple[int, ...] = (),
                 brackets: dict | None = None):  # fmt: skip
        self.eta, self.metric, self.rungs = eta, metric, tuple(rungs)
        self.brackets = brackets

    @property
    def name(self) -> str:
        return "SuccessiveHalving"

    def _sets(self, g: GroupRun, epoch: int):
        """The (members, label) sets ranked at this epoch's end."""
        if self.brackets is None:
            if epoch + 1 in self.rungs:
                yield np.arange(g.n_real), ""
            return
        tag = np.array([dict(e["recipe"].tags).get("bracket") for e in g.plan.members])
        for b, rungs in self.brackets.items():
            if epoch + 1 in rungs:
                yield np.flatnonzero(tag == b), f" (bracket {b})"

    def after_epoch(self, g: GroupRun, epoch: int) -> None:
        alive_all = training(g)
        for members, label in self._sets(g, epoch):
            alive = np.intersect1d(alive_all, members)
            if len(alive) <= 1:
                continue
            order = ranked(g, epoch, self.metric, alive)
            keep = max(1, int(len(alive) // self.eta))
            drop = np.sort(order[keep:])
            if len(drop):
                stopped = g.state.stopped.at[jnp.asarray(drop)].set(True)
                g.state = g.state.replace(stopped=stopped)
                if g.sweep.progress and g.sweep.writer:
                    tqdm.write(
                        f"group {g.plan.index + 1}: rung at epoch {epoch + 1}{label}: "
                        f"{keep} of {len(alive)} members continue by {self.metric}"
                    )


def halving_hooks(population, epochs: int) -> list[Hook]:
    """The successive-halving hook of a config's ``population`` section:
    plain (one set of rungs) or Hyperband's brackets; none when off."""
    if population.halving is not None:
        h = population.halving
        return [SuccessiveHalving(h["eta"], h["metric"], population.rungs(epochs))]
    if population.bands is not None:
        b = population.bands
        brackets = {x["bracket"]: x["rungs"] for x in population.brackets(epochs)}
        return [SuccessiveHalving(b["eta"], b["metric"], brackets=brackets)]
    return []


def compute(g: GroupRun) -> dict:
    """The group's compute in member-steps: ``member_steps`` (the steps its
    members trained, each to its stop), ``computed_steps`` (the steps of the
    slots it ran, padding and frozen members included) and
    ``every_member_steps`` (every slot of the plan to the end, the cost
    without compaction)."""
    trained = np.isfinite(g.history["train_loss"][: g.n_real]).sum()
    slots = np.nan_to_num(g.history["slots"])
    full = len(g.full_hp["lr"]) if g.full_hp is not None else len(g.hp["lr"])
    return {
        "member_steps": int(trained),
        "computed_steps": int(np.dot(slots, g.plan.epoch_steps)),
        "every_member_steps": int(full * g.plan.total_steps),
        "slots": [int(s) for s in slots],  # per epoch (0: not trained)
    }


def compute_total(groups: list[dict]) -> dict:
    """The sweep's compute from its groups' (:func:`compute`), and the share
    of ``every_member_steps`` it did not compute (``saved_share``)."""
    keys = ("member_steps", "computed_steps", "every_member_steps")
    total = {k: int(sum(c.get(k, 0) for c in groups)) for k in keys}
    every = total["every_member_steps"]
    total["saved_share"] = 1 - total["computed_steps"] / every if every else 0.0
    return total
