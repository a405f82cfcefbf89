"""Time per update and per epoch against batch size, on the device in use.

:func:`batch_timing` compiles one member's train step for each batch size,
times it (best of repeated windows, compile time apart) and writes
``timing.csv`` with ``model, batch_size, ms_per_update, s_per_epoch,
examples_per_s, compile_s``. ``s_per_epoch`` is ``ms_per_update`` times the
updates of one epoch of ``n_train`` images (``ceil(n_train / batch)``): a
measured update extrapolated to an epoch, so batch 1 of a CNN does not need
an hour of training to be timed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxbatch import engine, interrupts, results
from jaxbatch import models as models_mod
from jaxbatch.cli import ArgumentParser
from jaxbatch.sweep.rundir import default_out

COLUMNS = (
    "model", "batch_size", "ms_per_update", "s_per_epoch", "examples_per_s",
    "compile_s", "backend", "device_kind",
)  # fmt: skip


def time_update(
    model: str,
    batch_size: int,
    *,
    model_kwargs: tuple = (),
    image_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
    min_time_s: float = 0.5,
) -> tuple[float, float]:
    """``(compile_s, ms_per_update)`` of one member's SGD step at this batch
    size, on random images held on the device."""
    n = 2 * batch_size  # two batches: every timed step has its own images
    rng = np.random.default_rng(0)
    train = engine.device_train_data(
        rng.integers(0, 256, (n, *image_shape), dtype=np.uint8),
        rng.integers(0, num_classes, n).astype(np.int32),
        np.full(image_shape[-1], 0.5, np.float32),
        np.full(image_shape[-1], 0.25, np.float32),
    )
    spec = engine.TrainSpec(
        model=model, model_kwargs=tuple(model_kwargs), num_classes=num_classes,
        image_shape=image_shape, n_train=n, batch_size=batch_size, drop_last=True,
    )  # fmt: skip
    hp = engine.stack_hparams([{"lr": 0.01, "seed": 0}])
    return engine.time_strategy(spec, hp, train, steps=2, min_time_s=min_time_s)


def batch_timing(
    out: str,
    models: Sequence[tuple[str, tuple]],
    batch_sizes: Sequence[int],
    *,
    n_train: int = 54000,
    image_shape: tuple[int, int, int] = (28, 28, 1),
    min_time_s: float = 0.5,
    progress: bool = True,
) -> list[dict]:
    """Time every ``(model, model_kwargs)`` at every batch size; write
    ``<out>/timing.csv`` (rewritten after every row, so an interrupted run
    keeps what it measured) and return the rows."""
    for b in batch_sizes:
        if not (isinstance(b, int) and b > 0):
            raise ValueError(f"batch sizes must be positive integers, got {b!r}")
    os.makedirs(out, exist_ok=True)
    device = jax.devices()[0]
    rows = []
    cells = [(m, kw, b) for m, kw in models for b in batch_sizes]
    for model, kwargs, b in tqdm(cells, disable=not progress, desc="timing"):
        compile_s, ms = time_update(
            model, b, model_kwargs=kwargs, image_shape=image_shape,
            min_time_s=min_time_s,
        )  # fmt: skip
        rows.append({
            "model": model, "batch_size": b, "ms_per_update": ms,
            "s_per_epoch": ms / 1e3 * math.ceil(n_train / b),
            "examples_per_s": b / (ms / 1e3), "compile_s": compile_s,
            "backend": jax.default_backend(), "device_kind": device.device_kind,
        })  # fmt: skip
        results.write_csv(os.path.join(out, "timing.csv"), COLUMNS, rows)
    return rows


def run_timing(
    experiment: str,
    description: str,
    presets: Mapping[str, Mapping],
    argv: Sequence[str] | None = None,
    then: Callable | None = None,
):
    """The command line of a timing experiment, then ``then(out, flags)``
    (its figures and report); returns ``(the results directory, parsed
    flags)``.

    A preset names ``models`` (``((name, kwargs), ...)``), ``batch_sizes``,
    ``n_train`` and ``min_time_s``; flags override them.
    """
    parser = ArgumentParser(
        prog=f"python -m experiments.{experiment}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=sorted(presets),
        default="quick",
        help="the settings to start from (default: quick)",
    )
    parser.add_argument(
        "--models",
        help="comma-separated model names "
        "(default: the preset's, with its model options)",
    )
    parser.add_argument("--batch-sizes", help="comma-separated batch sizes")
    parser.add_argument(
        "--n-train", type=int, help="training images per epoch, for s_per_epoch"
    )
    parser.add_argument(
        "--min-time",
        type=float,
        dest="min_time_s",
        help="seconds of timing per cell (best window counts)",
    )
    parser.add_argument(
        "--out", help=f"results directory (default: runs/{experiment}/<date-time>)"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar")  # fmt: skip
    args = parser.parse_args(argv)
    settings = dict(presets[args.preset])
    try:
        if args.models:
            names = [m for m in args.models.split(",") if m]
            known = dict(settings["models"])
            settings["models"] = tuple((m, known.get(m, ())) for m in names)
            for m in names:
                if m not in models_mod.available_models():
                    raise ValueError(
                        f"unknown model {m!r}; choose one of "
                        f"{', '.join(models_mod.available_models())}"
                    )
        if args.batch_sizes:
            try:
                settings["batch_sizes"] = tuple(
                    int(b) for b in args.batch_sizes.split(",")
                )
            except ValueError:
                raise ValueError(
                    "--batch-sizes takes integers like 1,16,256, got "
                    f"{args.batch_sizes!r}"
                ) from None
        for key, flag in (("n_train", "--n-train"), ("min_time_s", "--min-time")):
            value = getattr(args, key)
            if value is not None:
                if not value > 0:
                    raise ValueError(f"{flag} must be positive, got {value}")
                settings[key] = value
        out = args.out or default_out(experiment)
        print(f"results -> {out}", flush=True)
        with interrupts.deferred():
            rows = batch_timing(out, progress=not args.no_progress, **settings)
            for r in rows:
                print(
                    f"{r['model']:>12} batch {r['batch_size']:>5}: "
                    f"{r['ms_per_update']:9.2f} ms/update "
                    f"{r['s_per_epoch']:9.2f} s/epoch {r['examples_per_s']:10.0f} "
                    f"examples/s (compile {r['compile_s']:.1f} s)"
                )
            if then is not None:
                then(out, args)
    except (ValueError, OSError) as err:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(err).split())}\n")
    except KeyboardInterrupt:
        sys.stderr.write(f"\ninterrupted; what was measured is in {out}/timing.csv\n")
        raise SystemExit(130) from None
    return out, args
