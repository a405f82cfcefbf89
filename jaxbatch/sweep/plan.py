"""The plan of a sweep: its members split into groups that share a program.

Members that share the model, the optimizer family and the batch size of
every epoch form a group, compiled once and trained together; everything else
a member varies (LR, schedule kind and parameters, weight decay and its mode,
...) is data (:func:`member_hparams`). Planning checks what only the data can
tell (a batch larger than the training set, LR multipliers that match no
parameter) before anything compiles.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import jax
import numpy as np

from jaxbatch import choices, data, optim, probes, recipes
from jaxbatch.config.schema import EVAL_EVERY
from jaxbatch.config.sweep_config import SweepConfig
from jaxbatch.engine.hparams import stack_hparams
from jaxbatch.engine.spec import TrainSpec


@dataclasses.dataclass
class GroupPlan:
    """One group of a sweep: its members, their hyperparameters as data, and
    the steps and evaluations of its run.

    Members of a group share the model, the optimizer family and the batch
    size of every epoch (``batch_sizes``); everything else is per-member data.
    """

    index: int
    spec: TrainSpec  # the first epoch's; other phases replace batch_size
    # {"member": index, "recipe": resolved recipes.Member, "listings": [{"member",
    # "recipe"}, ...]}: the members of the same recipe (other tags) it trains for
    members: list[dict]
    hp: dict
    batch_sizes: tuple[int, ...]  # [epochs]
    epoch_steps: np.ndarray  # [epochs] steps of each epoch
    eval_steps: np.ndarray  # [E] steps after which an evaluation runs

    def listed(self) -> list[tuple[int, dict]]:
        """``[(position on the member axis, {"member", "recipe"})]``: every
        member the group trains for, those sharing a trained one's training
        after it (at its position)."""
        return [(i, listing) for i, entry in enumerate(self.members)
                for listing in (entry, *entry["listings"])]  # fmt: skip

    @property
    def total_steps(self) -> int:
        return int(self.epoch_steps.sum())

    @property
    def epoch_starts(self) -> np.ndarray:
        """[epochs + 1] the global step at which each epoch starts (and the end)."""
        return np.concatenate([[0], np.cumsum(self.epoch_steps)])

    def spec_for(self, epoch: int) -> TrainSpec:
        return dataclasses.replace(self.spec, batch_size=self.batch_sizes[epoch])

    def phase_specs(self) -> list[TrainSpec]:
        return [self.spec_for(e) for e in sorted(
            {self.batch_sizes.index(b) for b in self.batch_sizes})]  # fmt: skip

    def step_batch_sizes(self) -> np.ndarray:
        """[total_steps] batch size of every step (the last of an epoch may be
        smaller)."""
        out = []
        for e, bs in enumerate(self.batch_sizes):
            spec = self.spec_for(e)
            out += [bs] * spec.full_batches + (
                [spec.last_batch] if spec.last_batch else []
            )
        return np.asarray(out, np.int64)

    @functools.cached_property
    def param_shapes(self):
        """The model's parameters as shapes (traced, not computed)."""
        return param_shapes(self.spec)

    @property
    def layers(self) -> tuple[str, ...]:
        """The top-level layers of the model (the step probes' suffixes)."""
        return probes.layer_names(self.param_shapes)


def param_shapes(spec: TrainSpec):
    model = spec.build_model()
    x = jax.ShapeDtypeStruct((1, *spec.image_shape), jax.numpy.float32)
    return jax.eval_shape(
        lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x
    )["params"]


