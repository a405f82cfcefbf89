"""A whole sweep: plan the groups, train each, write the tables, finish.

``run(config)`` checks everything it can before anything compiles (the
results directory, a resume's configuration, the data, the plan, the hooks'
column names), trains the groups one after another (every epoch
checkpointed, so ``resume=True`` continues a killed run and ends with the
same numbers as a run never killed), writes ``members.csv`` as each group
finishes, then ``history.csv`` and ``arms.csv``, runs the analyses that
follow a sweep, and draws the figures and the report.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import jax

from jaxbatch import checkpoint, choices, data, report, results, xla_flags
from jaxbatch import tensorboard as tb
from jaxbatch.config.sweep_config import SweepConfig
from jaxbatch.engine.caches import enable_compilation_cache
from jaxbatch.engine.spec import check_placement
from jaxbatch.engine.step import base_fit, member_shapes
from jaxbatch.plots.standard import save_all
from jaxbatch.sweep import cost, pbt, population, rundir, tables
from jaxbatch.sweep.control import Control
from jaxbatch.sweep.group import new_history, train_group
from jaxbatch.sweep.hooks import Hook, check_names
from jaxbatch.sweep.inputs import device_data, load_data
from jaxbatch.sweep.measurements import (
    Ensembles,
    Evaluation,
    Interpolation,
    NoiseScale,
    Sharpness,
    StepProbes,
    WeightStats,
)  # fmt: skip
from jaxbatch.sweep.pbt import PBT
from jaxbatch.sweep.plan import plan_groups
from jaxbatch.sweep.population import SuccessiveHalving
from jaxbatch.sweep.records import (
    Checkpoint,
    Progress,
    SaveWeights,
    TensorBoard,
    Throughput,
)  # fmt: skip
from jaxbatch.sweep.state import GroupRun, SweepRun


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
    hooks: Sequence[Hook] = (),
) -> str:
    """Run a whole sweep and write its results directory; returns its path.

    ``plots``: the standard figures and (with ``report``) ``report.html`` at
    the end; ``tensorboard``: TensorBoard scalars in ``<out>/tensorboard`` as
    it trains (needs tensorboardX); ``hooks``: measurements of your own
    (:mod:`jaxbatch.sweep.hooks`, e.g. :func:`~jaxbatch.sweep.member_metric`),
    run after the standard ones at each cadence. ``dry_run``: check the
    configuration, load the data, print and return the sweep's cost (a dict)
    and stop: nothing is written or trained.

    Raises ValueError before anything compiles for bad values, and when
    ``resume`` finds a run made with a different configuration. Nothing is
    written to ``out`` before every check has passed.
    """
    hooks = sweep_hooks(config, tensorboard, hooks)
    sweep = plan_sweep(
        config, out or rundir.default_out(config.experiment), hooks, resume=resume,
        progress=progress, dataset=dataset, tensorboard=tensorboard, dry_run=dry_run,
    )  # fmt: skip
    if dry_run:  # the cost only: nothing is written, nothing trains
        return sweep.meta["cost"]
    try:
        groups = train_groups(sweep, hooks)
        if sweep.writer:
            write_tables(sweep, groups, hooks)
            finish(sweep, hooks, figures=plots, page=plots and report)
    finally:
        if sweep.lock is not None:
            sweep.lock.release()
    return sweep.out


def sweep_hooks(
    config: SweepConfig, tensorboard: bool, extra: Sequence[Hook] = ()
) -> list[Hook]:
    """The hooks of a sweep, in the order they run at each cadence: evaluation
    and the probes the config names, the control rules, the user's ``extra``,
    then checkpoints, throughput, TensorBoard, progress and saved weights, and
    the analyses after the sweep."""
    names = config.probes
    measure = [Evaluation()]
    if any(p in choices.STEP_PROBES for p in names):
        measure.append(StepProbes())
    if "noise_scale" in names:
        measure.append(NoiseScale(config.probe_size, config.noise_every))
    measure.append(Control())
    # after the control rules, before the checkpoint
    measure += population.halving_hooks(config.population, config.epochs)
    measure += pbt.pbt_hooks(config.population)
    if "sharpness" in names:
        measure.append(Sharpness(config.probe_size, tuple(config.sharpness_eps)))
    if "weights" in names:
        measure.append(WeightStats())
    if config.ensembles and config.test:
        measure.append(Ensembles())
    for h in extra:
        if not isinstance(h, Hook):
            raise ValueError(f"hooks must be jaxbatch.sweep.Hook objects, got {h!r}")
    keep = [Checkpoint(), Throughput(), *([TensorBoard()] if tensorboard else []),
            Progress(), SaveWeights()]  # fmt: skip
    after = [Interpolation(*config.interpolate)] if config.interpolate else []
    return [*measure, *extra, *keep, *after]


def plan_sweep(
    config: SweepConfig,
    out: str,
    hooks: Sequence[Hook],
    *,
    resume: bool,
    progress: bool,
    dataset,
    tensorboard: bool,
    dry_run: bool,
) -> SweepRun:
    """Every check, the data and the plan; then (unless a dry run) the run
    directory's ``config.json``, the data on the device and the cost."""
    # The XLA:CPU flags of these models, before anything starts JAX (the
    # placement check below is the first thing to ask for devices).
    xla_flags.configure(config.model_list(), devices=config.devices)
    check_placement(config.devices, config.precision)
    if not dry_run:
        rundir.check_out(out, resume)
    if tensorboard:
        tb.check_available()
    if resume and not dry_run:
        rundir.check_resume(out, config)
        _check_same_hooks(out, hooks)
    if config.compile_cache:
        enable_compilation_cache()
    ds = dataset or load_data(config)
    plans = plan_groups(config, ds)  # validates batch sizes against the data
    tags = {k for plan in plans for _, m in plan.listed() for k, _ in m["recipe"].tags}
    check_names(hooks, plans, tags)
    sweep = SweepRun(
        config=config, out=out, dataset=ds, plans=plans, device=None,
        meta=rundir.describe(config, ds, plans), resume=resume, progress=progress,
        writer=rundir.is_writer(),
    )  # fmt: skip
    sweep.meta["hooks"] = [h.name for h in hooks if not _standard(h)]
    if dry_run:
        sweep.device = device_data(ds, plans[0].spec, config)
        sweep.meta["cost"] = cost.sweep_cost(plans, sweep.device.train)
        print(cost.cost_line(sweep.meta["cost"]), flush=True)
        return sweep
    shapes = [member_shapes(p.spec, {k: v[0] for k, v in p.hp.items()}) for p in plans]
    if config.init_from:
        sweep.base = _load_base(config.init_from, plans, shapes)
    if not resume and sweep.writer:  # before anything compiles or is written
        checkpoint.check_free_space(
            out, _checkpoint_bytes(plans, shapes, hooks),
            then="free some space or choose another --out",
        )  # fmt: skip
    if sweep.writer:
        # One writer per run directory, from here to the end of the run; the
        # checks run again under the lock (another run may have started
        # between them and here).
        sweep.lock = rundir.RunLock(out)
        try:
            rundir.check_out(out, resume)
            if resume:
                rundir.check_resume(out, config)
        except ValueError:
            sweep.lock.release()
            raise
    try:
        _start_rundir(sweep, resume)
    except BaseException:
        if sweep.lock is not None:
            sweep.lock.release()
        raise
    return sweep


