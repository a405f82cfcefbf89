"""Derived tasks and experiments made of several sweeps.

:func:`subset_classes` makes a task from some classes of a dataset (e.g.
pretraining on Fashion-MNIST's classes 0-4 and fine-tuning on 5-9), and
:func:`class_task` loads one from a sweep's data settings. :func:`run_stages`
is the command of an experiment that runs several sweeps one after the other
(``<out>/<stage>/``, each a complete results directory), where a later sweep
may start from an earlier one's weights (``init_from``) or differ from it in
a setting that is fixed for a whole sweep (``early_stop_patience``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from jaxbatch import cli, data, interrupts
from jaxbatch.config.schema import EPOCH_FORMS
from jaxbatch.config.sweep_config import SweepConfig
from jaxbatch.sweep.runner import run


def _stratified(y: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded subset of ``size`` images with the class proportions
    of ``y``, in a shuffled order (all of them when ``size`` is None)."""
    perm = np.random.default_rng(seed).permutation(len(y))
    if size is None or size >= len(y):
        return perm
    classes, per_class = np.unique(y, return_counts=True)
    counts = data._counts(size, per_class, per_class)
    keep = np.concatenate(
        [perm[y[perm] == c][:n] for c, n in zip(classes, counts, strict=True)]
    )
    rank = np.argsort(perm)
    return keep[np.argsort(rank[keep])]


def subset_classes(
    ds: data.Dataset,
    classes: Iterable[int],
    *,
    relabel: bool = True,
    train_size: int | None = None,
    val_size: int | None = None,
    seed: int = 0,
) -> data.Dataset:
    """The images of ``classes`` only, in every split.

    ``relabel``: class ``classes[i]`` becomes label ``i`` and the task has
    ``len(classes)`` classes; otherwise labels and ``num_classes`` stay (a
    model trained on it keeps the full-size head). ``train_size`` /
    ``val_size``: seeded, stratified subsets of the remaining train / val
    images. The normalisation statistics (``mean``, ``std``) stay those of
    ``ds``, so tasks cut from one dataset feed a network the same inputs.
    """
    classes = [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < ds.num_classes]
    if not classes or bad or len(set(classes)) != len(classes):
        raise ValueError(
            f"classes must be distinct labels in [0, {ds.num_classes}), got {classes}"
        )
    lookup = np.full(ds.num_classes, -1, np.int32)
    lookup[classes] = np.arange(len(classes)) if relabel else classes
    split = {}
    for name, size, offset in (("train", train_size, 0), ("val", val_size, 1)):
        x, y = getattr(ds, f"x_{name}"), getattr(ds, f"y_{name}")
        idx = np.flatnonzero(lookup[y] >= 0)
        if size is not None and size > len(idx):
            raise ValueError(
                f"{name}_size={size}: classes {classes} have only {len(idx)} "
                f"{name} images"
            )
        idx = idx[_stratified(y[idx], size, seed + offset)]
        split[f"x_{name}"], split[f"y_{name}"] = x[idx], lookup[y[idx]]
    if ds.x_test is not None:
        idx = np.flatnonzero(lookup[ds.y_test] >= 0)
        split["x_test"], split["y_test"] = ds.x_test[idx], lookup[ds.y_test[idx]]
    names = ds.class_names
    return data.Dataset(
        name=f"{ds.name}[{','.join(map(str, classes))}]",
        x_train=split["x_train"],
        y_train=split["y_train"],
        x_val=split["x_val"],
        y_val=split["y_val"],
        x_test=split.get("x_test"),
        y_test=split.get("y_test"),
        num_classes=len(classes) if relabel else ds.num_classes,
        class_names=tuple(names[c] for c in classes) if relabel else names,
        mean=ds.mean,
        std=ds.std,
    )


def class_task(
    config: SweepConfig, classes: Iterable[int], *, relabel: bool = True
) -> data.Dataset:
    """The task of ``classes`` from a sweep's data settings: the dataset's
    usual train/validation split, then :func:`subset_classes` with the
    sweep's ``train_size``/``val_size`` (subsets of those classes' images)."""
    full = _load(config.dataset, config.data_dir, config.data_seed, config.image_size)
    return subset_classes(
        full,
        classes,
        relabel=relabel,
        train_size=config.train_size,
        val_size=config.val_size,
        seed=config.data_seed,
    )


_LOADED: dict = {}


def _load(name, data_dir, seed, image_size) -> data.Dataset:
    key = (name, data_dir, seed, image_size)
    if key not in _LOADED:
        _LOADED.clear()  # keep one dataset in memory
        _LOADED[key] = data.load(
            name, data_dir=data_dir, seed=seed, image_size=image_size
        )
    return _LOADED[key]


