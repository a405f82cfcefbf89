"""The sections of a sweep's configuration, each a dataclass that validates
itself: data, model, recipe defaults, optimizer, control rules, evaluation
and execution (the member list is :mod:`jaxbatch.config.members`).

Every field is declared once, with its default and help text (:func:`field`):
the command line, ``config.json`` and the resume check derive from it.
Plain Python: validating starts no JAX.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from jaxbatch import choices, data, models, optim, results, schedules


def field(default, help: str, *, flag: str | None = None, parse: str | None = None):
    """A config field with its ``--help`` text.

    ``flag``: the command-line name if not ``--<name-with-dashes>``; ``parse``:
    how to read the flag's text when the type alone does not say (see cli).
    """
    meta = {"help": help, "flag": flag, "parse": parse}
    return dataclasses.field(default=default, metadata=meta)


def must_be_positive(name, value, *, integer=False):
    ok = isinstance(value, int | float) and value > 0 and math.isfinite(value)
    if not ok or (integer and int(value) != value):
        kind = "a positive integer" if integer else "positive"
        raise ValueError(f"{name} must be {kind}, got {name}={value!r}")


def must_be_in(name, value, low, high, *, what=""):
    """``low <= value <= high`` and finite (NaN and inf refused by name)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and low <= value <= high):
        finite = " (not a finite number)" if number and not math.isfinite(value) else ""
        raise ValueError(
            f"{name} must be a number in [{low:g}, {high:g}]{what}, got "
            f"{value!r}{finite}"
        )


def must_not_be_empty(name, values):
    if not values:
        raise ValueError(f"{name} needs at least one value, got an empty list")


def must_be_one_of(name, value, choices):
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
                must_be_positive(name, getattr(self, name), integer=True)
        if not (isinstance(self.data_seed, int) and 0 <= self.data_seed < 2**31):
            raise ValueError(
                f"data_seed must be an integer in [0, 2**31), got {self.data_seed!r}"
            )

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
            must_be_one_of("model", name, models.available_models())
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
    weight_decay_schedule: str = field(
        "constant",
        "the weight decay over training: constant, or linear / exponential from "
        "the member's weight decay (--weight-decays) at the start to "
        "--weight-decay-end at the end",
    )
    augment: str = field(
        "",
        "data augmentation on the device, from each member's seed: crop:P (a "
        "random crop of the image padded by P pixels) and/or flip (horizontal, "
        "probability 0.5), e.g. crop:4,flip; default none",
    )
    weight_decay_end: float | None = field(
        None,
        "the weight decay at the end of training under a linear or exponential "
        "--weight-decay-schedule (default: the start's: constant)",
    )

    def validate(self):
        if self.decay_epochs is not None:
            must_be_positive("decay_epochs", self.decay_epochs)
        from jaxbatch.recipes import WD_SCHEDULES

        must_be_one_of(
            "weight_decay_schedule", self.weight_decay_schedule, WD_SCHEDULES
        )


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
        must_be_one_of("optimizer", self.optimizer, optim.OPTIMIZERS)
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


