"""Hooks: what runs beside a group's training, each at its own cadence.

Evaluation, the probes, the plateau and early-stopping rules, checkpoints,
TensorBoard, the progress bar and the saved weights are hooks, and research
code passes its own (``sweep.run(config, hooks=[...])``). A hook overrides
what it needs:

==================  =======================================================
``columns(plan)``   the names it measures (:class:`Columns`), declared
                    before training; two hooks naming one column are refused
``buffers(plan, n)`` arrays of its own kept in the checkpointed history (what
                    a resume needs to continue its decisions)
``start(g)``        before the first step (compile with ``g.first_call``)
``after_steps``     after each run of steps, with their metrics
``at_step(g)``      at every step divisible by ``every``
``at_eval(g, e)``   at every evaluation (after the ``e``-th one's step)
``after_epoch``     after each epoch (its checkpoint, its TensorBoard scalars)
``at_end(g)``       after the last epoch, on the final state
``results(g, i)``   member ``i``'s ``members.csv`` values (default: the
                    member columns from what ``at_end`` returned)
``history(g)``      its ``history.csv`` columns (default: what it measured)
``after_sweep(s)``  once every group has trained (an analysis of the run)
==================  =======================================================

``at_step``, ``at_eval`` and ``at_end`` measure by returning ``{name:
values[members]}``: the runner writes them into the history (at that step or
evaluation) or the final values, and ``history.csv`` and ``members.csv``
take their columns from the names. Hooks run in their list's order at each
cadence, so a hook may read what an earlier one measured (the control
rules read the evaluation's metric).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from jaxbatch import columns as cols
from jaxbatch.sweep.plan import GroupPlan
from jaxbatch.sweep.state import GroupRun, SweepRun

STEPS, EVALS = "steps", "evals"  # the two clocks of the history


@dataclasses.dataclass(frozen=True)
class Columns:
    """The names a hook measures: a value per step (``history.csv``), a value
    per evaluation (``history.csv``, at the evaluation's step), a value per
    member (``members.csv``), and ``history.csv`` columns it computes from its
    own when the table is written (``computed``). The steps' and evaluations'
    values are the history that every checkpoint keeps."""

    steps: tuple[str, ...] = ()
    evals: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    computed: tuple[str, ...] = ()


class Hook:
    """Something that runs beside a group's training; see the module docstring."""

    every: int = 0  # at_step runs at every step divisible by this (0: never)

    @property
    def name(self) -> str:
        return type(self).__name__

    def columns(self, plan: GroupPlan) -> Columns:
        return Columns()

    def buffers(self, plan: GroupPlan, n: int) -> dict[str, np.ndarray]:
        """``{name: array}`` it keeps in ``g.history`` (checkpointed every
        epoch, restored on resume) besides its columns; ``n``: the slots."""
        return {}

    def start(self, g: GroupRun) -> None:
        pass

    def after_steps(self, g: GroupRun, start: int, stop: int, metrics) -> None:
        pass

    def at_step(self, g: GroupRun) -> Mapping | None:
        return None

    def at_eval(self, g: GroupRun, e: int) -> Mapping | None:
        return None

    def after_epoch(self, g: GroupRun, epoch: int) -> None:
        pass

    def at_end(self, g: GroupRun) -> Mapping | None:
        return None

    def results(self, g: GroupRun, i: int) -> dict:
        """Member ``i``'s values of the member columns: its final values (NaN
        for a diverged member)."""
        gone = bool(g.final["diverged"][i])
        names = self.columns(g.plan).members
        return {k: float("nan") if gone else float(g.final[k][i]) for k in names}

    def history(self, g: GroupRun) -> dict[str, tuple[str, np.ndarray]]:
        """``{column: (clock, [members, steps or evaluations])}`` for
        ``history.csv``."""
        c = self.columns(g.plan)
        return {
            **{k: (STEPS, g.history[k]) for k in c.steps},
            **{k: (EVALS, g.history[k]) for k in c.evals},
        }

    def after_sweep(self, sweep: SweepRun) -> None:
        pass


# What the runner itself writes: the step's metrics and the members' identity,
# recipe and standard results.
CORE_HISTORY = ("lr", "train_loss", "train_acc")
CORE_MEMBERS = (*cols.IDENTITY_COLUMNS, *cols.RECIPE_COLUMNS)


def check_names(hooks: Sequence[Hook], plans: Sequence[GroupPlan], tags=()) -> None:
    """Refuse, before training, two hooks (or a hook and the runner) that write
    one column of ``history.csv`` or ``members.csv``."""
    for plan in plans:
        history = dict.fromkeys(CORE_HISTORY, "the training step")
        members = dict.fromkeys((*CORE_MEMBERS, *tags), "the recipe")
        for h in hooks:
            c = h.columns(plan)
            for table, names, taken in (
                ("history.csv", (*c.steps, *c.evals, *c.computed), history),
                ("members.csv", c.members, members),
            ):
                for name in names:
                    if name in taken:
                        raise ValueError(
                            f"hooks {taken[name]} and {h.name} both write the "
                            f"{table} column {name!r}; rename one"
                        )
                    taken[name] = h.name


def record(g: GroupRun, values: Mapping | None, *, step: int | None = None,
           e: int | None = None) -> None:  # fmt: skip
    """Write a hook's ``{name: values[members]}`` into the history at a step
    (1-based) or an evaluation, or (neither) into the final values."""
    for name, v in (values or {}).items():
        if step is not None:
            g.write(name, step - 1, v)
        elif e is not None:
            g.write(name, e, v)
        else:
            g.final[name] = np.asarray(v)
