"""The sweep's configuration: one schema, in sections that validate themselves.

Every field is declared once, here, with its type, default and help text. The
command line (``jaxbatch.cli``), ``config.json`` and the resume check all
derive from these declarations: adding a field here adds its flag, its
``--help`` line and its place in ``config.json``.

Sections: :class:`DataConfig`, :class:`ModelConfig` (``network``),
:class:`MembersConfig`
(the grid or list of member recipes), :class:`RecipeConfig` (defaults of every
member's recipe), :class:`OptimConfig`, :class:`ControlConfig`,
:class:`EvalConfig` and :class:`ExecConfig`. Field names are unique across
sections, so ``SweepConfig(lrs=(0.1,), epochs=5)`` routes each keyword to its
section.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import jax

from jaxbatch import choices, data, models, optim, recipes, results, schedules


def field(default, help: str, *, flag: str | None = None, parse: str | None = None):
    """A config field with its ``--help`` text.

    ``flag``: the command-line name if not ``--<name-with-dashes>``; ``parse``:
    how to read the flag's text when the type alone does not say (see cli).
    """
    meta = {"help": help, "flag": flag, "parse": parse}
    return dataclasses.field(default=default, metadata=meta)


def _positive(name, value, *, integer=False):
    ok = isinstance(value, int | float) and value > 0 and math.isfinite(value)
    if not ok or (integer and int(value) != value):
        kind = "a positive integer" if integer else "positive"
        raise ValueError(f"{name} must be {kind}, got {name}={value!r}")


def _nonempty(name, values):
    if not values:
        raise ValueError(f"{name} needs at least one value, got an empty list")


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"unknown {name} {value!r}; choose one of {', '.join(map(str, choices))}"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    dataset: str = field(
        "fashion_mnist",
        "dataset: fashion_mnist (default, offline), "
        "imagefolder (with --data-dir), synthetic, or a tfds name",
    )
    data_dir: str | None = field(
        None,
        "directory of the dataset's files (IDX files, "
        "or one sub-folder per class for imagefolder)",
    )
    train_size: int | None = field(None, "training examples (a fixed, seeded subset)")
    val_size: int | None = field(None, "validation examples (a fixed, seeded subset)")
    image_size: int | None = field(None, "resize images to this many pixels a side")
    data_seed: int = field(0, "seed of the train/val subset and split")

    def validate(self):
        for name in ("train_size", "val_size", "image_size"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name), integer=True)

    def load(self) -> data.Dataset:
        """The dataset these settings name, split into train and validation."""
        return data.load(
            self.dataset,
            data_dir=self.data_dir,
            train_size=self.train_size,
            val_size=self.val_size,
            seed=self.data_seed,
            image_size=self.image_size,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    model: str = field(
        "alexnet_small", "model: " + ", ".join(models.available_models())
    )
    models: tuple[str, ...] = field(
        (),
        "comma-separated models compared in one "
        "sweep, one group each (overrides --model)",
    )
    model_kwargs: tuple[tuple[str, Any], ...] = field(
        (),
        "model options, e.g. width=0.5 small_input=True (a --model other than "
        "the preset's drops the preset's options)",
        parse="kwargs",
    )
    model_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = field(
        (), "per-model options (research code only)", parse="none"
    )
    init_from: str | None = field(
        None,
        "start every member from a finished run's weights: RUN_DIR[:MEMBER] "
        "(default member: the run's best by validation accuracy); a head whose "
        "class count differs is initialised afresh",
    )

    def model_list(self) -> tuple[str, ...]:
        return tuple(self.models) or (self.model,)

    def kwargs_for(self, name: str) -> tuple[tuple[str, Any], ...]:
        """The model options ``name`` gets: shared ones it accepts, then its own."""
        accepted = models.model_kwargs(name)
        kw = {k: v for k, v in self.model_kwargs if k in accepted}
        kw.update(dict(dict(self.model_options).get(name, ())))
        return tuple(sorted(kw.items()))

    def validate(self):
        for name in self.model_list():
            _choice("model", name, models.available_models())
        if self.init_from is not None:
            results.params_path(*results.parse_run_member(self.init_from))
        unused = set(dict(self.model_kwargs)) - {
            k for name in self.model_list() for k in models.model_kwargs(name)
        }
        if unused:
            raise ValueError(
                f"model option(s) {sorted(unused)} are not accepted by "
                f"{', '.join(self.model_list())}"
            )
        for name in self.model_list():
            try:  # building a module is cheap and checks every value
                models.get_model(name, num_classes=2, **dict(self.kwargs_for(name)))
            except TypeError as err:
                raise ValueError(str(err)) from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class MembersConfig:
    """The member list: a grid over these axes (or an explicit recipe list)."""

    batch_sizes: tuple[int, ...] = field(
        (32, 64), "comma-separated batch sizes; each is one compiled group"
    )
    lrs: tuple[float, ...] = field(
        (0.01, 0.02), "comma-separated peak learning rates, trained together"
    )
    weight_decays: tuple[float, ...] = field((0.0,), "comma-separated weight decays")
    momentums: tuple[float, ...] = field((0.9,), "comma-separated momentum values")
    seeds: tuple[int, ...] = field(
        (0,), "comma-separated member seeds (init, data order, dropout)"
    )
    schedules: tuple[str, ...] = field(
        ("step",),
        "comma-separated LR schedules, "
        "trained together: " + ", ".join(recipes.SCHEDULE_KINDS),
        flag="--schedule",
    )
    weight_decay_modes: tuple[str, ...] = field(
        ("l2",),
        "comma-separated weight-decay modes, trained together: l2 "
        "(coupled), decoupled (SGDW/AdamW), l1",
        flag="--weight-decay-mode",
    )
    search: str = field(
        "grid",
        "grid (the product of the lists) or random:N "
        "(N log-uniform draws of LR, weight decay, momentum per "
        "batch size and seed; see --lr-range)",
    )
    lr_range: tuple[float, ...] = field(
        (1e-5, 1e-1), "random search: LR range low,high (log-uniform)"
    )
    weight_decay_range: tuple[float, ...] = field(
        (1e-7, 1e-1), "random search: weight decay range low,high"
    )
    momentum_range: tuple[float, ...] = field(
        (1e-3, 1e-1), "random search: range of 1 - momentum, low,high"
    )
    search_seed: int = field(0, "random search: seed of the draws")
    lr_scaling: str = field(
        "none",
        "scale each LR from --base-batch-size to the "
        "member's batch size: none, linear or sqrt",
    )
    base_batch_size: int | None = field(
        None, "batch size the LRs were tuned at (for --lr-scaling)"
    )
    members_file: str | None = field(
        None,
        "CSV or JSON file, one member per "
        "row/object (columns: any recipe field, e.g. "
        "batch_size,lr,schedule,seed); replaces the grid",
        flag="--members",
    )
    recipes: tuple[recipes.Member, ...] = field(
        (), "explicit member recipes (research code; replaces the grid)", parse="none"
    )

    def validate(self):
        _choice("lr_scaling", self.lr_scaling, recipes.LR_SCALING_RULES)
        if self.lr_scaling != "none":
            if self.base_batch_size is None:
                raise ValueError("--lr-scaling needs --base-batch-size B")
            _positive("base_batch_size", self.base_batch_size, integer=True)
        if self.recipes or self.members_file:
            return
        for name in ("batch_sizes", "lrs", "weight_decays", "momentums", "seeds",
                     "schedules", "weight_decay_modes"):  # fmt: skip
            _nonempty(name, getattr(self, name))
        for kind in self.schedules:
            _choice("schedule", kind, recipes.SCHEDULE_KINDS)
        for mode in self.weight_decay_modes:
            _choice("weight_decay_mode", mode, optim.WEIGHT_DECAY_MODES)
        self.random_count()
        for name in ("lr_range", "weight_decay_range", "momentum_range"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
                raise ValueError(
                    f"{name} must be low,high with 0 < low <= high, got {lo_hi}"
                )
        for name in ("batch_sizes", "lrs", "weight_decays", "momentums", "seeds"):
            values = getattr(self, name)
            if self.random_count() and name in ("lrs", "weight_decays", "momentums"):
                continue
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                raise ValueError(
                    f"{name} lists {dup} twice: duplicated members would train "
                    "identical twins; give each value once"
                )

    def random_count(self) -> int:
        """N of ``search="random:N"``, 0 for a grid."""
        if self.search == "grid":
            return 0
        kind, _, n = self.search.partition(":")
        if kind != "random" or not n.isdigit() or int(n) < 1:
            raise ValueError(
                f"search must be 'grid' or 'random:N', got {self.search!r}"
            )
        return int(n)

    def drawn(self) -> int:
        """N when the members are ``N`` random draws per cell, else 0."""
        return 0 if self.recipes or self.members_file else self.random_count()

    def _random_cells(self):
        """The (batch size, seed, schedule, mode) cells of a random search;
        each draws the same ``N`` configurations."""
        return itertools.product(
            self.batch_sizes, self.seeds, self.schedules, self.weight_decay_modes
        )

    def random_corners(self, model_list: tuple[str, ...]) -> list[recipes.Member]:
        """Two members per cell of a random search, at the low and the high end
        of every range: what validation checks instead of the draws, which
        would start JAX."""
        (lr_lo, lr_hi), (wd_lo, wd_hi), (m_lo, m_hi) = (
            self.lr_range,
            self.weight_decay_range,
            self.momentum_range,
        )
        ends = [(lr_lo, wd_lo, 1 - m_hi), (lr_hi, wd_hi, 1 - m_lo)]
        return [
            recipes.Member(
                model=name, batch_size=bs, seed=seed, schedule=kind,
                weight_decay_mode=mode, lr=recipes.round_draw(lr),
                weight_decay=recipes.round_draw(wd), momentum=recipes.round_draw(m),
            )
            for name in model_list
            for bs, seed, kind, mode in self._random_cells()
            for lr, wd, m in ends
        ]  # fmt: skip

    def members(self, model_list: tuple[str, ...]) -> list[recipes.Member]:
        """The member list (models outermost), before defaults are filled in."""
        if self.recipes:
            base = list(self.recipes)
        elif self.members_file:
            base = recipes.read_members_file(self.members_file)
        else:
            base = None
        if base is not None:
            out = base
            if len(model_list) > 1:
                out = [m if m.model else m.replace(model=name)
                       for name in model_list for m in base]  # fmt: skip
            return self._scaled(out)
        out = []
        n = self.random_count()
        for name in model_list:
            if n:
                for bs, seed, kind, mode in self._random_cells():
                    out += recipes.random(
                        jax.random.PRNGKey(self.search_seed), n,
                        lr_range=tuple(self.lr_range),
                        weight_decay_range=tuple(self.weight_decay_range),
                        one_minus_momentum_range=tuple(self.momentum_range),
                        model=name, batch_size=bs, seed=seed, schedule=kind,
                        weight_decay_mode=mode,
                    )  # fmt: skip
            else:
                out += recipes.grid(
                    model=name, batch_size=self.batch_sizes, lr=self.lrs,
                    weight_decay=self.weight_decays, momentum=self.momentums,
                    schedule=self.schedules, weight_decay_mode=self.weight_decay_modes,
                    seed=self.seeds,
                )  # fmt: skip
        return self._scaled(out)

    def _scaled(self, members: list[recipes.Member]) -> list[recipes.Member]:
        if self.lr_scaling == "none":
            return members
        defaults = {"lr": self.lrs[0], "batch_size": self.batch_sizes[0]}
        filled = [
            m.replace(**{k: v for k, v in defaults.items() if getattr(m, k) is None})
            for m in members
        ]
        return recipes.scale_lr(filled, self.lr_scaling, self.base_batch_size)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecipeConfig:
    """Defaults of every member's recipe (a member may set its own)."""

    gamma: float = field(0.1, "LR factor of step/multistep decay, in (0, 1]")
    decay_epochs: float | None = field(
        None, "step decay period in epochs (default: half of training)"
    )
    milestones: tuple[float, ...] = field((), "multistep decay epochs, e.g. 30,60,80")
    decay_rate: float = field(
        0.1, "k of exponential exp(-k t) and 1/t 1/(1+k t)^p decay, t in epochs"
    )
    power: float = field(1.0, "p of the 1/t decay")
    warmup_epochs: float = field(0.0, "linear LR warmup over N epochs")
    warmup_start: float = field(
        0.0, "warmup starts at this fraction of the LR (Goyal et al.: 1/k)"
    )
    batch_milestones: tuple[int, ...] = field(
        (), "multiply the batch size by --batch-factor at these epochs"
    )
    batch_factor: float = field(1.0, "batch-size factor at each batch milestone")
    plateau_factor: float | None = field(
        None,
        "multiply a member's LR by this when "
        "--control-metric stalls (every member; "
        "schedule 'plateau' defaults to 0.5)",
    )
    lr_max: float = field(
        10.0, "schedule 'range' (LR range test): the LR at the end of the run"
    )
    b1: float = field(0.9, "Adam beta1")
    b2: float = field(0.999, "Adam beta2")

    def validate(self):
        if self.decay_epochs is not None:
            _positive("decay_epochs", self.decay_epochs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimConfig:
    optimizer: str = field("sgd", "sgd, adam, adamw or rmsprop")
    nesterov: bool = field(False, "Nesterov momentum (sgd)")
    decay_mask: str | None = field(
        None, "parameters weight decay skips: no_bias_bn, or a regex of parameter paths"
    )
    lr_multipliers: tuple[tuple[str, float], ...] = field(
        (),
        "per-layer LR multipliers, regex=multiplier pairs, e.g. "
        "'Conv_0=0.1,bias=2' (a parameter gets the product of its matches)",
        parse="multipliers",
    )
    freeze: tuple[str, ...] = field(
        (), "comma-separated regexes of parameters kept fixed (LR multiplier 0)"
    )

    def validate(self):
        _choice("optimizer", self.optimizer, optim.OPTIMIZERS)
        for pattern in (*dict(self.lr_multipliers), *self.freeze):
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"bad parameter regex {pattern!r}: {err}") from None
        for pattern, mult in self.lr_multipliers:
            if not (
                isinstance(mult, int | float) and mult >= 0 and math.isfinite(mult)
            ):
                raise ValueError(
                    f"lr multiplier for {pattern!r} must be >= 0, got {mult!r}"
                )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ControlConfig:
    plateau_patience: int = field(
        10, "evaluations without improvement before the LR is reduced"
    )
    plateau_threshold: float = field(1e-4, "relative improvement that counts")
    plateau_cooldown: int = field(0, "evaluations to wait after a reduction")
    plateau_min_scale: float = field(0.0, "the LR scale never falls below this")
    plateau_stop_scale: float | None = field(
        None, "stop a member once its LR scale falls to this (e.g. 0.0009765625)"
    )
    early_stop_patience: int | None = field(
        None, "stop a member after N evaluations without improvement"
    )
    early_stop_min_delta: float = field(
        0.0, "improvement that counts for early stopping"
    )
    control_metric: str = field(
        "val_loss",
        "val_loss or val_acc, watched by the plateau and early-stopping rules",
    )

    def validate(self):
        _choice("control_metric", self.control_metric, ("val_loss", "val_acc"))
        self.rules(0.5)

    def rules(self, plateau_factor: float | None) -> dict:
        """``plateau`` and ``early_stopping`` rules for ``engine.TrainSpec``.

        The plateau rule's factor is per member (data); the group's rule carries
        the rest.
        """
        mode = "max" if self.control_metric == "val_acc" else "min"
        plateau = early = None
        if plateau_factor is not None:
            plateau = schedules.ReduceOnPlateau(
                factor=0.5,
                patience=self.plateau_patience,
                mode=mode,
                threshold=self.plateau_threshold,
                cooldown=self.plateau_cooldown,
                min_scale=self.plateau_min_scale,
                stop_scale=self.plateau_stop_scale,
            )
        if self.early_stop_patience is not None:
            early = schedules.EarlyStopping(
                patience=self.early_stop_patience,
                mode=mode,
                min_delta=self.early_stop_min_delta,
            )
        return {"plateau": plateau, "early_stopping": early}


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalConfig:
    epochs: int = field(10, "training epochs")
    eval_every: int = field(
        50,
        "evaluate the whole validation set every N "
        "iterations (and at the end of every epoch)",
    )
    eval_batch_size: int = field(500, "batch size of evaluation")
    train_eval_size: int | None = field(
        None,
        "training images evaluated with the "
        "final parameters (default: as many as the "
        "validation set)",
    )
    test: bool = field(True, "evaluate the final parameters on the test split")
    drop_last: bool = field(
        False,
        "drop the remainder of each epoch instead of "
        "training it as a smaller last batch",
    )
    probes: tuple[str, ...] = field(
        (),
        "comma-separated probes: update_ratio, grad_norm, param_norm (every "
        "step, overall and per layer), noise_scale (gradient noise scale at "
        "every evaluation), sharpness (Hessian top eigenvalue and "
        "epsilon-sharpness of the final parameters)",
    )
    probe_size: int = field(
        1024, "training images the noise_scale and sharpness probes use"
    )
    probe_every: int = field(
        10,
        "run the step probes (update_ratio, grad_norm, param_norm) every Nth "
        "step; the other steps are the program without them",
    )
    noise_every: int = field(
        10,
        "estimate the noise scale at every Nth evaluation (and the last); one "
        "estimate costs about 40 steps of a small MLP",
    )
    sharpness_eps: tuple[float, ...] = field(
        (1e-3, 5e-4), "epsilon values of the epsilon-sharpness (Keskar et al.)"
    )
    interpolate: tuple[int, ...] = field(
        (),
        "two member numbers A,B: after training, loss and accuracy along the "
        "line between their final parameters (interpolation.csv)",
    )

    def validate(self):
        choices.check_probes(self.probes)
        _positive("probe_size", self.probe_size, integer=True)
        _positive("noise_every", self.noise_every, integer=True)
        _positive("probe_every", self.probe_every, integer=True)
        if "noise_scale" in self.probes and self.probe_size < 2 * choices.NOISE_PARTS:
            raise ValueError(
                f"noise_scale needs probe_size >= {2 * choices.NOISE_PARTS}, "
                f"got {self.probe_size}"
            )
        _nonempty("sharpness_eps", self.sharpness_eps)
        for eps in self.sharpness_eps:
            _positive("sharpness_eps", eps)
        if self.interpolate and (
            len(self.interpolate) != 2 or len(set(self.interpolate)) != 2
        ):
            raise ValueError(
                f"interpolate takes two different member numbers A,B, got "
                f"{self.interpolate}"
            )
        _positive("epochs", self.epochs, integer=True)
        _positive("eval_every", self.eval_every, integer=True)
        _positive("eval_batch_size", self.eval_batch_size, integer=True)
        if self.train_eval_size is not None:
            _positive("train_eval_size", self.train_eval_size, integer=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExecConfig:
    strategy: str = field(
        "auto",
        "member axis: auto (time the candidates, pick the "
        "fastest), vmap, map, unroll, loop or chunk:N",
    )
    steps_per_call: int = field(1, "training steps per compiled call")
    unroll: bool = field(False, "unroll the scan over --steps-per-call steps")
    devices: int = field(
        1,
        "shard the members over N devices (0: all); on a CPU-only machine N > 1 "
        "makes the CPU N devices, one block of members per core (faster for "
        "conv sweeps of many members)",
    )
    precision: str = field("float32", "float32 or bfloat16 (mixed precision)")
    compile_cache: bool = field(
        True, "keep compiled programs in the persistent compilation cache"
    )

    def validate(self):
        choices.parse_strategy(self.strategy)
        _positive("steps_per_call", self.steps_per_call, integer=True)
        choices.check_precision(self.precision)
        # how many devices this machine has is checked when the run starts
        # (asking would start JAX, before its flags are chosen)
        if not (isinstance(self.devices, int) and self.devices >= 0):
            raise ValueError(
                f"devices must be 0 (all) or a positive count, got {self.devices!r}"
            )


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "network": ModelConfig,
    "members": MembersConfig,
    "recipe": RecipeConfig,
    "optim": OptimConfig,
    "control": ControlConfig,
    "evaluation": EvalConfig,
    "execution": ExecConfig,
}
# field name -> section name (names are unique across sections)
FIELD_SECTION: dict[str, str] = {
    f.name: section
    for section, cls in SECTIONS.items()
    for f in dataclasses.fields(cls)
}


