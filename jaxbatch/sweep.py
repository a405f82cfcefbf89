"""A sweep: hyperparameter grid -> shape groups -> training -> results directory.

A :class:`SweepConfig` names the data, the model and the grid. Members that
share shapes (same batch size) form a group, compiled once and trained
together; groups run one after another. Every epoch each group's state and
history are checkpointed, so ``resume=True`` continues a killed run and ends
with the same numbers as a run never killed.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import platform
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxbatch import (
    __version__,
    checkpoint,
    data,
    engine,
    models,
    optim,
    results,
    schedules,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """Everything that defines a sweep. Values in tuples form the grid.

    Attributes:
      experiment: name, used for the default output directory.
      dataset, data_dir, train_size, val_size, image_size, data_seed: passed
        to ``jaxbatch.data.load`` (``data_seed`` picks the subset/split).
      model: model name; ``model_kwargs`` extra keyword arguments.
      models: several models compared in one sweep (overrides ``model``); each
        takes the ``model_kwargs`` it accepts, plus its own ``model_options``
        (``(name, ((key, value), ...))`` pairs).
      batch_sizes: one group per (model, batch size).
      lrs, weight_decays, momentums, seeds: the grid inside each group.
      optimizer, nesterov, weight_decay_mode, decay_mask, lr_multipliers: see
        ``jaxbatch.optim.make_optimizer``.
      schedule: LR shape (see ``engine.TrainSpec``); for ``"step"`` the LR is
        multiplied by ``gamma`` every ``decay_epochs`` epochs (default: once,
        at half of training).
      warmup_epochs: linear warmup from 0 over this many epochs.
      epochs: training epochs.
      eval_every: evaluate on the whole validation set every this many steps
        (and after the last step).
      plateau_factor: if set, each member multiplies its LR by this factor when
        ``control_metric`` has not improved for ``plateau_patience``
        evaluations (PyTorch's ReduceLROnPlateau, with ``plateau_threshold``,
        ``plateau_cooldown``, ``plateau_min_scale``); ``plateau_stop_scale``
        stops the member once its LR scale falls to it (e.g. 1/1024).
      early_stop_patience: if set, a member stops after this many evaluations
        without improving ``control_metric`` by ``early_stop_min_delta``.
      control_metric: ``"val_loss"`` or ``"val_acc"``.
      eval_batch_size, steps_per_call, unroll: see ``engine.TrainSpec``.
      strategy: the member axis: ``"auto"`` (time the candidates, pick the
        fastest), ``"vmap"``, ``"map"``, ``"unroll"`` or ``"chunk:N"``.
      devices: shard the member axis over this many devices (0: all of them).
      precision: ``"float32"`` or ``"bfloat16"`` (mixed precision, for GPU/TPU).
      compile_cache: keep compiled programs in the persistent compilation cache
        (``$JAXBATCH_CACHE/xla``, default ``~/.cache/jaxbatch/xla``).
    """

    experiment: str = "sweep"
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    train_size: int | None = None
    val_size: int | None = None
    image_size: int | None = None
    data_seed: int = 0
    model: str = "alexnet_small"
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    models: tuple[str, ...] = ()
    model_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    batch_sizes: tuple[int, ...] = (32, 64)
    lrs: tuple[float, ...] = (0.01, 0.02)
    weight_decays: tuple[float, ...] = (0.0,)
    momentums: tuple[float, ...] = (0.9,)
    seeds: tuple[int, ...] = (0,)
    optimizer: str = "sgd"
    nesterov: bool = False
    weight_decay_mode: str | None = None
    decay_mask: str | None = None
    lr_multipliers: tuple[tuple[str, float], ...] = ()
    schedule: str = "step"
    gamma: float = 0.1
    decay_epochs: float | None = None
    warmup_epochs: float = 0.0
    plateau_factor: float | None = None
    plateau_patience: int = 10
    plateau_threshold: float = 1e-4
    plateau_cooldown: int = 0
    plateau_min_scale: float = 0.0
    plateau_stop_scale: float | None = None
    early_stop_patience: int | None = None
    early_stop_min_delta: float = 0.0
    control_metric: str = "val_loss"
    epochs: int = 10
    eval_every: int = 50
    eval_batch_size: int = 500
    strategy: str = "auto"
    steps_per_call: int = 1
    unroll: bool = False
    devices: int = 1
    precision: str = "float32"
    compile_cache: bool = True

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the bad value; runs before any data or compile."""

        def positive(name, values):
            for v in values:
                if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                    raise ValueError(f"{name} must be positive, got {v!r}")

        for name in self.model_list():
            if name not in models.available_models():
                raise ValueError(
                    f"unknown model {name!r}; choose one of "
                    f"{', '.join(models.available_models())}"
                )
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
        if not self.batch_sizes or not self.lrs:
            raise ValueError("batch_sizes and lrs need at least one value each")
        positive("batch size", self.batch_sizes)
        if any(int(b) != b for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be integers, got {self.batch_sizes}")
        positive("learning rate", self.lrs)
        positive("epochs", [self.epochs])
        positive("eval_every", [self.eval_every])
        for name, vals in (
            ("weight decay", self.weight_decays),
            ("momentum", self.momentums),
        ):
            for v in vals:
                if not (v >= 0 and math.isfinite(v)):
                    raise ValueError(f"{name} must be >= 0, got {v!r}")
        if self.decay_epochs is not None:
            positive("decay_epochs", [self.decay_epochs])
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs!r}")
        if self.optimizer not in optim.OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; "
                f"choose one of {optim.OPTIMIZERS}"
            )
        modes = (None, *optim.WEIGHT_DECAY_MODES)
        if self.weight_decay_mode not in modes:
            raise ValueError(
                f"unknown weight_decay_mode {self.weight_decay_mode!r}; "
                f"choose one of {optim.WEIGHT_DECAY_MODES}"
            )
        engine.parse_strategy(self.strategy)
        engine.check_placement(self.devices, self.precision)
        self.controls()  # the rules check their own values

    def model_list(self) -> tuple[str, ...]:
        return tuple(self.models) or (self.model,)

    def kwargs_for(self, name: str) -> tuple[tuple[str, Any], ...]:
        """The model options ``name`` gets: shared ones it accepts, then its own."""
        accepted = models.model_kwargs(name)
        kw = {k: v for k, v in self.model_kwargs if k in accepted}
        kw.update(dict(dict(self.model_options).get(name, ())))
        return tuple(sorted(kw.items()))

    def controls(self) -> dict:
        """The ``plateau`` and ``early_stopping`` rules of ``engine.TrainSpec``."""
        mode = "max" if self.control_metric == "val_acc" else "min"
        plateau = early = None
        if self.plateau_factor is not None:
            plateau = schedules.ReduceOnPlateau(
                factor=self.plateau_factor,
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

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model_kwargs"] = dict(self.model_kwargs)
        d["model_options"] = {name: dict(kw) for name, kw in self.model_options}
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> SweepConfig:
        """The config of ``to_dict()`` (e.g. read back from ``config.json``).

        JSON turns tuples into lists; they become tuples again, nested ones
        too, so the config and the specs built from it stay hashable.
        """

        def options(kw) -> tuple:
            return tuple(sorted((k, _tuples(v)) for k, v in dict(kw or {}).items()))

        d = {k: _tuples(v) for k, v in d.items()}
        d["model_kwargs"] = options(d.get("model_kwargs"))
        d["model_options"] = tuple(
            (name, options(kw))
            for name, kw in dict(d.get("model_options") or {}).items()
        )
        return cls(**d)

    def members(self) -> list[dict]:
        """The grid, model then batch size outermost, as one dict per member."""
        grid = itertools.product(
            self.model_list(),
            self.batch_sizes,
            self.lrs,
            self.weight_decays,
            self.momentums,
            self.seeds,
        )
        keys = ("model", "batch_size", "lr", "weight_decay", "momentum", "seed")
        return [dict(member=i, **dict(zip(keys, v))) for i, v in enumerate(grid)]


def _tuples(value):
    """Lists (from JSON) as tuples, recursively; other values as they are."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def enable_compilation_cache(path: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache (unless the user set one).

    A second run of the same sweep then loads its programs instead of
    compiling them again. Returns the cache directory in use.
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = path or os.path.join(engine.cache_dir(), "xla")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def default_out(experiment: str) -> str:
    return os.path.join("runs", experiment, time.strftime("%Y%m%d-%H%M%S"))


def environment() -> dict:
    """Versions and devices, recorded in ``config.json``."""
    devices = jax.devices()
    return {
        "jaxbatch": __version__,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
    }


def _config_diff(saved: Mapping, current: Mapping) -> list[str]:
    keys = sorted(set(saved) | set(current))
    norm = lambda v: json.loads(json.dumps(v))  # noqa: E731 tuples vs lists
    return [
        f"{k}: {saved.get(k)!r} in the run, {current.get(k)!r} now"
        for k in keys
        if norm(saved.get(k)) != norm(current.get(k))
    ]


@dataclasses.dataclass
class GroupRun:
    """What one group needs between epochs (host side)."""

    index: int
    spec: engine.TrainSpec
    members: list[dict]
    hp: dict
    total_steps: int
    eval_steps: np.ndarray  # [E] steps after which an evaluation runs


def plan_groups(config: SweepConfig, ds: data.Dataset) -> list[GroupRun]:
    """Split the grid into groups and build each group's static spec."""
    groups = []
    members = config.members()
    for g, key in enumerate(
        dict.fromkeys((m["model"], m["batch_size"]) for m in members)
    ):
        group_members = [m for m in members if (m["model"], m["batch_size"]) == key]
        model, bs = key
        spec = engine.TrainSpec(
            model=model,
            model_kwargs=config.kwargs_for(model),
            num_classes=ds.num_classes,
            image_shape=tuple(ds.x_train.shape[1:]),
            n_train=len(ds.x_train),
            batch_size=int(bs),
            optimizer=config.optimizer,
            nesterov=config.nesterov,
            weight_decay_mode=config.weight_decay_mode,
            decay_mask=config.decay_mask,
            lr_multipliers=config.lr_multipliers,
            control_metric=config.control_metric,
            **config.controls(),
            schedule=config.schedule,
            total_steps=1,
            eval_batch_size=config.eval_batch_size,
            strategy=config.strategy,
            steps_per_call=config.steps_per_call,
            unroll=config.unroll,
            devices=config.devices,
            compute_dtype=config.precision,
        )
        spe = spec.steps_per_epoch
        total = spe * config.epochs
        spec = dataclasses.replace(spec, total_steps=total)
        decay_epochs = config.decay_epochs or config.epochs / 2
        step_size = max(1, round(decay_epochs * spe))
        warmup = round(config.warmup_epochs * spe)
        for m in group_members:
            m.update(gamma=config.gamma, step_size=step_size, warmup_steps=warmup)
        hp = engine.stack_hparams(
            [
                {k: m[k] for k in ("lr", "weight_decay", "momentum", "seed", "gamma",
                                   "step_size", "warmup_steps")}
                for m in group_members
            ]
        )  # fmt: skip
        evals = np.arange(config.eval_every, total + 1, config.eval_every)
        if not len(evals) or evals[-1] != total:
            evals = np.append(evals, total)
        groups.append(GroupRun(g, spec, group_members, hp, total, evals))
    return groups


def _sync_hosts(name: str) -> None:
    """A barrier across hosts (nothing on a single host)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _new_history(n: int, total: int, n_evals: int) -> dict[str, np.ndarray]:
    nan = lambda *s: np.full(s, np.nan, np.float32)  # noqa: E731
    return {
        "train_loss": nan(n, total),
        "train_acc": nan(n, total),
        "lr": nan(n, total),
        "val_loss": nan(n, n_evals),
        "val_acc": nan(n, n_evals),
        "wall_s": np.zeros((), np.float64),
    }


def resolve_strategy(
    group: GroupRun, train: Mapping, out: str, *, resume: bool
) -> engine.TrainSpec:
    """The group's spec with ``"auto"`` replaced by a measured choice.

    The choice and its timings go into ``config.json``; a resumed run takes the
    recorded choice, so it continues with the very same program.
    """
    spec = group.spec
    if spec.strategy != "auto":
        return spec
    path = os.path.join(out, "config.json")
    meta = results.read_json(path)
    entry = meta["groups"][group.index]
    if not (resume and entry.get("strategy")):
        chosen, timings = engine.auto_strategy(spec, group.hp, train)
        entry.update(strategy=chosen, strategy_timings_ms=timings)
        if jax.process_index() == 0:
            results.write_json(path, meta)
    return dataclasses.replace(spec, strategy=entry["strategy"])


def _first_call_s(fn, *args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def device_data(ds: data.Dataset, spec: engine.TrainSpec) -> tuple[dict, dict]:
    """The training and evaluation sets on the device(s), shared by all groups.

    Every group of a sweep trains on the same data with the same device count
    and evaluation batch size, so the (possibly GB-sized) transfer happens once.
    """
    train = engine.device_train_data(ds.x_train, ds.y_train, ds.mean, ds.std)
    val = engine.device_eval_data(
        ds.x_val, ds.y_val, ds.mean, ds.std, min(spec.eval_batch_size, len(ds.x_val))
    )
    return engine.replicate(train, spec), engine.replicate(val, spec)


def run_group(
    group: GroupRun,
    train: Mapping,
    val: Mapping,
    config: SweepConfig,
    out: str,
    *,
    resume: bool,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Train one group to the end (or continue it), checkpointing every epoch.

    ``train`` and ``val`` come from :func:`device_data`.
    """
    spec = resolve_strategy(group, train, out, resume=resume)
    fns = engine.group_fns(spec)
    hp, n_real = engine.pad_members(group.hp, engine.member_multiple(spec))
    n = len(hp["lr"])
    t0 = time.perf_counter()
    state = jax.block_until_ready(fns.init(hp))
    compile_s = time.perf_counter() - t0
    history = _new_history(n, group.total_steps, len(group.eval_steps))
    ckpt_dir = checkpoint.group_dir(out, group.index)
    epochs_done = 0
    if resume and (done := checkpoint.list_epochs(ckpt_dir)):
        epochs_done = done[-1]
        restored = checkpoint.restore(
            ckpt_dir, epochs_done, {"state": state, "history": history}
        )
        state, history = restored["state"], restored["history"]
    if epochs_done < config.epochs:
        # Compile before the clock starts, so run time and compile time are
        # reported apart: every compiled function's first call, on a throwaway
        # copy of the state (the train step donates its input).
        copy = lambda: jax.tree.map(jax.numpy.copy, state)  # noqa: E731
        compile_s += _first_call_s(fns.start_epoch, copy(), hp)
        compile_s += _first_call_s(fns.train_one, copy(), hp, train)
        if spec.steps_per_call > 1:
            compile_s += _first_call_s(fns.train, copy(), hp, train)
        compile_s += _first_call_s(engine.eval_members, fns, spec, state, val)
        if spec.plateau or spec.early_stopping:
            zeros = jax.numpy.zeros(n, jax.numpy.float32)
            compile_s += _first_call_s(fns.control, copy(), zeros)

    spe = spec.steps_per_epoch
    eval_index = {int(s): i for i, s in enumerate(group.eval_steps)}
    bar = tqdm(
        total=group.total_steps,
        initial=epochs_done * spe,
        desc=f"group {group.index + 1} ({spec.model}, batch {spec.batch_size})",
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
    )
    t_start = time.perf_counter() - float(history["wall_s"])
    for epoch in range(epochs_done, config.epochs):
        state = fns.start_epoch(state, hp)
        step = epoch * spe
        stops = sorted({s for s in eval_index if step < s <= step + spe} | {step + spe})
        for stop in stops:
            state, metrics = engine.run_steps(fns, spec, state, hp, train, stop - step)
            metrics = engine.fetch(metrics)
            for key in ("train_loss", "train_acc", "lr"):
                history[key][:, step:stop] = metrics[key.removeprefix("train_")]
            bar.update(stop - step)
            step = stop
            if stop in eval_index:
                ev = engine.eval_members(fns, spec, state, val)
                # Curves end where a member diverged or stopped (the evaluation
                # that stopped it is kept).
                gone = engine.fetch(state.diverged | state.stopped)
                e = eval_index[stop]
                history["val_loss"][:, e] = np.where(gone, np.nan, ev["val_loss"])
                history["val_acc"][:, e] = np.where(gone, np.nan, ev["val_acc"])
                if spec.plateau or spec.early_stopping:
                    metric = jax.numpy.asarray(ev[spec.control_metric])
                    state = fns.control(state, metric)
                best = np.nanmax(history["val_acc"][:n_real])
                bar.set_postfix(
                    epoch=f"{epoch + 1}/{config.epochs}", best_val_acc=f"{best:.4f}"
                )
        history["wall_s"] = np.asarray(time.perf_counter() - t_start)
        checkpoint.save(ckpt_dir, epoch + 1, {"state": state, "history": history})
    bar.close()
    final = engine.fetch({"diverged": state.diverged, "stopped": state.stopped,
                    "lr_scale": state.lr_scale})  # fmt: skip
    history.update(final, compile_s=np.asarray(compile_s), strategy=spec.strategy)
    return {k: (v[:n_real] if np.ndim(v) else v) for k, v in history.items()}


def summarize(group: GroupRun, history: Mapping, config: SweepConfig) -> list[dict]:
    """One ``members.csv`` row per member of a finished group."""
    spe = group.spec.steps_per_epoch
    rows = []
    for i, m in enumerate(group.members):
        diverged = bool(history["diverged"][i])
        # A member's train loss is the mean over its last epoch of batches (single
        # batch losses are too noisy to set against a validation loss); a stopped
        # member's numbers are those of the epoch and evaluation where it stopped,
        # a diverged member's are NaN.
        trained = np.flatnonzero(np.isfinite(history["train_loss"][i]))
        last = trained[-spe:] if len(trained) and not diverged else []
        train_loss = (
            float(np.mean(history["train_loss"][i, last])) if len(last) else np.nan
        )
        train_acc = (
            float(np.mean(history["train_acc"][i, last])) if len(last) else np.nan
        )
        evaluated = np.flatnonzero(np.isfinite(history["val_loss"][i]))
        e = evaluated[-1] if len(evaluated) and not diverged else None
        val_loss = float(history["val_loss"][i, e]) if e is not None else np.nan
        val_acc = float(history["val_acc"][i, e]) if e is not None else np.nan
        accs = history["val_acc"][i]
        has_acc = np.isfinite(accs).any()
        best = int(np.nanargmax(accs)) if has_acc else -1
        rows.append(
            {
                **{k: m[k] for k in ("member", "batch_size", "lr", "weight_decay",
                                     "momentum", "seed", "gamma")},
                "group": group.index,
                "model": m["model"],
                "final_train_loss": train_loss,
                "final_train_acc": train_acc,
                "final_val_loss": val_loss,
                "final_val_acc": val_acc,
                "best_val_acc": float(accs[best]) if has_acc else float("nan"),
                "best_val_step": int(group.eval_steps[best]) if has_acc else None,
                "gap_loss": val_loss - train_loss,
                "gap_acc": train_acc - val_acc,
                "diverged": diverged,
                "stopped": bool(history["stopped"][i]),
                "lr_scale": float(history["lr_scale"][i]),
                "steps": int(trained[-1]) + 1 if len(trained) else 0,
                "wall_s": float(history["wall_s"]),
                "compile_s": float(history["compile_s"]),
                "strategy": history["strategy"],
            }
        )  # fmt: skip
    return rows


def history_rows(group: GroupRun, history: Mapping):
    """Long-format ``history.csv`` rows: one per member per step."""
    spe = group.spec.steps_per_epoch
    eval_at = {int(s): e for e, s in enumerate(group.eval_steps)}
    for i, m in enumerate(group.members):
        for t in range(group.total_steps):
            step = t + 1
            e = eval_at.get(step)
            yield {
                "member": m["member"],
                "step": step,
                "epoch": t // spe + 1,
                "lr": float(history["lr"][i, t]),
                "train_loss": float(history["train_loss"][i, t]),
                "train_acc": float(history["train_acc"][i, t]),
                "val_loss": None if e is None else float(history["val_loss"][i, e]),
                "val_acc": None if e is None else float(history["val_acc"][i, e]),
            }


def run(
    config: SweepConfig,
    out: str | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    plots: bool = True,
    dataset: data.Dataset | None = None,
) -> str:
    """Run a whole sweep and write its results directory; returns its path.

    Raises ValueError before anything compiles for bad values, and when
    ``resume`` finds a run made with a different configuration.
    """
    out = out or default_out(config.experiment)
    config_path = os.path.join(out, "config.json")
    current = config.to_dict()
    if resume:
        if not os.path.exists(config_path):
            raise ValueError(f"--resume: no run to resume in {out} (no config.json)")
        diff = _config_diff(results.read_json(config_path)["config"], current)
        if diff:
            raise ValueError(
                f"--resume: the run in {out} was made with a different configuration: "
                + "; ".join(diff)
                + ". Resume with the same flags, or start a new --out."
            )
    elif os.path.exists(config_path):
        raise ValueError(
            f"{out} already holds a run; pass --resume to continue it or choose "
            "another --out"
        )
    if config.compile_cache:
        enable_compilation_cache()
    ds = dataset or data.load(
        config.dataset,
        data_dir=config.data_dir,
        train_size=config.train_size,
        val_size=config.val_size,
        seed=config.data_seed,
        image_size=config.image_size,
    )
    groups = plan_groups(config, ds)  # validates batch sizes against the data
    os.makedirs(out, exist_ok=True)
    meta = {
        "config": current,
        "environment": environment(),
        "data": {
            "name": ds.name,
            "n_train": int(len(ds.x_train)),
            "n_val": int(len(ds.x_val)),
            "image_shape": list(ds.x_train.shape[1:]),
            "num_classes": ds.num_classes,
        },
        "groups": [
            {"group": g.index, "model": g.spec.model, "batch_size": g.spec.batch_size,
             "model_kwargs": dict(g.spec.model_kwargs),
             "steps_per_epoch": g.spec.steps_per_epoch, "total_steps": g.total_steps,
             "members": [m["member"] for m in g.members]}
            for g in groups
        ],
    }  # fmt: skip
    writer = jax.process_index() == 0  # one host writes; all of them train
    _sync_hosts("jaxbatch: every host checked the output directory")
    if not resume and writer:
        results.write_json(config_path, meta)
    _sync_hosts("jaxbatch: config.json written")

    train, val = device_data(ds, groups[0].spec)
    member_rows, histories = [], []
    for group in groups:
        history = run_group(
            group, train, val, config, out, resume=resume, progress=progress
        )
        member_rows += summarize(group, history, config)
        histories.append((group, history))
        if writer:
            results.write_csv(
                os.path.join(out, "members.csv"), results.MEMBER_COLUMNS, member_rows
            )
    if not writer:
        return out
    results.write_csv(
        os.path.join(out, "history.csv"),
        results.HISTORY_COLUMNS,
        itertools.chain.from_iterable(history_rows(g, h) for g, h in histories),
    )
    if plots:
        from jaxbatch import plots as plots_mod

        plots_mod.save_all(out)
    return out
