"""Members as recipes: what one member of a sweep trains with, and list builders.

A :class:`Member` names every hyperparameter of one configuration: batch size
(or a batch-size schedule), peak LR, schedule kind and its parameters, warmup,
optimizer and its hyperparameters, weight decay and its mode, plateau factor,
seed. Fields left ``None`` take the sweep's defaults (``SweepConfig``) when the
sweep resolves its members. A sweep is a *list* of members; the builders below
make lists::

    from jaxbatch import recipes as R
    members = (
        R.grid(batch_size=(32, 256), lr=(0.01, 0.1), seed=(0, 1, 2))
        + R.random(jax.random.PRNGKey(0), 16, batch_size=64)
    )
    members = R.scale_lr(members, "linear", base_batch_size=32)

Times are in epochs (fractional allowed): decays, milestones, warmup and
batch-size milestones count epochs, so budgets compare across batch sizes.
``tags`` are extra ``members.csv`` columns (e.g. ``(("search", "grid"),)``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxbatch import schedules

# Index of each schedule kind in the compiled step (a per-member integer).
SCHEDULE_KINDS = (
    "constant",
    "step",
    "multistep",
    "exponential",
    "inverse_time",
    "cosine",
    "plateau",
    "range",
)
LR_SCALING_RULES = ("none", "linear", "sqrt")
# Milestones a member may name (a fixed-length per-member array in the step).
MAX_MILESTONES = 8


@dataclasses.dataclass(frozen=True, kw_only=True)
class Member:
    """One member's recipe; ``None`` means "the sweep's default".

    Attributes:
      model: model name.
      batch_size: batch size of the first epoch.
      batch_milestones, batch_factor: the batch size is multiplied by
        ``batch_factor`` at each milestone epoch (Smith et al. 2018).
      lr: peak learning rate.
      schedule: one of :data:`SCHEDULE_KINDS`. ``step``: x ``gamma`` every
        ``decay_epochs``; ``multistep``: x ``gamma`` at each of ``milestones``;
        ``exponential``: ``exp(-decay_rate * t)``; ``inverse_time``:
        ``1 / (1 + decay_rate * t) ** power``; ``cosine`` to 0 at the end;
        ``plateau``: constant, multiplied by ``plateau_factor`` whenever the
        control metric stalls (t in epochs); ``range``: rises exponentially
        from ``lr`` to ``lr_max`` over the run (the LR range test).
      warmup_epochs, warmup_start: linear warmup from ``warmup_start`` x LR.
      optimizer: ``sgd``, ``adam``, ``adamw`` or ``rmsprop``.
      momentum, b1, b2: optimizer hyperparameters (momentum: sgd/rmsprop).
      weight_decay, weight_decay_mode: coefficient and ``l2`` / ``decoupled``
        / ``l1``.
      weight_decay_schedule, weight_decay_end: the coefficient over training,
        ``constant``, or ``linear`` / ``exponential`` from ``weight_decay``
        at the start to ``weight_decay_end`` at the end (t = examples seen /
        the run's examples).
      plateau_factor: LR factor on a stalled metric (1: off).
      lr_multipliers: ``((regex, multiplier), ...)`` per-layer LRs (a
        parameter gets the product of its matches; 0 freezes it), added to
        the sweep's own.
      augment: data augmentation on the device, drawn from the member's
        seed: ``crop:P`` (a random crop of the image padded by P pixels),
        ``flip`` (a horizontal flip with probability 0.5), e.g.
        ``crop:4,flip``; ``""``: none.
      dropout: the dropout rate, as data (members of other rates share a
        program; models with dropout: alexnet, alexnet_small, mlp); None:
        the model's own rate.
      seed: initialisation, data order and dropout.
      tags: extra columns for ``members.csv``, ``((name, value), ...)``.
    """

    model: str | None = None
    batch_size: int | None = None
    batch_milestones: tuple[int, ...] | None = None
    batch_factor: float | None = None
    lr: float | None = None
    schedule: str | None = None
    gamma: float | None = None
    decay_epochs: float | None = None
    milestones: tuple[float, ...] | None = None
    decay_rate: float | None = None
    power: float | None = None
    warmup_epochs: float | None = None
    warmup_start: float | None = None
    optimizer: str | None = None
    momentum: float | None = None
    b1: float | None = None
    b2: float | None = None
    weight_decay: float | None = None
    weight_decay_mode: str | None = None
    weight_decay_schedule: str | None = None
    weight_decay_end: float | None = None
    plateau_factor: float | None = None
    lr_max: float | None = None
    lr_multipliers: tuple[tuple[str, float], ...] | None = None
    augment: str | None = None
    dropout: float | None = None
    seed: int | None = None
    tags: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        tags = self.tags
        if isinstance(tags, Mapping):
            tags = tuple(tags.items())
        object.__setattr__(self, "tags", tuple((str(k), v) for k, v in tags))
        mults = self.lr_multipliers
        if mults is not None:
            if isinstance(mults, Mapping):
                mults = mults.items()
            mults = tuple((str(k), float(v)) for k, v in mults)
            object.__setattr__(self, "lr_multipliers", mults)
        for name in ("batch_milestones", "milestones"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, str | int | float):
                    value = (value,)
                object.__setattr__(self, name, tuple(value))

    def replace(self, **changes) -> Member:
        return dataclasses.replace(self, **changes)

    def with_tags(self, **tags) -> Member:
        return self.replace(tags=(*dict(self.tags).items(), *tags.items()))

    def to_dict(self) -> dict:
        """Only the fields that are set; ``tags`` as a dict."""
        d = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "tags" and getattr(self, f.name) is not None
        }
        if self.tags:
            d["tags"] = dict(self.tags)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Member:
        """A recipe from a dict (a JSON object or CSV row); unknown keys are
        tags, empty values are unset."""
        names = {f.name for f in dataclasses.fields(cls)} - {"tags"}
        known, tags = {}, dict(d.get("tags") or {})
        for key, value in d.items():
            if key == "tags":
                continue
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if key in names:
                known[key] = _coerce(key, value)
            else:
                tags[key] = value
        return cls(**known, tags=tuple(tags.items()))


_INTS = ("batch_size", "seed")
_STRS = ("model", "schedule", "optimizer", "weight_decay_mode", "weight_decay_schedule",
         "augment")  # fmt: skip
_TUPLES = ("batch_milestones", "milestones")


def _coerce(key: str, value):
    """Text from a CSV cell (or JSON values) as the field's type."""
    if key in _STRS:
        return str(value).strip()
    if key == "lr_multipliers":
        if isinstance(value, str):  # "Conv_0=0.1 bias=2"
            pairs = [p.rpartition("=") for p in value.replace(";", " ").split()]
            if any(not sep or not k for k, sep, _ in pairs):
                raise ValueError(
                    f"lr_multipliers must be REGEX=MULT pairs, got {value!r}"
                )
            return tuple((k, float(v)) for k, _, v in pairs)
        return tuple(dict(value).items()) if isinstance(value, Mapping) else value
    if key in _TUPLES:
        if isinstance(value, str):
            parts = value.replace(";", " ").replace(",", " ").split()
            value = [float(p) for p in parts]
        conv = int if key == "batch_milestones" else float
        return tuple(conv(float(v)) for v in value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"member field {key} must be a number, got {value!r}"
        ) from None
    if key in _INTS:
        if number != int(number):
            raise ValueError(f"member field {key} must be an integer, got {value!r}")
        return int(number)
    return number


def grid(**axes: Iterable) -> list[Member]:
    """Every combination of the given values, the first axis outermost.

    ``grid(batch_size=(32, 64), lr=(0.01, 0.02))`` gives 4 members; a scalar
    value is a one-value axis.
    """
    names = list(axes)
    values = [
        tuple(v) if isinstance(v, list | tuple | np.ndarray) else (v,)
        for v in axes.values()
    ]
    for name, vals in zip(names, values, strict=True):
        if not vals:
            raise ValueError(f"grid axis {name} has no values")
    return [Member(**dict(zip(names, combo))) for combo in itertools.product(*values)]


def zip_members(**columns: Sequence) -> list[Member]:
    """Member ``i`` takes the ``i``-th value of every column (equal lengths)."""
    lengths = {name: len(v) for name, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"zip_members needs columns of one length, got {lengths}")
    n = next(iter(lengths.values()), 0)
    return [Member(**{k: v[i] for k, v in columns.items()}) for i in range(n)]


def product(members: Sequence[Member], **axes: Iterable) -> list[Member]:
    """Each member crossed with a grid over ``axes`` (e.g. seeds)."""
    out = []
    for m in members:
        for g in grid(**axes):
            out.append(m.replace(**{k: getattr(g, k) for k in axes}))
    return out


def random(
    key: jax.Array,
    n: int,
    *,
    lr_range: tuple[float, float] = (1e-5, 1e-1),
    weight_decay_range: tuple[float, float] | None = (1e-7, 1e-1),
    one_minus_momentum_range: tuple[float, float] | None = (1e-3, 1e-1),
    **fixed,
) -> list[Member]:
    """``n`` members from the classic log-uniform search distributions.

    ``lr ~ 10^U(-5, -1)``, ``weight_decay ~ 10^U(-7, -1)``, ``momentum =
    1 - 10^U(-3, -1)``; a range of ``None`` leaves that field to ``fixed`` or
    the sweep's default. ``fixed`` fields (e.g. ``batch_size=64``) are shared.
    Values are rounded to 4 significant digits so they read back exactly from
    ``members.csv``.
    """
    draws = schedules.random_search(
        key,
        n,
        lr_range=lr_range,
        weight_decay_range=weight_decay_range or (1.0, 1.0),
        one_minus_momentum_range=one_minus_momentum_range or (1.0, 1.0),
    )
    out = []
    for i in range(n):
        values = {"lr": round_draw(draws["learning_rate"][i])}
        if weight_decay_range is not None:
            values["weight_decay"] = round_draw(draws["weight_decay"][i])
        if one_minus_momentum_range is not None:
            values["momentum"] = round_draw(draws["momentum"][i])
        out.append(Member(**{**fixed, **values}))
    return out


def round_draw(x) -> float:
    """A draw rounded to 4 significant digits, so it reads back exactly from
    ``members.csv``."""
    return float(f"{float(x):.4g}")


def scale_lr(
    members: Sequence[Member], rule: str, base_batch_size: int
) -> list[Member]:
    """Each member's LR scaled from ``base_batch_size`` to its batch size.

    ``rule``: ``"linear"`` (x k, Goyal et al.), ``"sqrt"`` (x sqrt(k),
    Krizhevsky), ``"none"``; ``k = batch_size / base_batch_size``. Members need
    ``lr`` and ``batch_size`` set. Adds the tag ``scaling_rule``.
    """
    if rule not in LR_SCALING_RULES:
        raise ValueError(
            f"lr scaling rule must be one of {LR_SCALING_RULES}, got {rule!r}"
        )
    out = []
    for m in members:
        if m.lr is None or m.batch_size is None:
            raise ValueError(f"scale_lr needs lr and batch_size set, got {m}")
        lr = schedules.scaled_lr(m.lr, base_batch_size, m.batch_size, rule)
        out.append(m.replace(lr=round_draw(lr)).with_tags(scaling_rule=rule))
    return out


def batch_sizes(member: Member, epochs: int) -> tuple[int, ...]:
    """The batch size of each epoch of a resolved member."""
    if not member.batch_milestones or member.batch_factor == 1:
        return (member.batch_size,) * epochs
    fn = schedules.batch_size_schedule(
        member.batch_size, member.batch_milestones, member.batch_factor
    )
    return tuple(fn(e) for e in range(epochs))


def _got(value) -> str:
    """A bad value as a message shows it; NaN and inf said to be not finite."""
    bad = isinstance(value, float) and not math.isfinite(value)
    return f"{value!r}" + (" (not a finite number)" if bad else "")


def check(member: Member) -> None:
    """Raise ValueError naming the bad value of a resolved member."""

    def bad(what):
        return ValueError(f"member {describe(member, brief=True)}: {what}")

    # XLA flushes float32 subnormals to zero: the LR must be a normal float32.
    with np.errstate(over="ignore"):
        lr32 = np.float32(member.lr) if math.isfinite(member.lr) else np.inf
    if not (member.lr > 0 and np.isfinite(lr32) and lr32 >= np.finfo(np.float32).tiny):
        raise bad(
            f"lr must be positive and finite in float32 (1e-38 .. 3e38), got "
            f"lr={member.lr!r}"
        )
    if not (isinstance(member.batch_size, int) and member.batch_size > 0):
        raise bad(f"batch_size must be a positive integer, got {member.batch_size!r}")
    if member.schedule not in SCHEDULE_KINDS:
        raise bad(
            f"unknown schedule {member.schedule!r}; choose one of {SCHEDULE_KINDS}"
        )
    if member.schedule in ("step", "multistep") and not 0 < member.gamma <= 1:
        raise bad(
            f"gamma is the LR factor at each decay and must be in (0, 1], got "
            f"gamma={_got(member.gamma)}"
        )
    if member.schedule == "step" and not (
        member.decay_epochs is not None and member.decay_epochs > 0
    ):
        raise bad(f"decay_epochs must be positive, got {member.decay_epochs!r}")
    if member.schedule == "multistep":
        ms = member.milestones or ()
        if not ms:
            raise bad("schedule 'multistep' needs milestones (epochs), e.g. 30,60,80")
        if (
            len(ms) > MAX_MILESTONES
            or any(not (m > 0 and math.isfinite(m)) for m in ms)
            or list(ms) != sorted(ms)
        ):
            raise bad(
                f"milestones must be at most {MAX_MILESTONES} increasing positive "
                f"epochs, got {ms}"
            )
    if member.schedule in ("exponential", "inverse_time") and not (
        member.decay_rate > 0 and math.isfinite(member.decay_rate)
    ):
        raise bad(
            f"schedule {member.schedule!r} needs decay_rate k > 0 (per epoch), got "
            f"decay_rate={_got(member.decay_rate)}"
        )
    if member.schedule == "range" and not (
        math.isfinite(member.lr_max) and member.lr_max > member.lr
    ):
        raise bad(
            f"schedule 'range' rises from lr to lr_max > lr, got lr={member.lr!r}, "
            f"lr_max={member.lr_max!r}"
        )
    if not (member.power > 0 and math.isfinite(member.power)):
        raise bad(f"power must be positive, got {_got(member.power)}")
    if not (member.warmup_epochs >= 0 and math.isfinite(member.warmup_epochs)):
        raise bad(f"warmup_epochs must be >= 0, got {_got(member.warmup_epochs)}")
    if not 0 <= member.warmup_start <= 1:
        raise bad(f"warmup_start must be in [0, 1], got {member.warmup_start!r}")
    if not 0 < member.plateau_factor <= 1:
        raise bad(
            f"plateau_factor must be in (0, 1] (1: off), got {member.plateau_factor!r}"
        )
    if not (member.weight_decay >= 0 and math.isfinite(member.weight_decay)):
        raise bad(f"weight_decay must be >= 0, got {_got(member.weight_decay)}")
    parse_augment(member.augment or "")
    if member.dropout is not None and not (
        isinstance(member.dropout, int | float) and 0 <= member.dropout < 1
    ):
        raise bad(f"dropout must be in [0, 1), got {_got(member.dropout)}")
    if member.weight_decay_schedule not in WD_SCHEDULES:
        raise bad(
            f"unknown weight_decay_schedule {member.weight_decay_schedule!r}; "
            f"choose one of {', '.join(WD_SCHEDULES)}"
        )
    end = member.weight_decay_end
    if not (end is not None and end >= 0 and math.isfinite(end)):
        raise bad(f"weight_decay_end must be >= 0, got {_got(end)}")
    if member.weight_decay_schedule == "exponential" and not (
        member.weight_decay > 0 and end > 0
    ):
        raise bad(
            "an exponential weight_decay_schedule needs a positive start and end, "
            f"got weight_decay={member.weight_decay!r}, weight_decay_end={end!r}; "
            "use linear to start or end at 0"
        )
    if not (member.momentum >= 0 and math.isfinite(member.momentum)):
        raise bad(f"momentum must be >= 0, got {_got(member.momentum)}")
    for name in ("b1", "b2"):
        if not 0 <= getattr(member, name) < 1:
            raise bad(f"{name} must be in [0, 1), got {getattr(member, name)!r}")
    if member.batch_milestones:
        if not (member.batch_factor > 0 and math.isfinite(member.batch_factor)):
            raise bad(f"batch_factor must be positive, got {member.batch_factor!r}")
        ms = member.batch_milestones
        if any(m <= 0 for m in ms) or list(ms) != sorted(ms):
            raise bad(f"batch_milestones must be increasing positive epochs, got {ms}")
    for pattern, mult in member.lr_multipliers or ():
        if not (mult >= 0 and math.isfinite(mult)):
            raise bad(f"lr multiplier for {pattern!r} must be >= 0, got {mult!r}")
    if not (isinstance(member.seed, int) and 0 <= member.seed < 2**31):
        raise bad(f"seed must be an integer in [0, 2**31), got {member.seed!r}")


# Fields a member's optimizer or schedule reads: any other field's value does
# not change its training (``momentum`` under Adam, ``gamma`` of a cosine
# schedule, ``warmup_start`` without warmup).
_USED_BY = {
    "momentum": lambda m: m.optimizer != "adam",
    "b1": lambda m: m.optimizer == "adam",
    "b2": lambda m: m.optimizer == "adam",
    "gamma": lambda m: m.schedule in ("step", "multistep"),
    "decay_epochs": lambda m: m.schedule == "step",
    "milestones": lambda m: m.schedule == "multistep",
    "decay_rate": lambda m: m.schedule in ("exponential", "inverse_time"),
    "power": lambda m: m.schedule == "inverse_time",
    "lr_max": lambda m: m.schedule == "range",
    "warmup_start": lambda m: bool(m.warmup_epochs),
    "batch_factor": lambda m: bool(m.batch_milestones),
    "weight_decay_mode": lambda m: bool(m.weight_decay) or bool(m.weight_decay_end),
    "weight_decay_schedule": lambda m: m.weight_decay_end != m.weight_decay,
    "weight_decay_end": lambda m: m.weight_decay_end != m.weight_decay,
}


def parse_augment(text: str) -> tuple[int, bool]:
    """``"crop:4,flip"`` -> ``(4, True)``: the crop's padding in pixels (0:
    no crop) and whether to flip; ``""`` -> ``(0, False)``."""
    crop, flip = 0, False
    for part in (p.strip() for p in str(text).replace("+", ",").split(",")):
        if not part or part == "none":
            continue
        name, _, value = part.partition(":")
        if name == "flip" and not value:
            flip = True
        elif name == "crop" and value.isdigit() and int(value) <= 64:
            crop = int(value)
        else:
            raise ValueError(
                f"augment {text!r}: {part!r} is not crop:P (P whole pixels of "
                "padding, at most 64) or flip; e.g. crop:4,flip"
            )
    return crop, flip


def augment_text(text: str) -> str:
    """The canonical form of an augmentation (``"crop:4,flip"``, ``""``)."""
    crop, flip = parse_augment(text)
    return ",".join([*([f"crop:{crop}"] if crop else []), *(["flip"] if flip else [])])


# How a member's weight decay coefficient moves over training (hparams'
# ``wd_kind`` is the index; linear with equal ends is constant).
WD_SCHEDULES = ("constant", "linear", "exponential")


def unused(member: Member) -> tuple[str, ...]:
    """The fields a resolved member's training does not read (``adamw``
    counts as ``adam``): ``members.csv`` leaves them empty, and two members
    that differ only in them are twins."""
    m = member.replace(optimizer="adam") if member.optimizer == "adamw" else member
    return tuple(f for f, used in _USED_BY.items() if not used(m))


def unused_because(field: str, members: Sequence[Member]) -> str:
    """What makes resolved ``members`` ignore ``field`` (one of
    :func:`unused`'s): ``"optimizer adam"``, ``"schedule constant, cosine"``,
    ``"weight decay 0"``, ``"warmup_epochs 0"``, ``"no batch milestones"``."""
    if field == "weight_decay_mode":
        return "weight decay 0"
    if field in ("weight_decay_schedule", "weight_decay_end"):
        return "weight decay constant (weight_decay_end = weight_decay)"
    if field == "warmup_start":
        return "warmup_epochs 0"
    if field == "batch_factor":
        return "no batch milestones"
    what = "optimizer" if field in ("momentum", "b1", "b2") else "schedule"
    kinds = sorted({getattr(m, what) for m in members})
    return f"{what} {', '.join(kinds)}"


def comparable(member: Member) -> Member:
    """The member with its unused fields and tags cleared: equal for two
    members exactly when they train the same."""
    return member.replace(tags=(), **dict.fromkeys(unused(member)))


_BRIEF = ("model", "batch_size", "lr", "schedule", "seed")


def describe(member: Member, brief: bool = False) -> str:
    """A short text naming the member: its set fields (``brief``: only model,
    batch size, LR, schedule and seed, and its tags)."""
    d = member.to_dict()
    tags = d.pop("tags", {})
    if brief:
        d = {k: d[k] for k in _BRIEF if k in d} | tags
    return ", ".join(f"{k}={v}" for k, v in d.items())


TAG_PREFIX = "tag:"
# Names people write for a recipe field, where difflib finds nothing better.
_ALIASES = {
    "learning_rate": "lr", "learningrate": "lr", "bs": "batch_size",
    "batch": "batch_size", "wd": "weight_decay", "opt": "optimizer",
    "optim": "optimizer", "sched": "schedule", "mom": "momentum",
}  # fmt: skip


def read_members_file(path: str, reserved: Sequence[str] = ()) -> list[Member]:
    """Members from a CSV file (a header row, one member per row) or a JSON
    list of objects (or ``{"members": [...]}``).

    A column (a key) is a recipe field (a field of :class:`Member`) or a tag
    declared with the prefix ``tag:``: the column ``tag:arm`` is the tag
    ``arm``, a column of ``members.csv``; a JSON object may also hold its tags
    as ``"tags": {"arm": ...}``. Empty cells are unset. Anything else (an
    unknown column, a row with more or fewer fields than the header, a file
    separated by ``;`` or tabs) is a one-line ValueError that names the file,
    the row (members count from 1) and the fix."""
    import json
    import os

    if not os.path.isfile(path):
        raise ValueError(f"--members: no such file {path!r}")
    where = f"--members {path}"
    try:
        if path.endswith(".json"):
            rows = _json_rows(path, where)
        else:
            rows = _csv_rows(path, where)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON: {err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not UTF-8 text ({err.reason})") from None
    if not rows:
        raise ValueError(f"{where}: no members in the file")
    return [_member_from_row(row, path, n, reserved) for n, row in rows]


def _csv_rows(path: str, where: str) -> list[tuple[int, dict]]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return []
        header = [h.strip() for h in header]
        for sep, name in ((";", "';'"), ("\t", "tabs")):
            if len(header) == 1 and sep in header[0]:
                fixed = ",".join(h.strip() for h in header[0].split(sep))
                raise ValueError(
                    f"{where} (the header): one column {header[0]!r} separated by "
                    f"{name}; a members file is comma-separated: write the "
                    f"header as {fixed} and the rows likewise"
                )
        for i, name in enumerate(header):
            if not name:
                raise ValueError(
                    f"{where} (the header): column {i + 1} has no name; name it "
                    "or remove the extra comma"
                )
            if name in header[:i]:
                raise ValueError(
                    f"{where} (the header): the column {name!r} appears twice; "
                    "keep one of them"
                )
        rows = []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            n = len(rows) + 1
            if len(row) != len(header):
                raise ValueError(
                    f"{where} (row {n}, line {reader.line_num}): {len(row)} fields, "
                    f"the header has {len(header)}; give every row one value per "
                    "column (an empty cell takes the sweep's default)"
                )
            rows.append((n, dict(zip(header, row))))
    return rows


def _json_rows(path: str, where: str) -> list[tuple[int, dict]]:
    import json

    with open(path, encoding="utf-8-sig") as f:
        rows = json.load(f)
    if isinstance(rows, dict):
        rows = rows.get("members", rows)
    example = '{"lr": 0.1, "tag:arm": "a"}'
    if not isinstance(rows, list):
        raise ValueError(
            f"{where}: expected a JSON list of objects like [{example}], got "
            f"{type(rows).__name__}"
        )
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(
                f"{where} (row {n}): expected an object like {example}, got "
                f"{json.dumps(row)[:60]}"
            )
    return list(enumerate(rows, 1))


def _member_from_row(row: Mapping, path: str, n: int, reserved=()) -> Member:
    """A :class:`Member` from row ``n`` of the members file ``path``; a tag
    may not take a field's name or one of ``reserved`` (members.csv's
    other columns)."""
    where = f"--members {path} (row {n})"
    fields = [f.name for f in dataclasses.fields(Member) if f.name != "tags"]
    taken = {*fields, *reserved}
    known, tags = {}, {}
    for key, value in row.items():
        name = str(key).strip()
        if name in fields:
            known[name] = value
            continue
        if name == "tags":
            if not isinstance(value, Mapping):
                raise ValueError(
                    f'{where}: \'tags\' must be a JSON object like {{"arm": "a"}}; '
                    "in a CSV file give each tag a column of its own, named with "
                    "the prefix 'tag:' (tag:arm)"
                )
            declared = {str(k).strip(): v for k, v in value.items()}
        elif name.startswith(TAG_PREFIX):
            declared = {name[len(TAG_PREFIX) :].strip(): value}
        else:
            raise ValueError(_unknown_column(name, fields, path, n))
        for tag, v in declared.items():
            if not tag:
                raise ValueError(
                    f"{where}: a tag needs a name after the prefix 'tag:' (tag:arm)"
                )
            if tag in taken:
                raise ValueError(
                    f"{where}: the tag {tag!r} would overwrite the column {tag!r} "
                    "of members.csv; give it another name"
                )
            if v is not None and not (isinstance(v, str) and not v.strip()):
                tags[tag] = v
    try:
        return Member.from_dict({**known, "tags": tags})
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {err}") from None


def _unknown_column(name: str, fields: Sequence[str], path: str, n: int) -> str:
    """The error for a column that is neither a recipe field nor a tag: the
    nearest field name, and how to declare a tag."""
    import difflib

    lower = name.lower().replace("-", "_").replace(" ", "_")
    close = [lower] if lower in fields else []
    close = close or ([_ALIASES[lower]] if lower in _ALIASES else [])
    close = close or difflib.get_close_matches(lower, fields, n=1)
    hint = (
        f"did you mean {close[0]!r}?"
        if close
        else f"the recipe fields are {', '.join(fields)}."
    )
    what = "key" if path.endswith(".json") else "column"
    return (
        f"--members: unknown {what} {name!r} in {path} (row {n}); {hint} A {what} "
        f"of your own needs the prefix 'tag:' (tag:{name})"
    )
