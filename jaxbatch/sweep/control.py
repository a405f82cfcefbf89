"""The hooks that decide for the members: the plateau and early-stopping rules.

After every evaluation each member's metric feeds its own rules (decision 7
of the design): its plateau scale multiplies its LR, and a member whose rules
say stop is frozen from the next step on, its best parameters kept.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbatch.sweep.hooks import Hook
from jaxbatch.sweep.state import GroupRun


class Control(Hook):
    """The group's ``ReduceOnPlateau`` and ``EarlyStopping`` rules, fed with
    the evaluation's ``control_metric`` (so it runs after :class:`Evaluation`)."""

    @staticmethod
    def _on(g: GroupRun) -> bool:
        return g.spec.plateau is not None or g.spec.early_stopping is not None

    def start(self, g: GroupRun) -> None:
        if self._on(g):
            zeros = jnp.zeros(len(g.hp["lr"]), jnp.float32)
            copy = jax.tree.map(jnp.copy, g.state)
            g.first_call(g.fns.control, copy, g.hp, zeros)

    def at_eval(self, g: GroupRun, e: int) -> None:
        if self._on(g):
            metric = jnp.asarray(g.last_eval[g.spec.control_metric])
            g.state = g.fns.control(g.state, g.hp, metric)