PLATEAU_PATIENCE = 10  # evaluations, when neither form of the patience is given
EVAL_EVERY = 50  # iterations, when neither form of the cadence is given
# Settings given in either of two units: (the count form, the epoch form).
# Either may be given, not both (a flag of one form replaces a preset's other).
EPOCH_FORMS = (
    ("eval_every", "eval_every_epochs"),
    ("plateau_patience", "plateau_patience_epochs"),
    ("early_stop_patience", "early_stop_patience_epochs"),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ControlConfig:
    plateau_patience: int | None = field(
        None,
        "EVALUATIONS without improvement before the LR is reduced (default 10; "
        "how many epochs that is depends on the cadence and the batch size; "
        "or --plateau-patience-epochs, not both)",
    )
    plateau_patience_epochs: float | None = field(
        None,
        "EPOCHS without improvement before the LR is reduced (at the first "
        "evaluation X epochs or more after the best): each group turns X into "
        "its count of evaluations, so every batch size waits as many epochs "
        "(or --plateau-patience)",
    )
    plateau_threshold: float = field(1e-4, "relative improvement that counts")
    plateau_cooldown: int = field(0, "evaluations to wait after a reduction")
    plateau_min_scale: float = field(0.0, "the LR scale never falls below this")
    plateau_stop_scale: float | None = field(
        None, "stop a member once its LR scale falls to this (e.g. 0.0009765625)"
    )
    early_stop_patience: int | None = field(
        None,
        "stop a member after N EVALUATIONS without improvement (how many "
        "epochs that is depends on the cadence and the batch size; or "
        "--early-stop-patience-epochs, not both)",
    )
    early_stop_patience_epochs: float | None = field(
        None,
        "stop a member after X EPOCHS without improvement (at the first "
        "evaluation X epochs or more after the best): each group turns X into "
        "its count of evaluations, so every batch size stops after as many "
        "epochs (or --early-stop-patience)",
    )
    early_stop_min_delta: float = field(
        0.0, "improvement that counts for early stopping"
    )
    control_metric: str = field(
        "val_loss",
        "val_loss or val_acc, watched by the plateau and early-stopping rules",
    )

    def validate(self):
        must_be_one_of("control_metric", self.control_metric, ("val_loss", "val_acc"))
        must_be_in("plateau_min_scale", self.plateau_min_scale, 0, 1,
                   what=" (a fraction of the peak LR)")  # fmt: skip
        if self.plateau_stop_scale is not None:
            must_be_in("plateau_stop_scale", self.plateau_stop_scale, 0, 1)
        must_be_in("plateau_threshold", self.plateau_threshold, 0, math.inf)
        must_be_in("early_stop_min_delta", self.early_stop_min_delta, 0, math.inf)
        for name in ("plateau_patience", "early_stop_patience"):
            count, epochs = getattr(self, name), getattr(self, f"{name}_epochs")
            if count is not None and epochs is not None:
                flag = "--" + name.replace("_", "-")
                raise ValueError(
                    f"{name} ({flag}) counts evaluations and {name}_epochs "
                    f"({flag}-epochs) epochs: give one of them, not both"
                )
            if epochs is not None:
                must_be_in(f"{name}_epochs", epochs, 0, math.inf)
        self.rules(0.5, evals_per_epoch=1.0)

    @property
    def early_stopping(self) -> bool:
        """Whether early stopping is on (a patience in either unit)."""
        given = (self.early_stop_patience, self.early_stop_patience_epochs)
        return any(v is not None for v in given)

    def patience(self, name: str, evals_per_epoch: float | None) -> int | None:
        """``plateau_patience`` or ``early_stop_patience`` in evaluations (what
        the rules count).

        A patience of X epochs makes both rules act at the first evaluation X
        epochs or more after the best one: ``n = ceil(X x evals_per_epoch)``
        (the group's evaluations per epoch) evaluations later. Early stopping
        stops at its ``patience``-th bad evaluation, so its patience is ``n``;
        the plateau rule (PyTorch's) reduces at the one after ``patience`` bad
        ones, so its patience is ``n - 1``. Every batch size then waits as
        many epochs, exactly so where the evaluations are evenly spaced in
        epochs (``--eval-every-epochs``, or ``--eval-every`` a divisor of the
        steps per epoch).
        """
        epochs = getattr(self, f"{name}_epochs")
        if epochs is None:
            count = getattr(self, name)
            default = PLATEAU_PATIENCE if name == "plateau_patience" else None
            return default if count is None else count
        if evals_per_epoch is None:
            raise ValueError(f"{name}_epochs needs the group's evaluations per epoch")
        n = math.ceil(epochs * evals_per_epoch - 1e-9)
        return max(n - 1, 0) if name == "plateau_patience" else n

    def rules(
        self, plateau_factor: float | None, *, evals_per_epoch: float | None = None
    ) -> dict:
        """``plateau`` and ``early_stopping`` rules for ``engine.TrainSpec``.

        The plateau rule's factor is per member (data); the group's rule carries
        the rest. ``evals_per_epoch``: the group's, which turns a patience in
        epochs into evaluations (:meth:`patience`).
        """
        mode = "max" if self.control_metric == "val_acc" else "min"
        plateau = early = None
        early_patience = self.patience("early_stop_patience", evals_per_epoch)
        if plateau_factor is not None:
            plateau = schedules.ReduceOnPlateau(
                factor=0.5,
                patience=self.patience("plateau_patience", evals_per_epoch),
                mode=mode,
                threshold=self.plateau_threshold,
                cooldown=self.plateau_cooldown,
                min_scale=self.plateau_min_scale,
                stop_scale=self.plateau_stop_scale,
            )
        if early_patience is not None:
            early = schedules.EarlyStopping(
                patience=early_patience,
                mode=mode,
                min_delta=self.early_stop_min_delta,
            )
        return {"plateau": plateau, "early_stopping": early}


def parse_options(text: str, example: str) -> tuple[tuple[str, Any], ...]:
    """``'eta=3,first=1,metric=val_loss'`` -> ``(("eta", 3), ("first", 1),
    ("metric", "val_loss"))``: numbers as numbers, words as text. A piece
    that is not KEY=VALUE is a ``ValueError`` naming it and ``example``."""
    import ast

    pairs = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        key, sep, value = (p.strip() for p in item.partition("="))
        if not sep or not key.isidentifier() or not value:
            raise ValueError(
                f"{item!r} is not KEY=VALUE; give comma-separated pairs, e.g. {example}"
            )
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        pairs.append((key, parsed))
    return tuple(pairs)


COMPACTIONS = ("pow2", "exact", "off")
SH_KEYS = {"eta": "eta=3", "first": "first=1", "metric": "metric=val_loss"}
HB_KEYS = {"eta": "eta=3", "min": "min=1", "metric": "metric=val_loss"}
PBT_KEYS = {
    "interval": "interval=2",
    "quantile": "quantile=0.25",
    "perturb": "perturb=0.8:1.25",
    "fields": "fields=lr:momentum",
    "resample": "resample=0",
    "metric": "metric=val_loss",
    "seed": "seed=0",
}
# The hyperparameters PBT explores, and the member fields they are.
PBT_FIELDS = ("lr", "momentum", "weight_decay")
# Examples of each option flag, for its messages.
OPTION_EXAMPLES = {
    "successive_halving": "eta=3,first=1,metric=val_loss",
    "hyperband": "eta=3,min=1,metric=val_loss",
    "pbt": "interval=2,quantile=0.25,perturb=0.8:1.25",
}


def _unknown_keys(name: str, given: dict, known: dict) -> None:
    for key in given:
        if key not in known:
            raise ValueError(
                f"{name} has no setting {key!r}; give " + ",".join(known.values())
            )


def _check_eta(name: str, eta) -> None:
    if not (isinstance(eta, int | float) and math.isfinite(eta) and eta > 1):
        raise ValueError(
            f"{name} eta must be a number above 1 (the share kept at a rung is "
            f"1/eta), got eta={eta!r}; e.g. eta=3"
        )


def _whole(name: str, key: str, value, why: str) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(
            f"{name} {key} must be a whole number of epochs ({why}), got "
            f"{key}={value!r}; e.g. {key}=1"
        )


def _factors(text) -> tuple[float, ...]:
    """``"0.8:1.25"`` (or one number) -> ``(0.8, 1.25)``."""
    try:
        out = tuple(float(v) for v in str(text).split(":") if v.strip())
    except ValueError:
        out = ()
    if not out or not all(math.isfinite(f) and f > 0 for f in out):
        raise ValueError(
            f"pbt perturb must be positive factors separated by ':', got "
            f"perturb={text!r}; e.g. perturb=0.8:1.25"
        )
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class PopulationConfig:
    successive_halving: tuple = field(
        (),
        "successive halving, e.g. eta=3,first=1,metric=val_loss: after FIRST "
        "epochs and every factor ETA more (1, 3, 9, ...), the best 1/ETA of a "
        "group's members still training by the metric (val_loss: lowest, "
        "val_acc: highest, at that epoch's end) continue, the rest stop there",
        parse="options",
    )
    compaction: str = field(
        "pow2",
        "once members stop for good (successive halving, early stopping, the "
        "plateau rule's stop, divergence) the group trains the others only: "
        "pow2 pads their count to a power of two (few programs to compile), "
        "exact compiles one per count, off keeps every member (frozen)",
    )

    hyperband: tuple = field(
        (),
        "Hyperband, e.g. eta=3,min=1,metric=val_loss: brackets of random draws "
        "(the --lr-range, --weight-decay-range and --momentum-range of the "
        "search), each halved by successive halving from its own first rung "
        "(min x eta^k epochs; the last bracket trains to the end); the draws "
        "per bracket follow Li et al., tagged 'bracket'",
        parse="options",
    )
    pbt: tuple = field(
        (),
        "population-based training, e.g. interval=2,quantile=0.25,perturb=0.8:1.25: "
        "every INTERVAL epochs the bottom QUANTILE of a group's members by the "
        "metric (val_loss or val_acc) copy the weights, optimizer state and "
        "batch statistics of a member drawn from the top QUANTILE and multiply "
        "its FIELDS (lr, momentum, weight_decay; ':'-separated, default lr) by "
        "a factor drawn from PERTURB (or, with probability RESAMPLE, draw them "
        "log-uniformly in the population's starting range); SEED draws it all; "
        "lineage.csv records it",
        parse="options",
    )

    def validate(self):
        must_be_one_of("compaction", self.compaction, COMPACTIONS)
        sh = dict(self.successive_halving)
        _unknown_keys("successive_halving", sh, SH_KEYS)
        if sh:
            _check_eta("successive_halving", sh.get("eta", 3))
            _whole("successive_halving", "first", sh.get("first", 1),
                   "rungs fall at epoch ends")  # fmt: skip
            must_be_one_of(
                "successive_halving metric", sh.get("metric", "val_loss"),
                ("val_loss", "val_acc"),
            )  # fmt: skip
        hb = dict(self.hyperband)
        _unknown_keys("hyperband", hb, HB_KEYS)
        if hb:
            if sh:
                raise ValueError(
                    "hyperband runs successive halving in each of its brackets; "
                    "give --hyperband or --successive-halving, not both"
                )
            _check_eta("hyperband", hb.get("eta", 3))
            _whole("hyperband", "min", hb.get("min", 1), "rungs fall at epoch ends")
            must_be_one_of("hyperband metric", hb.get("metric", "val_loss"),
                           ("val_loss", "val_acc"))  # fmt: skip
        p = dict(self.pbt)
        _unknown_keys("pbt", p, PBT_KEYS)
        if p:
            if sh or hb:
                raise ValueError(
                    "pbt keeps every member training (the weak ones copy the "
                    "strong); give --pbt or --successive-halving/--hyperband, "
                    "not both"
                )
            _whole(
                "pbt", "interval", p.get("interval", 2), "exploits fall at epoch ends"
            )
            q = p.get("quantile", 0.25)
            if not (isinstance(q, int | float) and 0 < q <= 0.5):
                raise ValueError(
                    f"pbt quantile must be in (0, 0.5] (the bottom share copies "
                    f"the top share), got quantile={q!r}; e.g. quantile=0.25"
                )
            _factors(p.get("perturb", "0.8:1.25"))
            r = p.get("resample", 0)
            if not (isinstance(r, int | float) and 0 <= r <= 1):
                raise ValueError(
                    f"pbt resample must be a probability in [0, 1], got "
                    f"resample={r!r}; e.g. resample=0.25"
                )
            for f in str(p.get("fields", "lr")).split(":"):
                if f not in PBT_FIELDS:
                    raise ValueError(
                        f"pbt cannot explore {f!r}: it is not a hyperparameter "
                        f"PBT changes; fields are {', '.join(PBT_FIELDS)} "
                        "(':'-separated), e.g. fields=lr:momentum"
                    )
            must_be_one_of("pbt metric", p.get("metric", "val_loss"),
                           ("val_loss", "val_acc"))  # fmt: skip
            seed = p.get("seed", 0)
            if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
                raise ValueError(
                    f"pbt seed must be a whole number >= 0, got seed={seed!r}"
                )

    @property
    def halving(self) -> dict | None:
        """``{"eta", "first", "metric"}`` of successive halving, None when off."""
        if not self.successive_halving:
            return None
        sh = dict(self.successive_halving)
        return {"eta": float(sh.get("eta", 3)), "first": int(sh.get("first", 1)),
                "metric": sh.get("metric", "val_loss")}  # fmt: skip

    def rungs(self, epochs: int, first: int | None = None) -> tuple[int, ...]:
        """The epochs after which successive halving ranks the members:
        ``first x eta^k`` (rounded) below ``epochs`` (``first``: a Hyperband
        bracket's own first rung)."""
        h = self.halving or self.bands
        if h is None:
            return ()
        out, r = [], float(h["first"] if first is None else first)
        while round(r) < epochs:
            if not out or round(r) > out[-1]:
                out.append(round(r))
            r *= h["eta"]
        return tuple(out)

    @property
    def bands(self) -> dict | None:
        """``{"eta", "min", "metric"}`` of Hyperband, None when off."""
        if not self.hyperband:
            return None
        hb = dict(self.hyperband)
        return {"eta": float(hb.get("eta", 3)), "min": int(hb.get("min", 1)),
                "metric": hb.get("metric", "val_loss")}  # fmt: skip

    def brackets(self, epochs: int) -> list[dict]:
        """Hyperband's brackets for ``epochs`` of training (Li et al. 2018,
        R = epochs / min): bracket ``s`` = s_max .. 0 draws ``ceil((s_max + 1)
        / (s + 1) x eta^s)`` members and ranks them first after ``R x eta^-s``
        epochs (times ``min``); bracket 0 trains its members to the end.
        ``[{"bracket": s, "n": n, "first": epochs, "rungs": (...)}, ...]``."""
        b = self.bands
        if b is None:
            return []
        eta, r = b["eta"], epochs / b["min"]
        s_max = int(math.floor(math.log(r) / math.log(eta) + 1e-9))
        out = []
        for s in range(s_max, -1, -1):
            n = int(math.ceil((s_max + 1) / (s + 1) * eta**s - 1e-9))
            first = max(1, round(epochs * eta**-s))
            rungs = self.rungs(epochs, first) if s else ()
            out.append({"bracket": s, "n": n, "first": first, "rungs": rungs})
        return out

    @property
    def exploit(self) -> dict | None:
        """PBT's settings (``interval``, ``quantile``, ``perturb`` factors,
        ``fields``, ``resample``, ``metric``, ``seed``), None when off."""
        if not self.pbt:
            return None
        p = dict(self.pbt)
        return {
            "interval": int(p.get("interval", 2)),
            "quantile": float(p.get("quantile", 0.25)),
            "perturb": _factors(p.get("perturb", "0.8:1.25")),
            "fields": tuple(str(p.get("fields", "lr")).split(":")),
            "resample": float(p.get("resample", 0)),
            "metric": p.get("metric", "val_loss"),
            "seed": int(p.get("seed", 0)),
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalConfig:
    epochs: int = field(10, "training epochs")
    eval_every: int | None = field(
        None,
        "evaluate the whole validation set every N ITERATIONS (and at the end "
        "of every epoch; default 50): a batch 16x smaller evaluates 16x more "
        "often in epochs; or --eval-every-epochs, not both",
    )
    eval_every_epochs: float | None = field(
        None,
        "evaluate every X EPOCHS, X in (0, 1] (and at the end of every epoch): "
        "each group at the step nearest each multiple of X epochs, about "
        "round(X x its steps per epoch) apart, so every batch size evaluates "
        "at the same epochs; or --eval-every, not both",
    )
    eval_batch_size: int = field(500, "batch size of evaluation")
    train_eval_size: int | None = field(
        None,
        "training images evaluated with the "
        "final parameters (default: as many as the "
        "validation set)",
    )
    test: bool = field(True, "evaluate the final parameters on the test split")
    ensembles: bool = field(
        True,
        "the test accuracy of each arm's ensemble (its seeds' averaged "
        "prediction) in ensembles.csv: one more pass over the test split per "
        "group with an arm of two or more seeds",
    )
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
        must_be_positive("probe_size", self.probe_size, integer=True)
        must_be_positive("noise_every", self.noise_every, integer=True)
        must_be_positive("probe_every", self.probe_every, integer=True)
        if "noise_scale" in self.probes and self.probe_size < 2 * choices.NOISE_PARTS:
            raise ValueError(
                f"noise_scale needs probe_size >= {2 * choices.NOISE_PARTS}, "
                f"got {self.probe_size}"
            )
        must_not_be_empty("sharpness_eps", self.sharpness_eps)
        for eps in self.sharpness_eps:
            must_be_positive("sharpness_eps", eps)
        if self.interpolate and (
            len(self.interpolate) != 2 or len(set(self.interpolate)) != 2
        ):
            raise ValueError(
                f"interpolate takes two different member numbers A,B, got "
                f"{self.interpolate}"
            )
        must_be_positive("epochs", self.epochs, integer=True)
        if self.eval_every is not None and self.eval_every_epochs is not None:
            raise ValueError(
                "eval_every (--eval-every) counts iterations and eval_every_epochs "
                "(--eval-every-epochs) epochs: give one of them, not both"
            )
        if self.eval_every is not None:
            must_be_positive("eval_every", self.eval_every, integer=True)
        x = self.eval_every_epochs
        number = isinstance(x, int | float) and not isinstance(x, bool)
        if x is not None and not (number and math.isfinite(x) and 0 < x <= 1):
            raise ValueError(
                f"eval_every_epochs must be a number in (0, 1], got {x!r}: every "
                "epoch ends with an evaluation anyway (1: once an epoch; 0.5: twice)"
            )
        must_be_positive("eval_batch_size", self.eval_batch_size, integer=True)
        if self.train_eval_size is not None:
            must_be_positive("train_eval_size", self.train_eval_size, integer=True)


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
        must_be_positive("steps_per_call", self.steps_per_call, integer=True)
        choices.check_precision(self.precision)
        # how many devices this machine has is checked when the run starts
        # (asking would start JAX, before its flags are chosen)
        if not (isinstance(self.devices, int) and self.devices >= 0):
            raise ValueError(
                f"devices must be 0 (all) or a positive count, got {self.devices!r}"
            )
