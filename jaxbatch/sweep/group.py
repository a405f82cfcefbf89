"""Training one group: its phases and epochs, the hooks called at their cadence.

:func:`train_group` reads as what happens to a group: :func:`begin` (the
strategy, the compiled functions, the initial or restored state), the first
call of every compiled function (compile time apart from training time),
then :func:`train_epoch` for each epoch left, and :func:`finish` (the final
values). A batch-size schedule is a sequence of phases, each its own
compiled step over the same state; everything else that happens (evaluation,
probes, control rules, checkpoints, progress, TensorBoard) is a hook.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxbatch import checkpoint, interrupts, results
from jaxbatch.engine.auto import auto_strategy
from jaxbatch.engine.group import (
    concat_metrics,
    eval_members,
    fetch,
    group_fns,
    run_steps,
)  # fmt: skip
from jaxbatch.engine.hparams import HPARAM_DEFAULTS, pad_members
from jaxbatch.engine.member_axis import member_multiple
from jaxbatch.sweep import population
from jaxbatch.sweep.hooks import Hook, record
from jaxbatch.sweep.plan import GroupPlan, member_recipes
from jaxbatch.sweep.state import GroupRun, SweepRun


def train_group(plan: GroupPlan, sweep: SweepRun, hooks: Sequence[Hook]) -> GroupRun:
    """Train one group to the end (or continue it), checkpointing every epoch
    (the :class:`~jaxbatch.sweep.records.Checkpoint` hook)."""
    g = begin(plan, sweep, hooks)
    if g.training_left:
        compile_training(g)
        for h in hooks:
            h.start(g)
    g.t_start = time.perf_counter() - float(g.history["wall_s"])
    g.slots_seen.add(len(g.hp["lr"]))
    for epoch in range(g.epochs_done, sweep.config.epochs):
        g.epoch = epoch
        if not population.compact(g, compile_slots):  # every member has stopped
            break
        g.history["slots"][epoch] = len(g.hp["lr"])
        train_epoch(g, epoch, hooks)
        population.expand(g)  # the epoch's end sees every member
        g.history["wall_s"] = np.asarray(time.perf_counter() - g.t_start)
        for h in hooks:
            h.after_epoch(g, epoch)
    finish(g, hooks)
    return g


def resolve_strategy(plan: GroupPlan, sweep: SweepRun) -> str:
    """The group's strategy, ``"auto"`` replaced by a measured choice.

    The choice and its timings go into ``config.json``; a resumed run takes the
    recorded choice, so it continues with the very same program. With
    progress on, what is being timed is printed as it goes (it can take
    minutes).
    """
    if plan.spec.strategy != "auto":
        return plan.spec.strategy
    meta = results.read_json(sweep.config_path)
    entry = meta["groups"][plan.index]
    if not (sweep.resume and entry.get("strategy")):

        def log(msg: str) -> None:
            tqdm.write(f"group {plan.index + 1}: {msg}")

        chosen, timings = auto_strategy(
            plan.spec, plan.hp, sweep.device.train,
            log=log if sweep.progress and sweep.writer else None,
        )  # fmt: skip
        entry.update(strategy=chosen, strategy_timings_ms=timings)
        if sweep.writer:
            results.write_json(sweep.config_path, meta)
    return entry["strategy"]


def new_history(plan: GroupPlan, n: int, hooks: Sequence[Hook]) -> dict:
    """The group's history buffers: the step's metrics and every hook's
    columns, NaN until measured, and the wall time so far."""
    nan = lambda *s: np.full(s, np.nan, np.float32)  # noqa: E731
    steps, evals = plan.total_steps, len(plan.eval_steps)
    out = {name: nan(n, steps) for name in ("train_loss", "train_acc", "lr")}
    out["wall_s"] = np.zeros((), np.float64)
    out["slots"] = nan(len(plan.epoch_steps))  # slots trained in each epoch
    if plan.spec.wd_scheduled:  # the weight decay applied at each step
        out["weight_decay"] = nan(n, steps)
    for h in hooks:
        c = h.columns(plan)
        out.update({name: nan(n, steps) for name in c.steps})
        out.update({name: nan(n, evals) for name in c.evals})
        out.update(h.buffers(plan, n))
    return out


def begin(plan: GroupPlan, sweep: SweepRun, hooks: Sequence[Hook]) -> GroupRun:
    """The group's strategy, compiled functions (one step per phase) and
    initial state; under ``--resume``, the state and history of its newest
    checkpoint that restores."""
    strategy = resolve_strategy(plan, sweep)
    specs = {
        s.batch_size: dataclasses.replace(s, strategy=strategy)
        for s in plan.phase_specs()
    }
    fns_of = {b: group_fns(s) for b, s in specs.items()}
    first = specs[plan.batch_sizes[0]]
    multiple = member_multiple(first)
    hp, n_real = pad_members(plan.hp, multiple)
    if len(hp["lr"]) > n_real:
        tqdm.write(
            f"group {plan.index + 1}: {n_real} members padded to {len(hp['lr'])} "
            f"(a multiple of {multiple}, for the devices); the padding members "
            "train and are dropped, and a member count divisible by it wastes nothing"
        )
    t0 = time.perf_counter()
    state = jax.block_until_ready(fns_of[first.batch_size].init(hp, sweep.base))
    g = GroupRun(
        plan=plan, sweep=sweep, strategy=strategy, specs=specs, fns_of=fns_of,
        hp=hp, n_real=n_real, state=state,
        history=new_history(plan, len(hp["lr"]), hooks),
        compile_s=time.perf_counter() - t0,
    )  # fmt: skip
    if sweep.resume:
        directory = checkpoint.group_dir(sweep.out, plan.index)
        g.epochs_done, restored = checkpoint.restore_latest(
            directory, {"state": g.state, "history": g.history}, log=tqdm.write
        )
        g.state, g.history = restored["state"], restored["history"]
        if g.epochs_done:
            _check_members(directory, g)
    return g


def _check_members(directory: str, g: GroupRun) -> None:
    """Refuse a checkpoint of other members than the plan's (a checkpoint
    written before members were saved with it is not judged)."""
    saved = (checkpoint.read_meta(directory, g.epochs_done) or {}).get("members")
    now = json.loads(json.dumps(member_recipes(g.plan)))
    if saved is not None and len(saved) == len(now):
        # a hyperparameter newer than the checkpoint, at its default, is not a
        # difference (the run trained with that default)
        now = [{k: v for k, v in b.items() if k in a or not _is_default(k, v)}
               for a, b in zip(saved, now)]  # fmt: skip
    if saved is None or saved == now:
        return
    diff = next(
        (f"member {a.get('member')}: {k} {_short(a.get(k))} there, "
         f"{_short(b.get(k))} here"
         for a, b in zip(saved, now) for k in sorted(set(a) | set(b))
         if a.get(k) != b.get(k)),
        f"{len(saved)} members there, {len(now)} here",
    )  # fmt: skip
    raise ValueError(
        f"--resume: the checkpoints in {directory} hold other members than this "
        f"run's configuration ({diff}); start a new --out"
    )


def compile_training(g: GroupRun) -> None:
    """Every training function's first call, on a throwaway copy of the state
    (the train step donates its input), so that run time and compile time are
    reported apart."""
    copy = lambda: jax.tree.map(jnp.copy, g.state)  # noqa: E731
    train = g.sweep.device.train
    g.first_call(g.fns_of[g.plan.batch_sizes[0]].start_epoch, copy(), g.hp)
    for b, fns in g.fns_of.items():
        g.first_call(fns.train_one, copy(), g.hp, train)
        if fns.train_probe is not None:
            g.first_call(fns.train_probe, copy(), g.hp, train)
        if fns.train_last is not None:
            g.first_call(fns.train_last, copy(), g.hp, train)
        if g.specs[b].steps_per_call > 1:
            g.first_call(fns.train, copy(), g.hp, train)


def compile_slots(g: GroupRun) -> None:
    """The first calls of the programs of a new slot count (after compaction):
    training, evaluation and the control rules, counted as compile time."""
    compile_training(g)
    copy = jax.tree.map(jnp.copy, g.state)
    g.first_call(eval_members, g.fns, g.spec, copy, g.sweep.device.evals["val"])
    if g.spec.plateau is not None or g.spec.early_stopping is not None:
        zeros = jnp.zeros(len(g.hp["lr"]), jnp.float32)
        g.first_call(g.fns.control, copy, g.hp, zeros)


def train_epoch(g: GroupRun, epoch: int, hooks: Sequence[Hook]) -> None:
    """One epoch: a new example order, then the steps up to each stop (an
    evaluation, a hook's step, the epoch's end) and the hooks due there."""
    g.epoch, g.epoch_started = epoch, time.perf_counter()
    g.state = g.fns.start_epoch(g.state, g.hp)
    start, end = (int(s) for s in g.plan.epoch_starts[epoch : epoch + 2])
    g.step = start
    evals = g.eval_index
    every = [h for h in hooks if h.every]
    due = {s for s in evals if start < s <= end} | {end}
    due |= {s for h in every for s in range(start + 1, end + 1) if s % h.every == 0}
    for stop in sorted(due):
        interrupts.check()  # Ctrl-C / SIGTERM: stop here, the epoch resumes
        begun = g.step
        metrics = run_to(g, stop)
        for h in hooks:
            h.after_steps(g, begun, stop, metrics)
        for h in every:
            if stop % h.every == 0:
                record(g, h.at_step(g), step=stop)
        if stop in evals:
            for h in hooks:
                record(g, h.at_eval(g, evals[stop]), e=evals[stop])
    # Every epoch is whole: each member took exactly n_train examples.
    taken = fetch(g.state.pos)
    spec = g.spec
    if not np.all(taken == spec.full_batches * spec.batch_size + spec.last_batch):
        raise RuntimeError(f"epoch {epoch + 1} took {taken} examples per member")


# The step's metrics and their history names.
STEP_METRICS = {
    "loss": "train_loss",
    "acc": "train_acc",
    "lr": "lr",
    "wd": "weight_decay",
}


def run_to(g: GroupRun, stop: int) -> dict:
    """Train from ``g.step`` to ``stop`` (the epoch's smaller last batch
    included when ``stop`` is the epoch's end); the step's metrics go into
    the history, and come back as numpy."""
    spec, fns, train = g.spec, g.fns, g.sweep.device.train
    full_end = int(g.plan.epoch_starts[g.epoch]) + spec.full_batches
    g.state, metrics = run_steps(
        fns, spec, g.state, g.hp, train, min(stop, full_end) - g.step,
        start=g.step, probe_every=g.config.probe_every,
    )  # fmt: skip
    if stop > full_end:  # the epoch's smaller last batch (not probed)
        g.state, last = fns.train_last(g.state, g.hp, train)
        metrics = concat_metrics([metrics, last])
    metrics = fetch(metrics)
    for key, name in STEP_METRICS.items():
        if key in metrics:
            g.write(name, slice(g.step, stop), metrics[key])
    g.step = stop
    return metrics


def finish(g: GroupRun, hooks: Sequence[Hook]) -> None:
    """The final values: each member's flags, then every hook's ``at_end``
    (final evaluation, sharpness, saved weights, ...); then the padding
    members are dropped."""
    g.final = fetch({"diverged": g.state.diverged, "stopped": g.state.stopped,
                     "lr_scale": g.state.lr_scale})  # fmt: skip
    for h in hooks:
        record(g, h.at_end(g))
    n = g.n_real
    g.history = {k: (v[:n] if np.ndim(v) > 1 else v) for k, v in g.history.items()}
    g.final = {k: (v[:n] if np.ndim(v) else v) for k, v in g.final.items()}


def _is_default(key: str, value) -> bool:
    return key in HPARAM_DEFAULTS and value == HPARAM_DEFAULTS[key]


def _short(value):
    return f"{value:.6g}" if isinstance(value, float) else value