def member_hparams(
    m: recipes.Member, n_train: int, epochs: int, patterns: tuple[str, ...] = ()
) -> dict:
    """A resolved recipe as the compiled step's data (times in examples; one
    LR multiplier per pattern of the group, 1 where the member sets none)."""
    mults = dict(m.lr_multipliers or ())
    ex = lambda e: max(1, round(e * n_train))  # noqa: E731
    wd = {"l2": "wd_l2", "l1": "wd_l1", "decoupled": "wd_decoupled"}
    crop, flip = recipes.parse_augment(m.augment or "")
    return {
        "lr": m.lr,
        "momentum": m.momentum,
        "b1": m.b1,
        "b2": m.b2,
        wd[m.weight_decay_mode]: m.weight_decay,
        f"{wd[m.weight_decay_mode]}_end": m.weight_decay_end,
        "wd_kind": recipes.WD_SCHEDULES.index(m.weight_decay_schedule),
        "kind": recipes.SCHEDULE_KINDS.index(m.schedule),
        "gamma": m.gamma,
        "step_ex": ex(m.decay_epochs),
        "milestones_ex": [ex(e) for e in (m.milestones or ())],
        "decay_rate": m.decay_rate,
        "power": m.power,
        "total_ex": epochs * n_train,
        "warmup_ex": round(m.warmup_epochs * n_train),
        "warmup_start": m.warmup_start,
        "plateau_factor": m.plateau_factor,
        "lr_max": m.lr_max,
        "lr_mult": [mults.get(p, 1.0) for p in patterns],
        "dropout": -1.0 if m.dropout is None else m.dropout,
        "aug_crop": crop,
        "aug_flip": 0.5 if flip else 0.0,
        "seed": m.seed,
    }


def plan_groups(config: SweepConfig, ds: data.Dataset) -> list[GroupPlan]:
    """Split the members into groups and build each group's static spec.

    Raises ValueError (before anything compiles) for a batch size the data
    cannot fill and for LR multipliers that match no parameter.
    """
    members = config.resolved_members()
    first, listings = {}, {}  # a recipe listed again (other tags) trains once
    keys = {}
    for i, m in enumerate(members):
        j = first.setdefault(recipes.comparable(m), i)
        if j != i:
            listings.setdefault(j, []).append({"member": i, "recipe": m})
            continue
        family = "adam" if m.optimizer in ("adam", "adamw") else m.optimizer
        key = (m.model, family, recipes.batch_sizes(m, config.epochs))
        keys.setdefault(key, []).append(i)
    any_plateau = any(m.plateau_factor < 1 for m in members)
    return [
        _plan_group(g, model, family, sizes, [members[i] for i in indices],
                    indices, config, ds, any_plateau, listings)
        for g, ((model, family, sizes), indices) in enumerate(keys.items())
    ]  # fmt: skip


