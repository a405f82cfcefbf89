"""Shared command line of the experiments: presets, flags, errors, summary.

An experiment module defines its presets (dicts of ``SweepConfig`` fields) and
calls :func:`main`. Flags given on the command line override the preset.
"""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import sys
from collections.abc import Mapping, Sequence

from jaxbatch import models, sweep


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0.01,0.02, got {text!r}"
        ) from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 32,64, got {text!r}"
        ) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _kwarg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a bare word such as relu


# flag -> (SweepConfig field, type, help)
_FLAGS: dict[str, tuple[str, object, str]] = {
    "--dataset": ("dataset", str, "dataset: fashion_mnist (default, offline), "
                  "imagefolder (with --data-dir), synthetic, or a tfds name (cifar10)"),
    "--data-dir": ("data_dir", str, "directory of the dataset's files (IDX files, or "
                   "one sub-folder per class for imagefolder)"),
    "--model": ("model", str, "model: " + ", ".join(models.available_models())),
    "--models": ("models", _names, "comma-separated models compared in one sweep, "
                 "one group each (overrides --model)"),
    "--batch-sizes": ("batch_sizes", _ints, "comma-separated batch sizes; each is one "
                      "compiled group"),
    "--lrs": ("lrs", _floats, "comma-separated peak learning rates, trained together"),
    "--weight-decays": ("weight_decays", _floats, "comma-separated weight decays"),
    "--momentums": ("momentums", _floats, "comma-separated momentum values"),
    "--seeds": ("seeds", _ints, "comma-separated member seeds (init and data order)"),
    "--optimizer": ("optimizer", str, "sgd, adam, adamw or rmsprop"),
    "--schedule": ("schedule", str, "LR shape: step, constant, exponential, "
                   "inverse_time or cosine"),
    "--gamma": ("gamma", float, "step decay factor"),
    "--decay-epochs": ("decay_epochs", float, "step decay period in epochs "
                       "(default: half of training)"),
    "--epochs": ("epochs", int, "training epochs"),
    "--train-size": ("train_size", int, "training examples (a fixed, seeded subset)"),
    "--val-size": ("val_size", int, "validation examples (a fixed, seeded subset)"),
    "--image-size": ("image_size", int, "resize images to this many pixels a side"),
    "--eval-every": ("eval_every", int, "evaluate the whole validation set every N "
                     "iterations"),
    "--eval-batch-size": ("eval_batch_size", int, "batch size of evaluation"),
    "--weight-decay-mode": ("weight_decay_mode", str, "l2 (coupled, default), "
                            "decoupled (SGDW/AdamW) or l1"),
    "--warmup-epochs": ("warmup_epochs", float, "linear LR warmup over N epochs"),
    "--plateau-factor": ("plateau_factor", float, "per member, multiply the LR by "
                         "this when --control-metric stalls (ReduceLROnPlateau)"),
    "--plateau-patience": ("plateau_patience", int, "evaluations without "
                           "improvement before the LR is reduced"),
    "--plateau-stop-scale": ("plateau_stop_scale", float, "stop a member once its "
                             "LR scale falls to this (e.g. 0.0009765625 = 1/1024)"),
    "--early-stop-patience": ("early_stop_patience", int, "stop a member after N "
                              "evaluations without improvement"),
    "--control-metric": ("control_metric", str, "val_loss (default) or val_acc, "
                         "watched by the plateau and early-stopping rules"),
    "--strategy": ("strategy", str, "member axis: auto (time the candidates, pick "
                   "the fastest), vmap, map, unroll or chunk:N"),
    "--steps-per-call": ("steps_per_call", int, "training steps per compiled call"),
    "--devices": ("devices", int, "shard the members over N devices (0: all)"),
    "--precision": ("precision", str, "float32 or bfloat16 (mixed precision)"),
}  # fmt: skip


def build_parser(
    description: str, presets: Mapping[str, Mapping], experiment: str = ""
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{experiment}" if experiment else None,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=sorted(presets),
        default="quick",
        help="starting configuration; other flags override it (default: quick)",
    )
    for flag, (_, kind, help_text) in _FLAGS.items():
        parser.add_argument(flag, type=kind, default=None, help=help_text)
    parser.add_argument(
        "--model-kwargs",
        type=_kwarg,
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="model options, e.g. width=0.5 small_input=True (a --model other than "
        "the preset's drops the preset's options)",
    )
    parser.add_argument(
        "--seed", type=int, default=None,
        help="seed of the data subset/split and of every member (same as --seeds N)",
    )  # fmt: skip
    parser.add_argument(
        "--out",
        default=None,
        help="results directory (default: runs/<experiment>/<time>)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last complete epoch",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    parser.add_argument(
        "--distributed", action="store_true",
        help="multi-host run: call jax.distributed.initialize() first (start the "
        "same command on every host; see the README)",
    )  # fmt: skip
    return parser


def config_from_args(
    args: argparse.Namespace, experiment: str, presets: Mapping[str, Mapping]
) -> sweep.SweepConfig:
    """The preset's values, overridden by every flag that was given."""
    values = dict(presets[args.preset])
    for flag, (field, _, _) in _FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            values[field] = value
    preset = presets[args.preset]
    if args.model is not None and args.model != preset.get("model"):
        values.pop("model_kwargs", None)
        values.pop("models", None)
    if args.models is not None and args.models != preset.get("models"):
        values.pop("model_kwargs", None)
    if args.model_kwargs is not None:
        values["model_kwargs"] = tuple(sorted(args.model_kwargs))
    if args.seed is not None:
        values["seeds"] = (args.seed,)
        values["data_seed"] = args.seed
    return sweep.SweepConfig(experiment=experiment, **values)


def format_table(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)
    ]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def main(
    experiment: str,
    description: str,
    presets: Mapping[str, Mapping],
    argv: Sequence[str] | None = None,
) -> str:
    """Parse flags, run the sweep, print a summary; returns the results directory."""
    parser = build_parser(description, presets, experiment)
    args = parser.parse_args(argv)
    if args.distributed:
        import jax

        jax.distributed.initialize()
    out = args.out or sweep.default_out(experiment)
    try:
        config = config_from_args(args, experiment, presets)
        if args.resume and not args.out:
            raise ValueError("--resume needs --out DIR, the run to continue")
        print(f"results -> {out}", flush=True)
        out = sweep.run(
            config,
            out,
            resume=args.resume,
            progress=not args.no_progress,
            plots=not args.no_plots,
        )
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    except KeyboardInterrupt:
        given = list(sys.argv[1:] if argv is None else argv)
        if not args.out:
            given += ["--out", out]
        cmd = " ".join(shlex.quote(a) for a in given if a != "--resume")
        sys.stderr.write(
            f"\ninterrupted. Every finished epoch is saved; continue with:\n"
            f"  python -m experiments.{experiment} {cmd} --resume\n"
        )
        raise SystemExit(130) from None
    members = sweep.results.read_csv(os.path.join(out, "members.csv"))
    rows = [dict(zip(members, vals)) for vals in zip(*members.values())]
    print(
        format_table(
            rows,
            ["member", "batch_size", "lr", "best_val_acc", "final_val_acc",
             "final_train_loss", "final_val_loss", "gap_loss", "gap_acc", "diverged",
             "wall_s"],
        )
    )  # fmt: skip
    print(f"results: {out}")
    return out
