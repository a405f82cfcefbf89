"""A sweep: member recipes -> shape groups -> training -> results directory.

A :class:`SweepConfig` names the data, the model and the members (a grid, a
random search or an explicit list of recipes). Members that share a program
(model, optimizer family and the batch size of every epoch) form a group,
compiled once and trained together; everything else a member varies (LR,
schedule kind and parameters, weight decay and its mode, ...) is data. Groups
run one after another. Every epoch each group's state and
history are checkpointed, so ``resume=True`` continues a killed run and ends
with the same numbers as a run never killed.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import platform
import re
import time
from collections.abc import Mapping

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxbatch import (
    __version__,
    checkpoint,
    cost,
    data,
    engine,
    optim,
    probes,
    recipes,
    results,
)
from jaxbatch import config as config_mod
from jaxbatch.config import SweepConfig


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


def load_data(config: SweepConfig) -> data.Dataset:
    """The dataset a sweep's data settings name (its train/validation split)."""
    return data.load(
        config.dataset,
        data_dir=config.data_dir,
        train_size=config.train_size,
        val_size=config.val_size,
        seed=config.data_seed,
        image_size=config.image_size,
    )


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
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
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
    """What one group needs between epochs (host side).

    Members of a group share the model, the optimizer family and the batch
    size of every epoch (``batch_sizes``); everything else is per-member data.
    """

    index: int
    spec: engine.TrainSpec  # the first epoch's; other phases replace batch_size
    members: list[dict]  # {"member": index, "recipe": resolved recipes.Member}
    hp: dict
    batch_sizes: tuple[int, ...]  # [epochs]
    epoch_steps: np.ndarray  # [epochs] steps of each epoch
    eval_steps: np.ndarray  # [E] steps after which an evaluation runs

    @property
    def total_steps(self) -> int:
        return int(self.epoch_steps.sum())

    @property
    def epoch_starts(self) -> np.ndarray:
        """[epochs + 1] the global step at which each epoch starts (and the end)."""
        return np.concatenate([[0], np.cumsum(self.epoch_steps)])

    def spec_for(self, epoch: int) -> engine.TrainSpec:
        return dataclasses.replace(self.spec, batch_size=self.batch_sizes[epoch])

    def phase_specs(self) -> list[engine.TrainSpec]:
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


def member_hparams(
    m: recipes.Member, n_train: int, epochs: int, patterns: tuple[str, ...] = ()
) -> dict:
    """A resolved recipe as the compiled step's data (times in examples; one
    LR multiplier per pattern of the group, 1 where the member sets none)."""
    mults = dict(m.lr_multipliers or ())
    ex = lambda e: max(1, round(e * n_train))  # noqa: E731
    wd = {"l2": "wd_l2", "l1": "wd_l1", "decoupled": "wd_decoupled"}
    return {
        "lr": m.lr,
        "momentum": m.momentum,
        "b1": m.b1,
        "b2": m.b2,
        wd[m.weight_decay_mode]: m.weight_decay,
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
        "seed": m.seed,
    }


def plan_groups(config: SweepConfig, ds: data.Dataset) -> list[GroupRun]:
    """Split the members into groups and build each group's static spec.

    Raises ValueError (before anything compiles) for a batch size the data
    cannot fill and for LR multipliers that match no parameter.
    """
    members = config.resolved_members()
    epochs = config.epochs
    keys = {}
    for i, m in enumerate(members):
        family = "adam" if m.optimizer in ("adam", "adamw") else m.optimizer
        key = (m.model, family, recipes.batch_sizes(m, epochs))
        keys.setdefault(key, []).append(i)
    n_train = len(ds.x_train)
    any_plateau = any(m.plateau_factor < 1 for m in members)
    groups = []
    for g, ((model, family, sizes), indices) in enumerate(keys.items()):
        for bs in sizes:
            if bs > n_train:
                raise ValueError(
                    f"batch size {bs} is larger than the training set ({n_train} "
                    "examples); lower --batch-sizes or raise --train-size"
                )
        modes = {members[i].weight_decay_mode for i in indices}
        patterns = tuple(
            dict.fromkeys(p for i in indices for p, _ in members[i].lr_multipliers)
        )
        spec = engine.TrainSpec(
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
            **config.control.rules(0.5 if any_plateau else None),
            eval_batch_size=config.eval_batch_size,
            strategy=config.strategy,
            steps_per_call=config.steps_per_call,
            unroll=config.unroll,
            devices=config.devices,
            compute_dtype=config.precision,
            probes=config.probes,
            probe_size=config.probe_size,
            sharpness_eps=config.sharpness_eps,
        )
        if patterns:
            check_multipliers(spec)
        group_members = [{"member": i, "recipe": members[i]} for i in indices]
        hp = engine.stack_hparams(
            [member_hparams(members[i], n_train, epochs, patterns) for i in indices]
        )
        epoch_steps = np.asarray(
            [dataclasses.replace(spec, batch_size=b).steps_per_epoch for b in sizes]
        )
        total = int(epoch_steps.sum())
        ends = np.cumsum(epoch_steps)
        evals = set(range(config.eval_every, total + 1, config.eval_every))
        evals |= {int(e) for e in ends}  # every epoch ends with an evaluation
        groups.append(
            GroupRun(g, spec, group_members, hp, tuple(sizes), epoch_steps,
                     np.asarray(sorted(evals)))
        )  # fmt: skip
    return groups


