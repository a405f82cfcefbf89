"""The columns of a results directory's tables, named once.

``members.csv``: identity (``member, group, model``), the members' tags, the
recipe (:data:`RECIPE_COLUMNS`), the standard results (:data:`RESULT_COLUMNS`),
then the columns of the run's measurements (probes and user hooks) in the
order they were added: whatever follows ``strategy``. ``history.csv``:
:data:`HISTORY_COLUMNS`, then the measurements'. The sweep writes these
tables and the report, the figures and the statistics read them through the
names here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from jaxbatch import recipes

IDENTITY_COLUMNS = ("member", "group", "model")
# Recipe fields written to members.csv (after member, group, model and tags):
# every field of a Member, the batch-size schedule as one text column.
RECIPE_COLUMNS = ("batch_size", "batch_schedule") + tuple(
    f.name
    for f in dataclasses.fields(recipes.Member)
    if f.name not in ("model", "tags", "batch_size", "batch_milestones", "batch_factor")
)
RESULT_COLUMNS = (
    "final_train_loss", "final_train_acc", "train_eval_loss", "train_eval_acc",
    "final_val_loss", "final_val_acc", "min_val_loss", "val_acc_at_best_loss",
    "max_val_acc", "best_val_step", "test_loss", "test_acc", "best_test_loss",
    "best_test_acc", "gap_loss", "gap_acc", "diverged", "stopped", "lr_scale",
    "steps", "examples_seen", "wall_s", "compile_s", "shares_training_of",
    "strategy",
)  # fmt: skip
HISTORY_INDEX = ("member", "step", "epoch", "batch_size", "examples_seen")
HISTORY_COLUMNS = (
    *HISTORY_INDEX, "lr", "train_loss", "train_acc", "val_loss", "val_acc",
)  # fmt: skip
# The results summarised per arm (mean and interval over its seeds) in
# arms.csv and the report, before the measurements'.
ARM_RESULTS = (
    "test_acc", "val_acc_at_best_loss", "max_val_acc", "final_val_acc",
    "train_eval_acc", "test_loss", "final_val_loss", "gap_loss", "gap_acc", "steps",
)  # fmt: skip
SUMMARY_RESULTS = (
    "val_acc_at_best_loss", "max_val_acc", "final_val_acc", "test_acc", "gap_loss",
    "gap_acc",
)  # fmt: skip


def measured_columns(members: Mapping) -> list[str]:
    """The measurement columns of a ``members.csv`` (probes, user hooks): the
    columns after the standard results."""
    names = list(members)
    last = RESULT_COLUMNS[-1]
    return names[names.index(last) + 1 :] if last in names else []


def summary_columns(members: Mapping) -> list[str]:
    """The members table's columns as the command line and the report show
    them: the member, its tags and what varies between members, the main
    results, the measurements, ``diverged`` and ``wall_s``."""
    varying = [
        c
        for c in ("model", *RECIPE_COLUMNS)
        if c in members and len(set(map(str, members[c]))) > 1
    ]
    measured = measured_columns(members)
    fixed = {*IDENTITY_COLUMNS, *RECIPE_COLUMNS, *RESULT_COLUMNS, *measured}
    tags = [c for c in members if c not in fixed]
    shared = [c for c in ("shares_training_of",) if c in members
              and any(str(v) not in ("", "nan") for v in members[c])]  # fmt: skip
    # members that stopped at different steps (halving, early stopping): where
    stops = [c for c in ("steps", "stopped") if c in members
             and len(set(map(str, members["steps"]))) > 1]  # fmt: skip
    return ["member", *tags, *(varying or ["batch_size", "lr"]), *SUMMARY_RESULTS,
            *measured, *stops, "diverged", "wall_s", *shared]  # fmt: skip