def _check_unique_names():
    seen = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name in seen:
                raise AssertionError(f"{f.name} in {seen[f.name]} and {section}")
            seen[f.name] = section


_check_unique_names()

# Old flat names kept working (``--schedule step`` is a one-value list).
_ALIASES = {
    "schedule": "schedules",
    "weight_decay_mode": "weight_decay_modes",
}


def _normalize(name: str, value):
    """Values as the field's type: lists as tuples, dicts as sorted pairs."""
    if name in ("schedules", "weight_decay_modes", "models") and isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if name in ("lr_multipliers", "model_kwargs") and isinstance(value, Mapping):
        return tuple(value.items())
    if name == "recipes":
        return tuple(
            v if isinstance(v, recipes.Member) else recipes.Member.from_dict(v)
            for v in value
        )
    if name == "model_options" and isinstance(value, Mapping):
        return tuple((k, _normalize("model_kwargs", v)) for k, v in value.items())
    return _tuples(value)


def _tuples(value):
    """Lists (from JSON) as tuples, recursively; other values as they are."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


class SweepConfig:
    """Everything that defines a sweep, in sections (see the module docstring).

    Build it from flat keywords, ``SweepConfig(model="mlp", lrs=(0.1, 0.3))``,
    or from sections, ``SweepConfig(data=DataConfig(...))``. Every field reads
    back as an attribute (``config.epochs``). Immutable and hashable; validated
    on construction, before any data is loaded or anything compiles.
    """

    __slots__ = ("experiment", *SECTIONS)

    def __init__(self, *, experiment: str = "sweep", **values):
        object.__setattr__(self, "experiment", experiment)
        flat: dict[str, dict] = {s: {} for s in SECTIONS}
        for key, value in values.items():
            if key in SECTIONS and dataclasses.is_dataclass(value):
                flat[key] = {**dataclasses.asdict(value), **flat[key]}
                continue
            name = _ALIASES.get(key, key)
            if name not in FIELD_SECTION:
                known = ", ".join(sorted(FIELD_SECTION))
                raise ValueError(f"unknown setting {key!r}; known: {known}")
            flat[FIELD_SECTION[name]][name] = _normalize(name, value)
        if "recipes" in flat["members"]:
            flat["members"]["recipes"] = _normalize(
                "recipes", flat["members"]["recipes"]
            )
        for section, cls in SECTIONS.items():
            try:
                obj = cls(**flat[section])
            except TypeError as err:
                raise ValueError(f"{section}: {err}") from None
            object.__setattr__(self, section, obj)
        self.validate()

    def __setattr__(self, name, value):
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __getattr__(self, name):
        section = FIELD_SECTION.get(_ALIASES.get(name, name))
        if section is None:
            raise AttributeError(name)
        return getattr(object.__getattribute__(self, section), _ALIASES.get(name, name))

    def model_list(self) -> tuple[str, ...]:
        return self.network.model_list()

    def kwargs_for(self, name: str):
        return self.network.kwargs_for(name)

    def replace(self, **changes) -> SweepConfig:
        """A copy with some fields (flat names or sections) changed."""
        flat = self.flat()
        flat.update(changes)
        return SweepConfig(**flat)

    def flat(self) -> dict:
        out = {"experiment": self.experiment}
        for section in SECTIONS:
            obj = object.__getattribute__(self, section)
            out.update({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
        return out

    def validate(self) -> None:
        """Every section's values and every member's; plain Python, so nothing
        starts JAX (a random search's draws are checked at their ranges' ends
        and drawn when the sweep plans its groups)."""
        for section in SECTIONS:
            object.__getattribute__(self, section).validate()
        if self.members.drawn():
            n = self._check_random_search()
        else:
            n = len(self.resolved_members())  # every member checks its own values
        bad = [m for m in self.interpolate if not 0 <= m < n]
        if bad:
            raise ValueError(
                f"interpolate names members {bad}, but the sweep has members 0..{n - 1}"
            )

    # --- members -------------------------------------------------------------

    def resolve(self, member: recipes.Member, index: int) -> recipes.Member:
        """A member with every unset field taken from the sweep's defaults."""
        rc = self.recipe
        oc = self.optim
        ev = self.evaluation
        mc = self.members
        # Recipe defaults: the RecipeConfig field of the same name, the first
        # value of a grid list, or a setting of another section.
        defaults = {f.name: getattr(rc, f.name) for f in dataclasses.fields(rc)}
        defaults.update(
            model=self.model_list()[0],
            batch_size=mc.batch_sizes[0] if mc.batch_sizes else None,
            lr=mc.lrs[0] if mc.lrs else None,
            schedule=mc.schedules[0] if mc.schedules else "step",
            optimizer=oc.optimizer,
            momentum=mc.momentums[0] if mc.momentums else 0.9,
            weight_decay=mc.weight_decays[0] if mc.weight_decays else 0.0,
            weight_decay_mode=(mc.weight_decay_modes or ("l2",))[0],
            seed=mc.seeds[0] if mc.seeds else 0,
        )
        values = {k: v for k, v in member.to_dict().items() if k != "tags"}
        m = member.replace(**{**defaults, **values})
        if m.decay_epochs is None:
            m = m.replace(decay_epochs=ev.epochs / 2)
        own = dict(m.lr_multipliers or ())
        mults = {**dict(oc.lr_multipliers), **own, **{p: 0.0 for p in oc.freeze}}
        m = m.replace(lr_multipliers=tuple(mults.items()))
        if m.plateau_factor is None:
            m = m.replace(plateau_factor=0.5 if m.schedule == "plateau" else 1.0)
        if m.optimizer == "adamw":  # AdamW is Adam with decoupled decay
            m = m.replace(optimizer="adam", weight_decay_mode="decoupled")
        if m.optimizer in ("adam",) and "momentum" not in values:
            m = m.replace(momentum=0.0)
        if m.model not in models.available_models():
            raise ValueError(
                f"member {index}: unknown model {m.model!r}; choose one of "
                f"{', '.join(models.available_models())}"
            )
        _choice("optimizer", m.optimizer, optim.OPTIMIZERS)
        _choice("weight_decay_mode", m.weight_decay_mode, optim.WEIGHT_DECAY_MODES)
        recipes.check(m)
        return m

    def _check_random_search(self) -> int:
        """Check a random search without drawing it; returns its member count."""
        mc = self.members
        corners = mc.random_corners(self.model_list())
        for i, m in enumerate(corners):
            self.resolve(m, i)
        n = len(corners) // 2 * mc.drawn()
        degenerate = all(lo == hi for lo, hi in (
            mc.lr_range, mc.weight_decay_range, mc.momentum_range))  # fmt: skip
        if degenerate and mc.drawn() > 1:
            raise ValueError(
                f"search {mc.search} draws {mc.drawn()} identical members: every "
                "range is a single value; widen --lr-range (or another range)"
            )
        return n

    def resolved_members(self) -> list[recipes.Member]:
        """Every member with its full recipe; refuses an empty list and twins."""
        mc = self.members
        members = [
            self.resolve(m, i) for i, m in enumerate(mc.members(self.model_list()))
        ]
        if not members:
            raise ValueError("the sweep has no members")
        seen = {}
        for i, m in enumerate(members):
            key = m.replace(tags=())
            if key in seen:
                raise ValueError(
                    f"members {seen[key]} and {i} are identical "
                    f"({recipes.describe(key)}): they would train twins; change a "
                    "value (e.g. the seed) or drop one"
                )
            seen[key] = i
        return members

    # --- serialization -----------------------------------------------------------

    def to_dict(self) -> dict:
        d = {"experiment": self.experiment}
        for section in SECTIONS:
            obj = object.__getattribute__(self, section)
            sd = {}
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if f.name in ("model_kwargs", "lr_multipliers"):
                    value = dict(value)
                elif f.name == "model_options":
                    value = {name: dict(kw) for name, kw in value}
                elif f.name == "recipes":
                    value = [m.to_dict() for m in value]
                sd[f.name] = value
            d[section] = sd
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: Mapping) -> SweepConfig:
        """The config of ``to_dict()`` (e.g. read back from ``config.json``)."""
        flat = {"experiment": d.get("experiment", "sweep")}
        for section in SECTIONS:
            for name, value in dict(d.get(section) or {}).items():
                if name == "model_kwargs":
                    value = tuple(sorted((k, _tuples(v)) for k, v in value.items()))
                elif name == "model_options":
                    value = tuple(
                        (n, tuple(sorted((k, _tuples(v)) for k, v in kw.items())))
                        for n, kw in value.items()
                    )
                flat[name] = value
        return cls(**flat)

    def __eq__(self, other):
        return isinstance(other, SweepConfig) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self):
        return f"SweepConfig({self.to_dict()!r})"
