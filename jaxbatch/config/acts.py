"""Which settings change a sweep: a setting that no member's training reads
is refused when it is given, so a flag always means what it says.

:func:`inert` answers for a built :class:`SweepConfig` (plain Python, no
JAX): a grid list acts where a member takes its values (a grid, a member
that leaves the field unset, or a member builder that read it); a recipe
default acts where a member leaves the field unset *and* its optimizer or
schedule uses it (:func:`jaxbatch.recipes.unused`); a few sweep-wide
settings act only beside the rule they tune (the plateau rule's settings
without a plateau member, ``nesterov`` without SGD momentum). Every other
setting (data, model, training length, execution) always acts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

from jaxbatch import recipes
from jaxbatch.config.members import CROSSABLE
from jaxbatch.config.schema import RecipeConfig


def _members(config):
    """``(raw, resolved)``: each member as listed (unset fields ``None``)
    and with every default filled in. A random search is represented by its
    ranges' corners (drawing it would start JAX)."""
    mc = config.members
    if mc.drawn() or config.population.hyperband:
        raw = mc.random_corners(config.model_list())
    else:
        raw = mc.members(config.model_list())
    return raw, [config.resolve(m, i) for i, m in enumerate(raw)]


def _explicit(config):
    """The explicit members as listed, before the grid lists are crossed in
    (None for a grid or a random search)."""
    mc = config.members
    if mc.recipes:
        return list(mc.recipes)
    if mc.members_file:
        return recipes.read_members_file(mc.members_file)
    return None


def inert(config, fields: Collection[str], read: Collection[str] = ()) -> dict:
    """``{field: why}`` for each of ``fields`` (config field names) that no
    member of ``config`` trains with. ``read``: fields a member builder read
    (they act through the members it built)."""
    raw, resolved = _members(config)
    base = _explicit(config)
    defaults = {f.name for f in dataclasses.fields(RecipeConfig)}
    out = {}
    for name in fields:
        if name in read:
            continue
        why = None
        key = CROSSABLE.get(name)
        if key is not None:
            if base is not None and all(getattr(m, key) is not None for m in base):
                why = f"every member sets its own {key}"
            elif all(key in recipes.unused(r) for r in resolved):
                why = _unused_by(key, resolved)
        elif name in defaults:
            takers = [
                r for m, r in zip(raw, resolved, strict=True)
                if getattr(m, name) is None
            ]  # fmt: skip
            if not takers:
                why = f"every member sets its own {name}"
            elif all(name in recipes.unused(r) for r in takers):
                why = _unused_by(name, takers)
        elif name == "optimizer":
            if not any(m.optimizer is None for m in raw):
                why = "every member sets its own optimizer"
        elif name == "nesterov":
            if not any(r.optimizer == "sgd" and r.momentum for r in resolved):
                why = "no member trains with SGD and momentum > 0"
        elif name == "decay_mask":
            if not any(r.weight_decay for r in resolved):
                why = "no member has weight decay"
        elif name.startswith("plateau_") or name == "control_metric":
            early = config.control.early_stopping
            plateau = any(r.plateau_factor < 1 for r in resolved)
            if name == "control_metric" and not (plateau or early):
                why = "no member has the plateau rule or early stopping"
            elif name != "control_metric" and not plateau:
                why = "no member has the plateau rule (schedule plateau)"
        elif name in ("lr_range", "weight_decay_range", "momentum_range",
                      "search_seed"):  # fmt: skip
            if not config.members.drawn():
                why = "it tunes a random search (--search random:N)"
        elif name == "base_batch_size":
            if config.lr_scaling == "none":
                why = "no LR scaling rule (--lr-scaling linear or sqrt)"
        elif name.startswith("early_stop_") and "patience" not in name:
            if not config.control.early_stopping:
                why = "early stopping is off (no --early-stop-patience)"
        if why is not None:
            out[name] = why
    return out


def _unused_by(field: str, members) -> str:
    return f"{recipes.unused_because(field, members)} does not use {field}"


class Reads(dict):
    """A dict that records which keys were read (a member builder's inputs)."""

    def __init__(self, values: Mapping):
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)