def _start_rundir(sweep: SweepRun, resume: bool) -> None:
    """``config.json``, the data on the device and the cost."""
    rundir.sync_hosts("jaxbatch: every host checked the output directory")
    if not resume and sweep.writer:
        results.write_json(sweep.config_path, sweep.meta)
    rundir.sync_hosts("jaxbatch: config.json written")
    sweep.device = device_data(sweep.dataset, sweep.plans[0].spec, sweep.config)
    sweep.meta["cost"] = cost.sweep_cost(sweep.plans, sweep.device.train)
    if resume:  # keep what the interrupted run measured (its groups' FLOP/s)
        saved = results.read_json(sweep.config_path).get("cost") or {}
        cost.keep_measured(sweep.meta["cost"], saved)
    print(cost.cost_line(sweep.meta["cost"]), flush=True)
    if sweep.writer:
        rundir.update_json(sweep.config_path, cost=sweep.meta["cost"])


def _load_base(init_from: str, plans, shapes) -> dict:
    """The weights of ``--init-from``, checked against every group's model
    before anything compiles: the same layers and shapes, but for a
    classifier head for another number of classes (it starts fresh)."""
    run_dir, member = results.parse_run_member(init_from)
    base = jax.tree.map(jax.numpy.asarray, results.load_params(run_dir, member))
    for plan, state in zip(plans, shapes):
        fresh = {"params": state.params, "batch_stats": state.batch_stats}
        loaded, head, problems = base_fit(fresh, base, plan.spec.num_classes)
        if problems:
            shown = "; ".join(problems[:4]) + ("; ..." if len(problems) > 4 else "")
            n = len(loaded) + len(head) + len(problems)
            raise ValueError(
                f"--init-from {init_from}: member {member}'s weights do not fit "
                f"{plan.spec.model} ({len(problems)} of {n} "
                f"arrays differ: {shown}); start from a run of the same model (only "
                "the classifier head may differ, for another number of classes)"
            )
        fresh_note = f"; {', '.join(head)} start fresh (a new head)" if head else ""
        print(
            f"initialising every member of group {plan.index + 1} from member "
            f"{member} of {run_dir}: {len(loaded)} of {len(loaded) + len(head)} "
            f"arrays loaded{fresh_note}", flush=True,
        )  # fmt: skip
    return base