def check_multipliers(spec: engine.TrainSpec) -> None:
    """Every LR-multiplier pattern must match a parameter of the model."""
    model = spec.build_model()
    x = jax.ShapeDtypeStruct((1, *spec.image_shape), jax.numpy.float32)
    shapes = jax.eval_shape(
        lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x
    )
    paths = optim.param_paths(shapes["params"])
    for pattern in spec.multiplier_patterns:
        if not any(re.search(pattern, p) for p in paths):
            raise ValueError(
                f"lr multiplier pattern {pattern!r} matches no parameter of "
                f"{spec.model}; its parameters are: {', '.join(paths)}"
            )


def _sync_hosts(name: str) -> None:
    """A barrier across hosts (nothing on a single host)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def resolve_strategy(
    group: GroupRun, train: Mapping, out: str, *, resume: bool, progress: bool = True
) -> engine.TrainSpec:
    """The group's spec with ``"auto"`` replaced by a measured choice.

    The choice and its timings go into ``config.json``; a resumed run takes the
    recorded choice, so it continues with the very same program. With
    ``progress``, what is being timed is printed as it goes (it can take
    minutes).
    """
    spec = group.spec
    if spec.strategy != "auto":
        return spec
    path = os.path.join(out, "config.json")
    meta = results.read_json(path)
    entry = meta["groups"][group.index]
    if not (resume and entry.get("strategy")):
        writer = jax.process_index() == 0

        def log(msg: str) -> None:
            tqdm.write(f"group {group.index + 1}: {msg}")

        chosen, timings = engine.auto_strategy(
            spec, group.hp, train, log=log if progress and writer else None
        )
        entry.update(strategy=chosen, strategy_timings_ms=timings)
        if writer:
            results.write_json(path, meta)
    return dataclasses.replace(spec, strategy=entry["strategy"])


def sweep_cost(groups: list[GroupRun], train: Mapping) -> dict:
    """The sweep's cost before it runs: per group, XLA's FLOPs and bytes of
    one member's step (at the first epoch's batch size; other batch sizes
    scale it by their examples), times members and steps; the total; and
    the time it would take on the reference devices at the assumed
    utilisation (:mod:`jaxbatch.cost`)."""
    out = []
    for g in groups:
        spec = dataclasses.replace(g.spec, strategy="vmap")
        hp, _ = engine.pad_members(g.hp, engine.member_multiple(spec))
        state = jax.eval_shape(engine.group_fns(spec).init, hp)
        c = cost.member_step_cost(spec, state, hp, train)
        # examples of the whole run, in units of the first batch size
        steps = float(g.step_batch_sizes().sum()) / g.batch_sizes[0]
        out.append({
            "group": g.index,
            "flops_per_member_step": c["flops"],
            "bytes_per_member_step": c["bytes"],
            "members": len(g.members),
            "steps": g.total_steps,
            "flops": c["flops"] * len(g.members) * steps,
        })  # fmt: skip
    total = float(sum(g["flops"] for g in out))
    peak, assumes = cost.device_peak_flops()
    return {
        "groups": out,
        "flops": total,
        "device_peak_flops": peak,
        "device_peak": assumes,
        "estimates_s": cost.estimates(total),
        "assumed_utilisation": cost.ASSUMED_UTILISATION,
    }


def _cost_line(c: Mapping) -> str:
    est = ", ".join(
        f"{name} {cost.seconds_text(s)}" for name, s in c["estimates_s"].items()
    )
    return (
        f"cost: {cost.flops_text(c['flops'])} in all (XLA cost analysis, "
        + "; ".join(
            f"group {g['group'] + 1}: {cost.flops_text(g['flops_per_member_step'])}"
            f"/step x {g['members']} members x {g['steps']} steps"
            for g in c["groups"]
        )
        + f"); at {c['assumed_utilisation']:.0%} of peak: {est}"
    )


def _first_call_s(fn, *args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def device_data(ds: data.Dataset, spec: engine.TrainSpec, config: SweepConfig):
    """The data on the device(s), shared by all groups: training set, and the
    evaluation sets ``val``, ``train_eval`` (a fixed, seeded subset of the
    training set, evaluated with the final parameters) and ``test``.

    Every group of a sweep trains on the same data with the same device count
    and evaluation batch size, so the (possibly GB-sized) transfer happens once.
    """
    train = engine.device_train_data(ds.x_train, ds.y_train, ds.mean, ds.std)

    def ev(x, y):
        bs = min(spec.eval_batch_size, len(x))
        return engine.replicate(
            engine.device_eval_data(x, y, ds.mean, ds.std, bs), spec
        )

    n = min(config.train_eval_size or len(ds.x_val), len(ds.x_train))
    rng = np.random.default_rng(config.data_seed)
    subset = np.sort(rng.permutation(len(ds.x_train))[:n])
    out = {
        "val": ev(ds.x_val, ds.y_val),
        "train_eval": ev(ds.x_train[subset], ds.y_train[subset]),
    }
    if config.test and ds.x_test is not None:
        out["test"] = ev(ds.x_test, ds.y_test)
    return engine.replicate(train, spec), out


# Per-evaluation estimates of the noise-scale probe, kept in the history.
NOISE_COLUMNS = ("noise_g2", "noise_tr")


def _new_history(
    n: int, total: int, n_evals: int, step_probes: tuple[str, ...] = (),
    noise: bool = False,
) -> dict[str, np.ndarray]:  # fmt: skip
    nan = lambda *s: np.full(s, np.nan, np.float32)  # noqa: E731
    out = {
        "train_loss": nan(n, total),
        "train_acc": nan(n, total),
        "lr": nan(n, total),
        "val_loss": nan(n, n_evals),
        "val_acc": nan(n, n_evals),
        "wall_s": np.zeros((), np.float64),
    }
    out.update({name: nan(n, total) for name in step_probes})
    if noise:
        out.update({name: nan(n, n_evals) for name in NOISE_COLUMNS})
    return out


def _history_key(metric: str) -> str:
    """The history array of a train-step metric (``loss`` -> ``train_loss``)."""
    return f"train_{metric}" if metric in ("loss", "acc") else metric


def _final_evaluation(fns, spec, state, evals: Mapping, early: bool, hp, train) -> dict:
    """Each member's final parameters (and, under early stopping, its best ones)
    evaluated in eval mode on the training subset and the test split, and the
    final-parameter probes (sharpness)."""
    out = {}
    if fns.sharpness is not None:
        out.update(engine.fetch(fns.sharpness(state, hp, train)))
    for name in ("train_eval", "test"):
        if name not in evals:
            continue
        ev = engine.eval_members(fns, spec, state, evals[name])
        out[f"{name}_loss"], out[f"{name}_acc"] = ev["val_loss"], ev["val_acc"]
        if early:
            best = state.replace(params=state.best_params)
            ev = engine.eval_members(fns, spec, best, evals[name])
            out[f"best_{name}_loss"] = ev["val_loss"]
            out[f"best_{name}_acc"] = ev["val_acc"]
    return out


def run_group(
    group: GroupRun,
    train: Mapping,
    evals: Mapping,
    config: SweepConfig,
    out: str,
    *,
    resume: bool,
    progress: bool = True,
    base: Mapping | None = None,
    tensorboard: bool = False,
    flops_per_step: float | None = None,
) -> dict[str, np.ndarray]:
    """Train one group to the end (or continue it), checkpointing every epoch.

    ``base``: weights every member starts from (``--init-from``). Each member's
    final (and, under early stopping, best) weights are saved in
    ``<out>/params/`` for :func:`jaxbatch.results.load_params`.

    ``tensorboard``: write each member's scalars after every epoch
    (:mod:`jaxbatch.tensorboard`). ``train`` and ``evals`` come from
    :func:`device_data`. At a batch-size
    phase boundary the next phase's compiled step takes over the same state.
    """
    strategy = resolve_strategy(
        group, train, out, resume=resume, progress=progress
    ).strategy
    specs = {
        b: dataclasses.replace(s, strategy=strategy)
        for b, s in ((s.batch_size, s) for s in group.phase_specs())
    }
    fns_of = {b: engine.group_fns(s) for b, s in specs.items()}
    spec0 = specs[group.batch_sizes[0]]
    fns0 = fns_of[group.batch_sizes[0]]
    hp, n_real = engine.pad_members(group.hp, engine.member_multiple(spec0))
    n = len(hp["lr"])
    t0 = time.perf_counter()
    state = jax.block_until_ready(fns0.init(hp, base))
    compile_s = time.perf_counter() - t0
    step_probes = probes.step_metric_names(
        spec0.probes, probes.layer_names(state.params)
    )
    history = _new_history(
        n, group.total_steps, len(group.eval_steps), step_probes,
        noise=fns0.noise is not None,
    )  # fmt: skip
    ckpt_dir = checkpoint.group_dir(out, group.index)
    epochs_done = 0
    if resume:
        epochs_done, restored = checkpoint.restore_latest(
            ckpt_dir, {"state": state, "history": history}, log=tqdm.write
        )
        state, history = restored["state"], restored["history"]
    else:
        # Room for the checkpoints kept (two) before training starts.
        checkpoint.check_free_space(
            ckpt_dir, 2 * checkpoint.tree_bytes({"s": state, "h": history})
        )
    if epochs_done < config.epochs:
        # Compile before the clock starts, so run time and compile time are
        # reported apart: every compiled function's first call, on a throwaway
        # copy of the state (the train step donates its input).
        copy = lambda: jax.tree.map(jax.numpy.copy, state)  # noqa: E731
        compile_s += _first_call_s(fns0.start_epoch, copy(), hp)
        for b, fns in fns_of.items():
            compile_s += _first_call_s(fns.train_one, copy(), hp, train)
            if fns.train_probe is not None:
                compile_s += _first_call_s(fns.train_probe, copy(), hp, train)
            if fns.train_last is not None:
                compile_s += _first_call_s(fns.train_last, copy(), hp, train)
            if specs[b].steps_per_call > 1:
                compile_s += _first_call_s(fns.train, copy(), hp, train)
        compile_s += _first_call_s(
            engine.eval_members, fns0, spec0, state, evals["val"]
        )
        if fns0.noise is not None:
            compile_s += _first_call_s(fns0.noise, state, hp, train)
        if spec0.plateau or spec0.early_stopping:
            zeros = jax.numpy.zeros(n, jax.numpy.float32)
            compile_s += _first_call_s(fns0.control, copy(), hp, zeros)

    starts = group.epoch_starts
    eval_index = {int(s): i for i, s in enumerate(group.eval_steps)}
    phases = len(specs) > 1
    bar = tqdm(
        total=group.total_steps,
        initial=int(starts[epochs_done]),
        desc=f"group {group.index + 1} ({spec0.model}, batch "
        + ("->".join(str(b) for b in specs) if phases else str(spec0.batch_size))
        + ")",
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
    )
    t_start = time.perf_counter() - float(history["wall_s"])
    tb = None
    if tensorboard and jax.process_index() == 0 and epochs_done < config.epochs:
        from jaxbatch import tensorboard as tb_mod

        tb = tb_mod.Writer(out, group.members)
    throughput = {}
    for epoch in range(epochs_done, config.epochs):
        spec = specs[group.batch_sizes[epoch]]
        fns = fns_of[spec.batch_size]
        t_epoch = time.perf_counter()
        state = fns.start_epoch(state, hp)
        step, end = int(starts[epoch]), int(starts[epoch + 1])
        step0 = step
        full_end = step + spec.full_batches
        stops = sorted({s for s in eval_index if step < s <= end} | {end})
        for stop in stops:
            state, metrics = engine.run_steps(
                fns, spec, state, hp, train, min(stop, full_end) - step,
                start=step, probe_every=config.probe_every,
            )  # fmt: skip
            if stop > full_end:  # the epoch's smaller last batch (not probed)
                state, last = fns.train_last(state, hp, train)
                metrics = engine.concat_metrics([metrics, last])
            metrics = engine.fetch(metrics)
            for key, values in metrics.items():
                if key == "probes":  # [members, steps, probes], names sorted
                    for j, name in enumerate(step_probes):
                        history[name][:, step:stop] = values[..., j]
                else:
                    history[_history_key(key)][:, step:stop] = values
            bar.update(stop - step)
            step = stop
            if stop in eval_index:
                ev = engine.eval_members(fns, spec, state, evals["val"])
                # Curves end where a member diverged or stopped (the evaluation
                # that stopped it is kept).
                gone = engine.fetch(state.diverged | state.stopped)
                e = eval_index[stop]
                history["val_loss"][:, e] = np.where(gone, np.nan, ev["val_loss"])
                history["val_acc"][:, e] = np.where(gone, np.nan, ev["val_acc"])
                last = e == len(group.eval_steps) - 1
                if fns.noise is not None and (e % config.noise_every == 0 or last):
                    estimates = engine.fetch(fns.noise(state, hp, train))
                    for name, values in zip(NOISE_COLUMNS, estimates, strict=True):
                        history[name][:, e] = values
                if spec.plateau or spec.early_stopping:
                    metric = jax.numpy.asarray(ev[spec.control_metric])
                    state = fns.control(state, hp, metric)
                best = np.nanmax(history["val_acc"][:n_real])
                bar.set_postfix(
                    epoch=f"{epoch + 1}/{config.epochs}", best_val_acc=f"{best:.4f}"
                )
        # Every epoch is whole: each member took exactly n_train examples.
        taken = engine.fetch(state.pos)
        if not np.all(taken == spec.full_batches * spec.batch_size + spec.last_batch):
            raise RuntimeError(f"epoch {epoch + 1} took {taken} examples per member")
        history["wall_s"] = np.asarray(time.perf_counter() - t_start)
        checkpoint.save(ckpt_dir, epoch + 1, {"state": state, "history": history})
        if flops_per_step and epoch == epochs_done:  # the first epoch run here
            took = time.perf_counter() - t_epoch
            seen = float(group.step_batch_sizes()[step0:end].sum())
            achieved = flops_per_step * n_real * seen / spec0.batch_size / took
            throughput = {"achieved_flops": achieved, "epoch_s": took}
            tqdm.write(
                f"group {group.index + 1}: {cost.flops_text(achieved)}/s achieved "
                f"in epoch {epoch + 1} ({took:.1f} s)"
            )
        if tb is not None:
            tb.write(history, int(starts[epoch]), int(starts[epoch + 1]),
                     group.eval_steps)  # fmt: skip
    bar.close()
    if tb is not None:
        tb.close()
    final = engine.fetch({"diverged": state.diverged, "stopped": state.stopped,
                          "lr_scale": state.lr_scale})  # fmt: skip
    if spec0.early_stopping is not None:
        # the evaluation whose parameters early stopping kept
        final["best_eval"] = engine.fetch(state.early.best_step)
    final.update(
        _final_evaluation(
            fns0, spec0, state, evals, spec0.early_stopping is not None, hp, train
        )
    )
    history.update(final, compile_s=np.asarray(compile_s), strategy=strategy)
    history["throughput"] = throughput
    _save_member_weights(out, group, state, spec0.early_stopping is not None)
    return {k: (v[:n_real] if np.ndim(v) else v) for k, v in history.items()}


def _save_member_weights(out: str, group: GroupRun, state, best: bool) -> None:
    """Every host gathers the weights (a collective); host 0 writes them."""
    weights = {
        "final": {"params": state.params, "batch_stats": state.batch_stats},
    }
    if best:
        weights["best"] = {
            "params": state.best_params,
            "batch_stats": state.best_batch_stats,
        }
    weights = engine.fetch(weights)
    if jax.process_index() != 0:
        return
    for i, entry in enumerate(group.members):
        mine = jax.tree.map(lambda a, i=i: a[i], weights)
        results.save_params(out, entry["member"], mine)


# Recipe fields written to members.csv (after member, group, model and tags):
# every field of a Member, the batch-size schedule as one text column.
RECIPE_COLUMNS = ("batch_size", "batch_schedule") + tuple(
    f.name
    for f in dataclasses.fields(recipes.Member)
    if f.name not in ("model", "tags", "batch_size", "batch_milestones", "batch_factor")
)
RESULT_COLUMNS = (
    "final_train_loss", "final_train_acc", "train_eval_loss", "train_eval_acc",
    "final_val_loss", "final_val_acc", "best_val_loss", "best_val_acc",
    "best_val_step", "test_loss", "test_acc", "best_test_loss", "best_test_acc",
    "gap_loss", "gap_acc", "diverged", "stopped", "lr_scale", "steps",
    "examples_seen", "wall_s", "compile_s", "strategy",
)  # fmt: skip
HISTORY_COLUMNS = (
    "member", "step", "epoch", "batch_size", "examples_seen", "lr", "train_loss",
    "train_acc", "val_loss", "val_acc",
)  # fmt: skip


def probe_columns(spec: engine.TrainSpec) -> tuple[str, ...]:
    """``members.csv`` columns of a group's probes: the median update ratio of
    the last epoch, the last noise-scale estimate, the sharpness numbers."""
    out = ()
    if "update_ratio" in spec.probes:
        out += ("update_ratio",)
    if "noise_scale" in spec.probes:
        out += ("noise_scale",)
    if "sharpness" in spec.probes:
        out += probes.sharpness_names(spec.sharpness_eps)
    return out


def member_columns(groups: list[GroupRun]) -> tuple[str, ...]:
    """``members.csv``'s columns: identity, the members' tags, recipe, results,
    probes."""
    tags = dict.fromkeys(
        k for g in groups for m in g.members for k, _ in m["recipe"].tags
    )
    extra = dict.fromkeys(c for g in groups for c in probe_columns(g.spec))
    return (
        "member", "group", "model", *tags, *RECIPE_COLUMNS, *RESULT_COLUMNS, *extra,
    )  # fmt: skip


def _step_probe_keys(history: Mapping) -> list[str]:
    return [k for k in history if k.split("/")[0] in probes.STEP_PROBES]


def history_columns(histories) -> tuple[str, ...]:
    """``history.csv``'s columns: the standard ones, then every probe's."""
    extra = {}
    for _, h in histories:
        extra.update(dict.fromkeys(_step_probe_keys(h)))
        if NOISE_COLUMNS[0] in h:
            extra.update(dict.fromkeys(("noise_scale", *NOISE_COLUMNS)))
    return (*HISTORY_COLUMNS, *extra)


def _batch_schedule(m: recipes.Member) -> str:
    if not m.batch_milestones or m.batch_factor == 1:
        return ""
    return f"x{m.batch_factor:g} at " + " ".join(f"{e:g}" for e in m.batch_milestones)


def summarize(group: GroupRun, history: Mapping, config: SweepConfig) -> list[dict]:
    """One ``members.csv`` row per member of a finished group.

    ``final_train_*`` are means over the member's last epoch of batches (what
    the training curve shows); ``train_eval_*``, ``final_val_*`` and ``test_*``
    are the final parameters evaluated in eval mode; ``best_val_*`` are those
    of the best evaluation by ``control_metric`` (under early stopping the one
    whose parameters it kept, ``best_test_*`` their test numbers); the gaps
    come from the clean numbers: ``gap_loss = final_val_loss - train_eval_loss``,
    ``gap_acc = train_eval_acc - final_val_acc``. A stopped member's numbers
    are those where it stopped (under early stopping ``best_test_*`` come from
    its best parameters); a diverged member's are empty.
    """
    spe = int(group.epoch_steps[-1])
    seen = np.cumsum(group.step_batch_sizes())
    nan = float("nan")
    rows = []
    for i, entry in enumerate(group.members):
        m = entry["recipe"]
        diverged = bool(history["diverged"][i])
        trained = np.flatnonzero(np.isfinite(history["train_loss"][i]))
        last = trained[-spe:] if len(trained) and not diverged else []

        def mean(key, last=last, i=i):
            return float(np.mean(history[key][i, last])) if len(last) else nan

        def final(key, i=i, diverged=diverged):
            return nan if diverged or key not in history else float(history[key][i])

        evaluated = np.flatnonzero(np.isfinite(history["val_loss"][i]))
        e = evaluated[-1] if len(evaluated) and not diverged else None
        val_loss = float(history["val_loss"][i, e]) if e is not None else nan
        val_acc = float(history["val_acc"][i, e]) if e is not None else nan
        accs = history["val_acc"][i]
        has_acc = np.isfinite(accs).any()
        best = _best_eval(history, i, config.control_metric) if has_acc else -1
        row = {
            "member": entry["member"],
            "group": group.index,
            "model": m.model,
            **dict(m.tags),
            **{k: getattr(m, k) for k in RECIPE_COLUMNS if hasattr(m, k)},
            "batch_schedule": _batch_schedule(m),
            "milestones": " ".join(f"{v:g}" for v in m.milestones or ()),
            "lr_multipliers": " ".join(f"{p}={v:g}" for p, v in m.lr_multipliers or ()),
            "final_train_loss": mean("train_loss"),
            "final_train_acc": mean("train_acc"),
            "train_eval_loss": final("train_eval_loss"),
            "train_eval_acc": final("train_eval_acc"),
            "final_val_loss": val_loss,
            "final_val_acc": val_acc,
            "best_val_loss": float(history["val_loss"][i, best]) if has_acc else nan,
            "best_val_acc": float(accs[best]) if has_acc else nan,
            "best_val_step": int(group.eval_steps[best]) if has_acc else None,
            "test_loss": final("test_loss"),
            "test_acc": final("test_acc"),
            "best_test_loss": final("best_test_loss"),
            "best_test_acc": final("best_test_acc"),
            "gap_loss": val_loss - final("train_eval_loss"),
            "gap_acc": final("train_eval_acc") - val_acc,
            "diverged": diverged,
            "stopped": bool(history["stopped"][i]),
            "lr_scale": float(history["lr_scale"][i]),
            "steps": int(trained[-1]) + 1 if len(trained) else 0,
            "examples_seen": int(seen[trained[-1]]) if len(trained) else 0,
            "wall_s": float(history["wall_s"]),
            "compile_s": float(history["compile_s"]),
            "strategy": history["strategy"],
        }
        row.update(_probe_results(group, history, i, last, diverged))
        rows.append(row)
    return rows


def _probe_results(group, history, i, last, diverged) -> dict:
    out = {}
    nan = float("nan")
    if "update_ratio" in history:
        ratio = history["update_ratio"][i, last] if len(last) else np.array([])
        ratio = ratio[np.isfinite(ratio)]  # the probed steps of the last epoch
        out["update_ratio"] = float(np.median(ratio)) if len(ratio) else nan
    if NOISE_COLUMNS[0] in history:
        ns = probes.smooth_noise_scale(
            history["noise_g2"][i : i + 1], history["noise_tr"][i : i + 1]
        )[0]
        ok = np.flatnonzero(np.isfinite(ns))
        out["noise_scale"] = float(ns[ok[-1]]) if len(ok) and not diverged else nan
    for name in probe_columns(group.spec):
        if name.startswith("sharpness"):
            out[name] = nan if diverged else float(history[name][i])
    return out


def _best_eval(history: Mapping, i: int, metric: str) -> int:
    """The member's best evaluation: the one early stopping kept, else the
    best by the control metric (lowest loss or highest accuracy)."""
    if "best_eval" in history and history["best_eval"][i] >= 0:
        return int(history["best_eval"][i])
    if metric == "val_acc":
        return int(np.nanargmax(history["val_acc"][i]))
    return int(np.nanargmin(history["val_loss"][i]))


def history_rows(group: GroupRun, history: Mapping):
    """Long-format ``history.csv`` rows: one per member per step."""
    eval_at = {int(s): e for e, s in enumerate(group.eval_steps)}
    step_keys = _step_probe_keys(history)
    noise = None
    if NOISE_COLUMNS[0] in history:
        noise = probes.smooth_noise_scale(history["noise_g2"], history["noise_tr"])
    sizes = group.step_batch_sizes()
    seen = np.cumsum(sizes)
    epoch_of = np.repeat(np.arange(1, len(group.epoch_steps) + 1), group.epoch_steps)
    for i, m in enumerate(group.members):
        for t in range(group.total_steps):
            step = t + 1
            e = eval_at.get(step)
            row = {
                "member": m["member"],
                "step": step,
                "epoch": int(epoch_of[t]),
                "batch_size": int(sizes[t]),
                "examples_seen": int(seen[t]),
                "lr": float(history["lr"][i, t]),
                "train_loss": float(history["train_loss"][i, t]),
                "train_acc": float(history["train_acc"][i, t]),
                "val_loss": None if e is None else float(history["val_loss"][i, e]),
                "val_acc": None if e is None else float(history["val_acc"][i, e]),
            }
            for key in step_keys:
                row[key] = float(history[key][i, t])
            if noise is not None and e is not None:
                row["noise_scale"] = float(noise[i, e])
                for key in NOISE_COLUMNS:
                    row[key] = float(history[key][i, e])
            yield row


def _check_out(out: str, resume: bool) -> None:
    """Refuse an --out that is a file, a foreign non-empty directory, or a
    finished or started run without --resume."""
    config_path = os.path.join(out, "config.json")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file; give a directory")
    if resume:
        if not os.path.exists(config_path):
            raise ValueError(f"--resume: no run to resume in {out} (no config.json)")
        return
    if not os.path.isdir(out) or not os.listdir(out):
        return
    if not os.path.exists(config_path):
        raise ValueError(
            f"--out {out} is a non-empty directory that holds no jaxbatch run; "
            "choose an empty or new directory"
        )
    started = os.path.exists(os.path.join(out, "members.csv")) or os.path.isdir(
        os.path.join(out, "checkpoints")
    )
    if started:
        raise ValueError(
            f"{out} already holds a run; pass --resume to continue it or choose "
            "another --out"
        )
    # config.json alone: a run that stopped before training; start it afresh.


def _flat(d: Mapping) -> dict:
    """A nested config dict as ``section.field`` keys (for readable diffs)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and k in config_mod.SECTIONS:
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def run(
    config: SweepConfig,
    out: str | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    plots: bool = True,
    dataset: data.Dataset | None = None,
    tensorboard: bool = False,
    dry_run: bool = False,
    report: bool = True,
) -> str:
    """Run a whole sweep and write its results directory; returns its path.

    ``plots``: the standard figures and (with ``report``) ``report.html`` at
    the end;
    ``tensorboard``: TensorBoard scalars in ``<out>/tensorboard`` as it trains
    (needs tensorboardX). ``dry_run``: check the configuration, load the data,
    print and return the sweep's cost (:func:`sweep_cost`) and stop: nothing
    is written or trained.

    Raises ValueError before anything compiles for bad values, and when
    ``resume`` finds a run made with a different configuration. Nothing is
    written to ``out`` before every check has passed.
    """
    out = out or default_out(config.experiment)
    config_path = os.path.join(out, "config.json")
    current = config.to_dict()
    if not dry_run:
        _check_out(out, resume)
    if tensorboard:
        from jaxbatch import tensorboard as tb_mod

        tb_mod.check_available()
    if resume and not dry_run:
        try:
            saved = results.read_json(config_path)["config"]
        except (ValueError, KeyError) as err:
            raise ValueError(
                f"--resume: {config_path} is damaged ({err}); start a new --out"
            ) from None
        diff = _config_diff(_flat(saved), _flat(current))
        if diff:
            raise ValueError(
                f"--resume: the run in {out} was made with a different configuration: "
                + "; ".join(diff)
                + ". Resume with the same flags, or start a new --out."
            )
    if config.compile_cache:
        enable_compilation_cache()
    ds = dataset or load_data(config)
    groups = plan_groups(config, ds)  # validates batch sizes against the data
    if dry_run:  # the cost only: nothing is written, nothing trains
        train, _ = device_data(ds, groups[0].spec, config)
        c = sweep_cost(groups, train)
        print(_cost_line(c), flush=True)
        return c
    base = None
    if config.init_from:
        run_dir, member = results.parse_run_member(config.init_from)
        base = jax.tree.map(jax.numpy.asarray, results.load_params(run_dir, member))
        print(f"initialising every member from member {member} of {run_dir}")
    meta = {
        "config": current,
        "environment": environment(),
        "data": {
            "name": ds.name,
            "n_train": int(len(ds.x_train)),
            "n_val": int(len(ds.x_val)),
            "n_test": 0 if ds.x_test is None else int(len(ds.x_test)),
            "image_shape": list(ds.x_train.shape[1:]),
            "num_classes": ds.num_classes,
        },
        "groups": [
            {"group": g.index, "model": g.spec.model, "optimizer": g.spec.optimizer,
             "batch_sizes": sorted(set(g.batch_sizes), key=g.batch_sizes.index),
             "batch_size": g.spec.batch_size,
             "model_kwargs": dict(g.spec.model_kwargs),
             "steps_per_epoch": [int(s) for s in g.epoch_steps],
             "total_steps": g.total_steps,
             "members": [m["member"] for m in g.members]}
            for g in groups
        ],
    }  # fmt: skip
    writer = jax.process_index() == 0  # one host writes; all of them train
    _sync_hosts("jaxbatch: every host checked the output directory")
    if not resume and writer:
        os.makedirs(out, exist_ok=True)
        results.write_json(config_path, meta)
    _sync_hosts("jaxbatch: config.json written")

    train, evals = device_data(ds, groups[0].spec, config)
    meta["cost"] = sweep_cost(groups, train)
    print(_cost_line(meta["cost"]), flush=True)
    if writer:
        _record_cost(config_path, meta["cost"])
    columns = member_columns(groups)
    member_rows, histories = [], []
    for group in groups:
        history = run_group(
            group, train, evals, config, out, resume=resume, progress=progress,
            base=base, tensorboard=tensorboard,
            flops_per_step=meta["cost"]["groups"][group.index]["flops_per_member_step"],
        )  # fmt: skip
        _record_throughput(meta, group, history.pop("throughput", {}))
        member_rows += summarize(group, history, config)
        histories.append((group, history))
        if writer:
            _record_cost(config_path, meta["cost"])
            member_rows.sort(key=lambda r: r["member"])
            results.write_csv(os.path.join(out, "members.csv"), columns, member_rows)
    if not writer:
        return out
    results.write_csv(
        os.path.join(out, "history.csv"),
        history_columns(histories),
        itertools.chain.from_iterable(history_rows(g, h) for g, h in histories),
    )
    if config.interpolate:
        probes.interpolation(out, *config.interpolate, dataset=ds)
    results.write_csv(os.path.join(out, "arms.csv"), *_arms_table(out))
    if plots:
        from jaxbatch import plots as plots_mod
        from jaxbatch import report as report_mod

        plots_mod.save_all(out)
        if report:
            report_mod.build(out)
    return out