def _stages(it: Iterator, args) -> Iterator:
    """The stages; under ``--dry-run`` the ones that start from an earlier
    stage's weights (which a dry run does not train) end the iteration."""
    while True:
        try:
            yield next(it)
        except StopIteration:
            return
        except ValueError as err:
            if not (args.dry_run and "--init-from" in str(err)):
                raise
            print("the remaining stages start from the weights of one a dry run "
                  "does not train: their cost is not counted")  # fmt: skip
            return


def stage_config_for(experiment, presets, args, reads, planning=False):
    """The ``config_for`` handed to an experiment's ``stages`` (see
    :func:`run_stages`); records each config's ``(fields its member builder
    read, fields the stage fixed)`` in ``reads`` by ``id``. ``planning``:
    a stage that starts from an earlier one's weights is built without them."""

    def config_for(defaults: Mapping | None = None, **fixed) -> SweepConfig:
        preset = {**presets[args.preset], **(defaults or {})}
        if "recipes" in fixed:  # a stage's own members, crossed like a preset's
            preset["recipes"] = fixed.pop("recipes")
        config, read = cli.build_config(args, experiment, {args.preset: preset})
        # A setting the stage fixes in one unit fixes its other unit too (a
        # patience in evaluations: the flag of the patience in epochs is
        # refused as the stage's, not met with "give one of them").
        for pair in EPOCH_FORMS:
            for f, other in (pair, pair[::-1]):
                if f in fixed and other not in fixed:
                    fixed[other] = None
        names = tuple(fixed)
        if planning:  # an earlier stage's weights do not exist yet
            fixed.pop("init_from", None)
        config = config.replace(**fixed) if fixed else config
        reads[id(config)] = (read, names)
        return config

    return config_for


def planner(experiment, presets, stages):
    """``plan(args, out="") -> [(config, read, fixed)]``: the stages that can
    be built before anything trains (see :func:`jaxbatch.cli.hidden_fields`)."""

    def plan(args, out="") -> list:
        reads = {}
        config_for = stage_config_for(experiment, presets, args, reads, True)
        configs = plan_stages(stages, config_for, out, args.preset)
        return [(c, *reads[id(c)]) for c in configs]

    return plan


def plan_stages(stages, config_for, out: str, preset: str) -> list[SweepConfig]:
    """The configs of the stages that can be built before anything trains
    (a later stage may need an earlier one's results: planning stops there);
    nothing is written."""
    configs = []
    try:
        for _, config, _ in stages(config_for, out, preset):
            configs.append(config)
    except (ValueError, OSError, KeyError):
        pass  # a stage that starts from an earlier one's results
    return configs


# A stage: (name, config, dataset or None for the config's own data).
Stage = tuple[str, SweepConfig, "data.Dataset | None"]
ConfigFor = Callable[..., SweepConfig]


def run_stages(
    experiment: str,
    description: str,
    presets: Mapping[str, Mapping],
    argv: Sequence[str] | None,
    stages: Callable[[ConfigFor, str, str], Iterator[Stage]],
    then: Callable | None = None,
):
    """The command line of an experiment of several sweeps; returns
    ``(<out>, parsed flags)``.

    ``stages(config_for, out, preset)`` yields ``(name, config, dataset)`` one at a
    time; each is run into ``<out>/<name>`` (with ``dataset``, or the
    config's own data when it is None) before the next is asked for, so a
    later stage may start from an earlier one's weights. ``config_for(
    defaults=None, **fixed)`` is the preset updated with ``defaults``, then
    with every flag given on the command line, then with ``fixed``: flags
    apply to every stage, except the settings a stage fixes. ``--resume``
    continues every stage that started and runs the rest.
    """
    plan = planner(experiment, presets, stages)
    parser, given, args, out = cli.parse(
        description, presets, experiment, argv, plan, own_members=True
    )
    config_for = stage_config_for(experiment, presets, args, {})

    with cli.command(parser, experiment, given, args, out):
        cli.refuse_inert(args, experiment, plan(args, out), own_members=True)
        print(f"results -> {out}", flush=True)
        for name, config, ds in _stages(stages(config_for, out, args.preset), args):
            interrupts.check()
            stage_out = os.path.join(out, name)
            started = os.path.exists(os.path.join(stage_out, "config.json"))
            print(f"[{experiment}] stage {name} -> {stage_out}", flush=True)
            run(
                config,
                stage_out,
                resume=args.resume and started,
                progress=not args.no_progress,
                plots=not args.no_plots,
                dataset=ds,
                tensorboard=args.tensorboard,
                dry_run=args.dry_run,
            )
            if args.dry_run:  # its cost is printed; nothing trained
                continue
            cli.print_summary(stage_out)
        if then is not None and not args.dry_run:
            then(out, args)  # the analysis, figures and report, in the same care
    return out, args
