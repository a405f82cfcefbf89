"""The tables of a finished sweep: ``members.csv``, ``history.csv``, ``arms.csv``.

Their columns come from :mod:`jaxbatch.columns` (identity, recipe, standard
results) and from the hooks' declarations, in the hooks' order; a hook's
values come from its ``results`` (a member's row) and ``history`` (its
per-step and per-evaluation columns).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from jaxbatch import columns as cols
from jaxbatch import recipes, results, stats
from jaxbatch.sweep.hooks import STEPS, Hook
from jaxbatch.sweep.plan import GroupPlan
from jaxbatch.sweep.state import GroupRun

NAN = float("nan")


def _batch_schedule(m: recipes.Member) -> str:
    if not m.batch_milestones or m.batch_factor == 1:
        return ""
    return f"x{m.batch_factor:g} at " + " ".join(f"{e:g}" for e in m.batch_milestones)


def member_rows(g: GroupRun, hooks: Sequence[Hook]) -> list[dict]:
    """One ``members.csv`` row per member of a finished group: who it is, its
    recipe, what the training step measured, and every hook's results. A
    member listed again with other tags (it shares the training of an
    earlier one) gets the trained one's row with its own id and tags, and
    ``shares_training_of`` naming that member.

    ``final_train_*`` are means over the member's last epoch of batches (what
    the training curve shows; a stopped member's last epoch is where it
    stopped); a diverged member's are empty.
    """
    seen = np.cumsum(g.plan.step_batch_sizes())
    rows = []
    for i, entry in enumerate(g.plan.members):
        row = _member_row(g, hooks, i, entry["recipe"], seen)
        rows.append({"member": entry["member"], **row})
        for listing in entry["listings"]:  # the same training, its own tags
            m = listing["recipe"]
            rows.append({**{k: v for k, v in row.items()
                            if k not in dict(entry["recipe"].tags)},
                         "member": listing["member"], **dict(m.tags),
                         "shares_training_of": entry["member"]})  # fmt: skip
    return rows


def _member_row(g: GroupRun, hooks, i: int, m: recipes.Member, seen) -> dict:
    """The row of the member at position ``i`` of the group, but its id."""
    trained = np.flatnonzero(np.isfinite(g.history["train_loss"][i]))
    last = g.last_epoch(i)

    def mean(key, last=last, i=i):
        return float(np.mean(g.history[key][i, last])) if len(last) else NAN

    row = {
        "group": g.plan.index,
        "model": m.model,
        **dict(m.tags),
        **{k: getattr(m, k) for k in cols.RECIPE_COLUMNS if hasattr(m, k)},
        "batch_schedule": _batch_schedule(m),
        "milestones": " ".join(f"{v:g}" for v in m.milestones or ()),
        "lr_multipliers": " ".join(f"{p}={v:g}" for p, v in m.lr_multipliers or ()),
        **dict.fromkeys(recipes.unused(m), ""),  # what its training ignores
        "final_train_loss": mean("train_loss"),
        "final_train_acc": mean("train_acc"),
        "diverged": bool(g.final["diverged"][i]),
        "stopped": bool(g.final["stopped"][i]),
        "lr_scale": float(g.final["lr_scale"][i]),
        "steps": int(trained[-1]) + 1 if len(trained) else 0,
        "examples_seen": int(seen[trained[-1]]) if len(trained) else 0,
        "wall_s": float(g.history["wall_s"]),
        "compile_s": float(g.compile_s),
        "strategy": g.strategy,
    }
    for h in hooks:
        row.update(h.results(g, i))
    return row


def member_columns(plans: Sequence[GroupPlan], hooks: Sequence[Hook]) -> tuple:
    """``members.csv``'s columns: identity, the members' tags, recipe, the
    standard results, then the hooks' other columns."""
    tags = dict.fromkeys(
        k for plan in plans for _, m in plan.listed() for k, _ in m["recipe"].tags
    )
    extra = dict.fromkeys(
        c for plan in plans for h in hooks for c in h.columns(plan).members
        if c not in cols.RESULT_COLUMNS
    )  # fmt: skip
    return (*cols.IDENTITY_COLUMNS, *tags, *cols.RECIPE_COLUMNS, *cols.RESULT_COLUMNS,
            *extra)  # fmt: skip


def _history_series(g: GroupRun, hooks: Sequence[Hook]) -> dict:
    """``{column: (clock, [members, ...])}``: the step's metrics, then the hooks'."""
    names = ("lr", "train_loss", "train_acc", "weight_decay")
    out = {k: (STEPS, g.history[k]) for k in names if k in g.history}
    for h in hooks:
        out.update(h.history(g))
    return out


def history_columns(groups: Sequence[GroupRun], hooks: Sequence[Hook]) -> tuple:
    """``history.csv``'s columns: the standard ones, then every hook's."""
    extra = dict.fromkeys(k for g in groups for k in _history_series(g, hooks))
    return (*cols.HISTORY_COLUMNS, *(k for k in extra if k not in cols.HISTORY_COLUMNS))


def history_rows(g: GroupRun, hooks: Sequence[Hook]) -> Iterator[dict]:
    """Long-format ``history.csv`` rows: one per member per step; a column of
    the evaluation clock is empty where no evaluation ran."""
    plan = g.plan
    eval_at = {int(s): e for e, s in enumerate(plan.eval_steps)}
    series = _history_series(g, hooks)
    sizes = plan.step_batch_sizes()
    seen = np.cumsum(sizes)
    epoch_of = np.repeat(np.arange(1, len(plan.epoch_steps) + 1), plan.epoch_steps)
    for i, m in plan.listed():
        for t in range(plan.total_steps):
            step = t + 1
            e = eval_at.get(step)
            row = {
                "member": m["member"],
                "step": step,
                "epoch": int(epoch_of[t]),
                "batch_size": int(sizes[t]),
                "examples_seen": int(seen[t]),
            }
            for name, (clock, values) in series.items():
                if clock == STEPS:
                    row[name] = float(values[i, t])
                elif e is not None:
                    row[name] = float(values[i, e])
            yield row


def write_arms(out: str) -> None:
    """``arms.csv``: one row per arm (members equal but for the seed), the
    mean and 95% t-interval half-width (``<col>_ci``) of each result."""
    rows = stats.arm_rows(results.read_members(out))
    results.write_csv(os.path.join(out, "arms.csv"), stats.arm_columns(rows), rows)