def _record_cost(config_path: str, c: Mapping) -> None:
    """Set ``cost`` in ``config.json``, keeping what else was recorded there
    since (e.g. each group's measured strategy)."""
    saved = results.read_json(config_path)
    saved["cost"] = c
    results.write_json(config_path, saved)


def _record_throughput(meta: dict, group: GroupRun, throughput: Mapping) -> None:
    """The achieved FLOP/s of the group's first epoch, its share of the
    device's peak, and the whole sweep's estimated time at that rate."""
    if not throughput:
        return
    c = meta["cost"]
    g = c["groups"][group.index]
    g.update(throughput)
    peak = c["device_peak_flops"]
    g["utilisation"] = throughput["achieved_flops"] / peak if peak == peak else None
    if "estimated_s" not in c:  # from the first group measured
        c["estimated_s"] = c["flops"] / throughput["achieved_flops"]
        tqdm.write(
            f"estimated time of the sweep at that rate: "
            f"{cost.seconds_text(c['estimated_s'])}"
            + (f" ({g['utilisation']:.1%} of the nominal peak, {c['device_peak']})"
               if g["utilisation"] is not None else "")
        )  # fmt: skip


def _arms_table(out: str):
    """``arms.csv``: one row per arm (members equal but for the seed), the
    mean and 95% t-interval half-width (``<col>_ci``) of each result."""
    from jaxbatch import stats

    rows = stats.arm_rows(results.read_csv(os.path.join(out, "members.csv")))
    return stats.arm_columns(rows), rows