def _checkpoint_bytes(plans, shapes, hooks) -> int:
    """What the checkpoints of a run take: two per group (the newest two are
    kept), of every member's state and the group's history."""
    total = 0
    for plan, state in zip(plans, shapes):
        history = new_history(plan, len(plan.members), hooks)
        total += 2 * (
            len(plan.members) * checkpoint.tree_bytes(state)
            + checkpoint.tree_bytes(history)
        )
    return total


_STANDARD = (Evaluation, Ensembles, StepProbes, NoiseScale, Control,
             SuccessiveHalving, PBT,
             Sharpness,
             WeightStats,
             Checkpoint, Throughput, TensorBoard, Progress, SaveWeights,
             Interpolation)  # fmt: skip


def _standard(h: Hook) -> bool:
    return type(h) in _STANDARD


def _check_same_hooks(out: str, hooks: Sequence[Hook]) -> None:
    """A resumed run must measure what it measured (its checkpoints hold the
    hooks' history)."""
    saved = results.read_json(os.path.join(out, "config.json")).get("hooks", [])
    now = [h.name for h in hooks if not _standard(h)]
    if saved != now:
        raise ValueError(
            f"--resume: the run in {out} was made with the hooks {saved}, now "
            f"{now}; resume with the same hooks, or start a new --out"
        )


def train_groups(sweep: SweepRun, hooks: Sequence[Hook]) -> list[GroupRun]:
    """Train the groups one after another; ``members.csv`` is rewritten after
    every group, so a run stopped later keeps the groups that finished."""
    columns = tables.member_columns(sweep.plans, hooks)
    groups, rows = [], []
    for plan in sweep.plans:
        g = train_group(plan, sweep, hooks)
        c = sweep.meta["cost"]
        c["groups"][plan.index].update(population.compute(g))
        c["compute"] = population.compute_total(c["groups"])
        rows += tables.member_rows(g, hooks)
        g.release()  # the device state: the tables need the history only
        groups.append(g)
        if sweep.writer:
            rundir.update_json(sweep.config_path, cost=sweep.meta["cost"])
            rows.sort(key=lambda r: r["member"])
            results.write_csv(os.path.join(sweep.out, "members.csv"), columns, rows)
    return groups


def write_tables(sweep: SweepRun, groups: Sequence[GroupRun], hooks) -> None:
    results.write_csv(
        os.path.join(sweep.out, "history.csv"),
        tables.history_columns(groups, hooks),
        itertools.chain.from_iterable(tables.history_rows(g, hooks) for g in groups),
    )
    tables.write_arms(sweep.out)


def finish(
    sweep: SweepRun, hooks: Sequence[Hook], *, figures: bool, page: bool
) -> None:
    """The analyses that follow a sweep (the hooks' ``after_sweep``), then the
    standard figures and ``report.html``."""
    for h in hooks:
        h.after_sweep(sweep)
    if figures:
        save_all(sweep.out)
    if page:
        report.build(sweep.out)