def _plan_group(g, model, family, sizes, members, indices, config, ds, any_plateau,
                listings):  # fmt: skip
    n_train = len(ds.x_train)
    for bs in sizes:
        if bs > n_train:
            raise ValueError(
                f"batch size {bs} is larger than the training set ({n_train} "
                "examples); lower --batch-sizes or raise --train-size"
            )
    modes = {m.weight_decay_mode for m in members}
    augments = [recipes.parse_augment(m.augment or "") for m in members]
    patterns = tuple(dict.fromkeys(p for m in members for p, _ in m.lr_multipliers))
    spec = TrainSpec(
        model=model,
        model_kwargs=config.kwargs_for(model),
        num_classes=ds.num_classes,
        image_shape=tuple(ds.x_train.shape[1:]),
        n_train=n_train,
        batch_size=int(sizes[0]),
        optimizer=family,
        nesterov=config.nesterov,
        weight_decay_modes=tuple(m for m in optim.WEIGHT_DECAY_MODES if m in modes),
        decay_mask=config.decay_mask,
        drop_last=config.drop_last,
        multiplier_patterns=patterns,
        control_metric=config.control_metric,
        eval_batch_size=config.eval_batch_size,
        strategy=config.strategy,
        steps_per_call=config.steps_per_call,
        unroll=config.unroll,
        devices=config.devices,
        compute_dtype=config.precision,
        probes=tuple(p for p in config.probes if p in choices.STEP_PROBES),
        wd_scheduled=any(m.weight_decay_end != m.weight_decay for m in members),
        member_dropout=any(m.dropout is not None for m in members),
        augment_pad=max(crop for crop, _ in augments),
        augment_flip=any(flip for _, flip in augments),
    )
    if spec.member_dropout and not hasattr(spec.build_model(), "dropout_rate"):
        raise ValueError(
            f"{model} has no dropout, so a member's dropout rate cannot act; "
            "dropout rates apply to alexnet, alexnet_small and mlp"
        )
    epoch_steps = np.asarray(
        [dataclasses.replace(spec, batch_size=b).steps_per_epoch for b in sizes]
    )
    x = config.eval_every_epochs
    if x is not None and x * epoch_steps.min() < 1:
        e = int(np.argmin(epoch_steps))
        raise ValueError(
            f"eval_every_epochs {x:g} is less than one step at batch size "
            f"{sizes[e]} ({epoch_steps[e]} steps an epoch): give at least "
            f"{1 / epoch_steps[e]:.3g} (one step)"
        )
    evals = eval_steps(epoch_steps, config.eval_every, x)
    # The rules count evaluations; a patience in epochs becomes this group's
    # number of them (its evaluations per epoch differ with the batch size).
    rules = config.control.rules(
        0.5 if any_plateau else None, evals_per_epoch=len(evals) / config.epochs
    )
    plan = GroupPlan(
        index=g,
        spec=dataclasses.replace(spec, **rules),
        members=[
            {"member": i, "recipe": m, "listings": listings.get(i, [])}
            for i, m in zip(indices, members)
        ],  # fmt: skip
        hp=stack_hparams(
            [member_hparams(m, n_train, config.epochs, patterns) for m in members]
        ),
        batch_sizes=tuple(sizes),
        epoch_steps=epoch_steps,
        eval_steps=evals,
    )
    if patterns:
        check_multipliers(plan, frozen=config.freeze)
    return plan


def eval_steps(
    epoch_steps, every: int | None = None, every_epochs: float | None = None
) -> np.ndarray:
    """The steps after which a group evaluates: every ``every`` iterations
    (default 50), or, with ``every_epochs`` X, at the step nearest each
    multiple of X epochs (fraction f of epoch k: ``round(f x steps of epoch
    k)`` into it, so batch-size phases and a smaller last batch keep the
    epochs), and at the end of every epoch."""
    epoch_steps = np.asarray(epoch_steps)
    starts = np.concatenate([[0], np.cumsum(epoch_steps)]).astype(int)
    evals = {int(s) for s in starts[1:]}  # every epoch ends with one
    if every_epochs is None:
        every = EVAL_EVERY if every is None else every
        evals |= set(range(every, int(starts[-1]) + 1, every))
    else:
        j = 1
        while (t := j * every_epochs) < len(epoch_steps):
            k = int(t)  # t just below an integer lands on that epoch's end
            evals.add(int(starts[k]) + math.floor((t - k) * epoch_steps[k] + 0.5))
            j += 1
    evals.discard(0)
    return np.asarray(sorted(evals))


def check_multipliers(plan: GroupPlan, frozen=()) -> None:
    """Every LR-multiplier (and freeze) pattern must match a parameter of the
    model."""
    paths = optim.param_paths(plan.param_shapes)
    for pattern in plan.spec.multiplier_patterns:
        if not any(re.search(pattern, p) for p in paths):
            kind = "freeze" if pattern in frozen else "lr multiplier"
            raise ValueError(
                f"{kind} pattern {pattern!r} matches no parameter of "
                f"{plan.spec.model}; its parameters are: {', '.join(paths)}"
            )


def member_recipes(plan: GroupPlan) -> list[dict]:
    """Each member of a group and its hyperparameters as the step reads them,
    kept with every checkpoint: a resume checks that they are still the
    members being trained."""
    return [
        {"member": m["member"],
         **{k: np.asarray(v[i]).tolist() for k, v in sorted(plan.hp.items())}}
        for i, m in enumerate(plan.members)
    ]  # fmt: skip
