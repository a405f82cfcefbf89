"""Shared command line of the experiments: presets, flags, errors, summary.

The flags are generated from the configuration's fields (:func:`config_flags`)
and override the experiment's preset (:func:`config_from_args`); bad input
ends in one line and exit 2, Ctrl-C and SIGTERM in the exact ``--resume``
command (:func:`command`). :func:`run_sweep` is the command of a one-sweep
experiment (``jaxbatch.experiment`` declares the rest).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import difflib
import functools
import os
import re
import shlex
import sys
from collections.abc import Callable, Collection, Mapping, Sequence

import jax

from jaxbatch import interrupts, results, stats
from jaxbatch.columns import summary_columns
from jaxbatch.config import acts
from jaxbatch.config.schema import EPOCH_FORMS, OPTION_EXAMPLES, parse_options
from jaxbatch.config.sweep_config import _ALIASES, SECTIONS, SweepConfig
from jaxbatch.interrupts import Terminated
from jaxbatch.sweep.rundir import default_out
from jaxbatch.sweep.runner import run


def _eg(flag: str, example: str) -> str:
    return f"e.g. {flag} {example}" if flag else f"e.g. {example}"


def _floats(text: str, flag: str = "") -> tuple[float, ...]:
    values = []
    for v in (v.strip() for v in text.split(",")):
        try:
            values.extend([float(v)] if v else [])
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{_bad(v, text)} is not a number; give comma-separated numbers, "
                f"{_eg(flag, '0.01,0.02')}"
            ) from None
    return tuple(values)


def _ints(text: str, flag: str = "") -> tuple[int, ...]:
    values = []
    for v in (v.strip() for v in text.split(",")):
        try:
            values.extend([int(v)] if v else [])
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{_bad(v, text)} is not a whole number; give comma-separated "
                f"integers, {_eg(flag, '32,64')}"
            ) from None
    return tuple(values)


def _bad(item: str, text: str) -> str:
    """``'abc'``, or ``'abc' (in '0.1,abc')`` when the value is a list."""
    return repr(item) if item == text.strip() else f"{item!r} (in {text!r})"


def _int(text: str, flag: str = "") -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number; give an integer, {_eg(flag, '10')}"
        ) from None


def _text(text: str, flag: str = "") -> str:
    return text


def _names(text: str, flag: str = "") -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _kwarg(text: str, flag: str = "") -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        example = f"{text}=VALUE" if text.isidentifier() else "width=0.5"
        raise argparse.ArgumentTypeError(
            f"{text!r} is not KEY=VALUE; give {_eg(flag, example)} (one KEY=VALUE "
            "per model argument, separated by spaces)"
        )
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a bare word such as relu


def _float(text: str, flag: str = "") -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number; give one number, {_eg(flag, '0.1')}"
        ) from None


def _multipliers(text: str, flag: str = "") -> tuple[tuple[str, float], ...]:
    """``'Conv_0=0.1,bias=2'`` -> ``(("Conv_0", 0.1), ("bias", 2.0))``."""
    pairs = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        pattern, sep, value = item.rpartition("=")
        try:
            pairs.append((pattern, float(value)))
        except ValueError:
            pattern = ""
        if not sep or not pattern:
            raise argparse.ArgumentTypeError(
                f"{_bad(item, text)} is not REGEX=MULTIPLIER{_meant(item, flag)}; "
                f"give comma-separated pairs, {_eg(flag, 'Conv_0=0.1,bias=2')}"
            )
    return tuple(pairs)


def _options(text: str, flag: str = "") -> tuple[tuple[str, object], ...]:
    """``'eta=3,first=1,metric=val_loss'`` as pairs (:func:`parse_options`)."""
    name = flag.lstrip("-").replace("-", "_")
    example = OPTION_EXAMPLES.get(name, OPTION_EXAMPLES["successive_halving"])
    try:
        return parse_options(text, _eg(flag, example)[5:])
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _meant(item: str, flag: str) -> str:
    """``Dense_0:0.1`` (another separator for ``=``): the pair as meant."""
    for sep in (":", " "):
        pattern, found, value = item.rpartition(sep)
        if found and pattern and "=" not in item:
            with contextlib.suppress(ValueError):
                float(value)
                return f" (did you mean {_eg(flag, f'{pattern}={value}')[5:]}?)"
    return ""


def _for_flag(convert: Callable, flag: str) -> Callable:
    """``convert`` whose errors name ``flag`` in their example."""
    bound = functools.partial(convert, flag=flag)
    bound.__name__ = convert.__name__  # argparse names a type by it
    return bound


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with one-line errors: ``prog: error: message (see
    --help)``, no usage; an unknown flag gets the nearest one suggested, a
    bad choice the choices. Flags are not abbreviated (``--batch-size 32``
    is refused, not taken as ``--batch-sizes``): a prefix's meaning would
    change with every flag added."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        args, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(self.unknown(extras))
        return args

    def unknown(self, extras: Sequence[str]) -> str:
        """The message for arguments no flag took: the first unknown flag
        with the nearest known one, or a stray value."""
        flags = [
            a.split("=", 1)[0]
            for a in extras
            if a.startswith("-") and not re.match(r"-\.?\d", a)
        ]
        if not flags:
            return (
                f"unexpected argument {extras[0]!r}: every flag takes one value; "
                "give a list comma-separated, e.g. --lrs 0.01,0.02"
            )
        options = [o for o in self._option_string_actions if o.startswith("--")]
        near = difflib.get_close_matches(flags[0], options, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else ""
        more = f" (also unknown: {', '.join(flags[1:])})" if flags[1:] else ""
        return f"{flags[0]} is not a flag{hint}{more}"

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            near = difflib.get_close_matches(str(value), choices, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            what = action.dest.replace("_", " ")
            raise argparse.ArgumentError(
                action,
                f"{value!r} is not a {what}; {hint}choose from {', '.join(choices)}",
            )

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_plain(message)} (see --help)\n")


_ARGPARSE = [  # argparse's own messages, in the words of the others
    (r"argument (\S+): expected one argument", r"\1 needs a value"),
    (r"argument (\S+): expected at least one argument", r"\1 needs a value"),
    (r"argument (\S+): invalid (\w+) value: (.*)", r"\1: \3 is not a valid \2"),
    (r"argument (\S+): ", r"\1: "),
    (r"ambiguous option: (\S+) could match (.*)", r"\1 is ambiguous: it could be \2"),
]


def _plain(message: str) -> str:
    for pattern, replacement in _ARGPARSE:
        message, n = re.subn(f"^{pattern}", replacement, message, flags=re.S)
        if n:
            break
    return " ".join(message.split())


# annotation -> (parser, metavar)
_TYPES = {
    "tuple[int, ...]": (_ints, "N,..."),
    "tuple[float, ...]": (_floats, "X,..."),
    "tuple[str, ...]": (_names, "NAME,..."),
    "int": (_int, "N"),
    "float": (_float, "X"),
    "str": (_text, "TEXT"),
}
_SECTION_TITLES = {
    "data": "data",
    "network": "model",
    "members": "members (a grid, a random search, or a file of recipes)",
    "recipe": "recipe defaults (a member may set its own)",
    "optim": "optimizer",
    "control": "per-member control rules",
    "evaluation": "training length and evaluation",
    "population": "population control (successive halving, Hyperband, PBT, compaction)",
    "execution": "execution",
}


def config_flags() -> dict[str, tuple[str, str, dict]]:
    """``--flag -> (field, section, argparse keywords)`` for every config field.

    Generated from the field declarations in ``jaxbatch.config``: type, help
    and flag name live there only.
    """
    flags = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            meta = f.metadata
            if meta.get("parse") == "none":
                continue
            flag = meta.get("flag") or "--" + f.name.replace("_", "-")
            kw = {"help": meta["help"], "default": None}
            kind = str(f.type).replace(" | None", "")
            if meta.get("parse") == "kwargs":
                kw.update(type=_for_flag(_kwarg, flag), nargs="+", metavar="KEY=VALUE")
            elif meta.get("parse") == "multipliers":
                kw.update(type=_for_flag(_multipliers, flag), metavar="REGEX=MULT,...")
            elif meta.get("parse") == "options":
                kw.update(type=_for_flag(_options, flag), metavar="KEY=VALUE,...")
            elif kind == "bool":
                kw.update(action=argparse.BooleanOptionalAction)
            else:
                convert, metavar = _TYPES[kind]
                kw.update(type=_for_flag(convert, flag), metavar=metavar)
            flags[flag] = (f.name, section, kw)
    return flags


def build_parser(
    description: str,
    presets: Mapping[str, Mapping],
    experiment: str = "",
    hidden: Collection[str] = (),
) -> argparse.ArgumentParser:
    """The experiment's parser; the config fields in ``hidden`` (flags that
    cannot act in it, :func:`hidden_fields`) are left out of ``--help`` and
    refused with the reason when given."""
    parser = ArgumentParser(
        prog=prog(experiment) if experiment else None,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--preset",
        choices=sorted(presets),
        default="quick",
        help="starting configuration; other flags override it (default: quick)",
    )
    run.add_argument(
        "--seed", type=_for_flag(_int, "--seed"), default=None,
        help="seed of the data subset/split and of every member (same as --seeds N "
        "--data-seed N)",
    )  # fmt: skip
    run.add_argument(
        "--out",
        default=None,
        help="results directory (default: runs/<experiment>/<time>)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last complete epoch",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--no-plots", action="store_true", help="skip the figures and report.html"
    )
    run.add_argument(
        "--dry-run", action="store_true",
        help="print the sweep's cost (FLOPs from XLA's cost analysis of the "
        "step, times steps and members; the time on an H100 and a TPU v2-8) "
        "and stop before training",
    )  # fmt: skip
    run.add_argument(
        "--tensorboard", action="store_true",
        help="also write TensorBoard scalars into OUT/tensorboard as it trains "
        "(needs tensorboardX: pip install 'jaxbatch[tensorboard]')",
    )  # fmt: skip
    run.add_argument(
        "--distributed", action="store_true",
        help="multi-host run: call jax.distributed.initialize() first (start the "
        "same command on every host; see the README)",
    )  # fmt: skip
    groups = {
        name: parser.add_argument_group(title)
        for name, title in _SECTION_TITLES.items()
    }
    for flag, (name, section, kw) in config_flags().items():
        if name in hidden:
            kw = {**kw, "help": argparse.SUPPRESS}
        groups[section].add_argument(flag, dest=name, **kw)
    return parser


def config_from_args(
    args: argparse.Namespace, experiment: str, presets: Mapping[str, Mapping]
) -> SweepConfig:
    """The preset's values, overridden by every flag that was given; a given
    flag that changes no member's training is refused (:func:`refuse_inert`)."""
    config, read = build_config(args, experiment, presets)
    refuse_inert(args, experiment, [(config, read, ())], own_members=_own(presets))
    return config


def _own(presets: Mapping[str, Mapping]) -> bool:
    """Whether the experiment builds its own members (a preset's recipes)."""
    return any("recipes" in p for p in presets.values())


# Member-list flags an experiment that builds its own members refuses (a
# --members file of arms in its form, e.g. a smaller grid, still replaces them).
_LIST_FLAGS = (
    "search", "lr_scaling", "base_batch_size",
    "lr_range", "weight_decay_range", "momentum_range", "search_seed",
)  # fmt: skip


def given_fields(args: argparse.Namespace) -> dict[str, object]:
    """``{config field: value}`` of every config flag on the command line."""
    out = {
        name: getattr(args, name)
        for name, _, _ in config_flags().values()
        if getattr(args, name) is not None
    }
    if getattr(args, "seed", None) is not None:
        out.update(seeds=(args.seed,), data_seed=args.seed)
    return out


def build_config(
    args: argparse.Namespace, experiment: str, presets: Mapping[str, Mapping]
) -> tuple[SweepConfig, set[str]]:
    """``(config, fields a member builder read)``: the preset's values
    overridden by the flags. A preset's ``recipes`` may be a function of the
    values (``fn(values) -> members``, e.g. LRs scaled to ``batch_sizes``);
    explicit members are crossed with every grid list the preset or a flag
    sets, for the fields they leave unset (see :class:`SweepConfig`)."""
    preset = {_ALIASES.get(k, k): v for k, v in presets[args.preset].items()}
    given = given_fields(args)
    values = {**preset, **given}
    for pair in EPOCH_FORMS:  # a flag of one unit replaces the preset's other
        for flag_form, other in (pair, pair[::-1]):
            if flag_form in given and other not in given:
                values.pop(other, None)
    if args.model is not None and args.model != preset.get("model"):
        if args.model_kwargs is None:
            values.pop("model_kwargs", None)
        values.pop("models", None)
    models = preset.get("models", ())
    if args.models is not None and tuple(args.models) != tuple(models):
        if args.model_kwargs is None:
            values.pop("model_kwargs", None)
    if args.model_kwargs is not None:
        values["model_kwargs"] = tuple(sorted(args.model_kwargs))
    if args.members_file is not None or args.search not in (None, "grid"):
        values.pop("recipes", None)  # the file or the search replaces them
    read: set[str] = set()
    if callable(values.get("recipes")):
        inputs = acts.Reads(values)
        values["recipes"] = tuple(values["recipes"](inputs))
        read = inputs.read
    return SweepConfig(experiment=experiment, **values), read


def planner(experiment: str, presets: Mapping[str, Mapping]):
    """``plan(args) -> [(config, read, fixed)]`` of a one-sweep experiment."""

    def plan(args, out=""):
        return [(*build_config(args, experiment, presets), ())]

    return plan


def refuse_inert(args, experiment: str, built, *, own_members: bool) -> None:
    """A given flag that no member of any of ``built`` trains with is a
    ``ValueError`` naming the flag, why, and where to look (``--help`` lists
    what acts). ``built``: ``[(config, fields its member builder read, fields
    the experiment fixes there)]``, one per sweep of the experiment."""
    given = given_fields(args)
    flag_of = {f: flag for flag, (f, _, _) in config_flags().items()}
    if args.seed is not None:
        flag_of.update(seeds="--seed", data_seed="--seed")
    if own_members:
        for name in _LIST_FLAGS:
            if name in given:
                raise ValueError(
                    f"{flag_of[name]} does not act in {experiment}: it builds its own "
                    "members; for a "
                    "sweep of your own use jaxbatch sweep (see --help for the flags "
                    "that act here)"
                )
    reasons = None
    for config, read, fixed in built:
        here = acts.inert(config, given, read)
        here.update({f: f"each of its sweeps sets its own {f}" for f in fixed
                     if f in given})  # fmt: skip
        reasons = here if reasons is None else {
            k: v for k, v in reasons.items() if k in here
        }  # fmt: skip
    if reasons:
        name, why = next(iter(reasons.items()))
        raise ValueError(
            f"{flag_of[name]} changes nothing in {experiment}: {why} (see --help "
            "for the flags that act here)"
        )


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--seeds -1,-2`` as ``--seeds=-1,-2``: argparse takes a value that
    starts with ``-`` for a flag; attached, it reaches the config's checks,
    which name the flag and the value."""
    out = []
    for arg in argv:
        negative = (
            len(arg) > 1 and arg[0] == "-" and (arg[1].isdigit() or arg[1] == ".")
        )
        if negative and out and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


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


def run_sweep(
    experiment: str,
    description: str,
    presets: Mapping[str, Mapping],
    argv: Sequence[str] | None = None,
    then: Callable | None = None,
):
    """The command line of a one-sweep experiment: parse the flags, run the
    sweep (its standard figures, not the report), print the members and arms
    tables, then ``then(out, flags)`` (the experiment's figures and report),
    all under :func:`command`'s handling of errors and signals. Returns
    ``(results directory, parsed flags)``."""
    plan = planner(experiment, presets)
    parser, given, args, out = parse(description, presets, experiment, argv, plan)
    with command(parser, experiment, given, args, out):
        config = config_from_args(args, experiment, presets)
        print(f"results -> {out}", flush=True)
        out = run(
            config,
            out,
            resume=args.resume,
            progress=not args.no_progress,
            plots=not args.no_plots,
            tensorboard=args.tensorboard,
            dry_run=args.dry_run,
            report=False,  # the experiment's finish writes it, after its figures
        )
        if not args.dry_run:
            print_summary(out)
            if then is not None:
                then(out, args)
    return out, args


def hidden_fields(
    presets: Mapping[str, Mapping], experiment: str, plan, own_members: bool
) -> set[str]:
    """Config fields no flag can make act in the experiment, whatever the
    other flags: grid lists and recipe defaults that every member of every
    preset sets itself, settings each of its sweeps fixes, and (where it
    builds its own members) the flags that would replace them. ``plan(args)``
    -> ``[(config, read, fixed)]``, the sweeps of the parsed flags."""
    fields = [f for f, _, _ in config_flags().values()]
    out = set(_LIST_FLAGS) if own_members else set()
    common = None
    for name in presets:
        args = build_parser("", presets, experiment).parse_args(["--preset", name])
        for config, read, fixed in plan(args):
            why = acts.inert(config, fields, read)
            here = {f for f, w in why.items() if w.startswith("every member sets")}
            here |= set(fixed)
            common = here if common is None else common & here
    return out | (common or set())


def parse(
    description: str,
    presets: Mapping,
    experiment: str,
    argv,
    plan=None,
    own_members: bool | None = None,
):
    """``(parser, given flags, args, out)`` of an experiment's command line
    (``jax.distributed`` started when ``--distributed``). With ``plan`` (see
    :func:`hidden_fields`), ``--help`` lists only the flags that can act."""
    given = list(sys.argv[1:] if argv is None else argv)
    hidden = ()
    if plan is not None and ("-h" in given or "--help" in given):
        own = _own(presets) if own_members is None else own_members
        hidden = hidden_fields(presets, experiment, plan, own)
    parser = build_parser(description, presets, experiment, hidden)
    args = parser.parse_args(_attach_negative_values(given))
    if args.distributed:
        jax.distributed.initialize()
    return parser, given, args, args.out or default_out(experiment)


# A member's recipe field comes from the grid flag of its list.
_GRID_FLAGS = {
    "batch_size": "--batch-sizes", "lr": "--lrs", "seed": "--seeds",
    "weight_decay": "--weight-decays", "momentum": "--momentums",
    "schedule": "--schedule", "weight_decay_mode": "--weight-decay-mode",
}  # fmt: skip


def with_flags(message: str) -> str:
    """A library message names config fields (``lrs needs at least one
    value``); on the command line it names the flags as well (``lrs (--lrs)
    needs ...``). Only a field named as the subject of a check is marked: at
    the start of the message or of a member's clause (after ``: ``)."""
    flags = {f: flag for flag, (f, _, _) in config_flags().items()}
    flags.update(_GRID_FLAGS)

    def mark(match):
        lead, name = match.group(1), match.group(2)
        flag = flags.get(name)
        if flag is None or f"({flag})" in message:
            return match.group(0)
        return f"{lead}{name} ({flag})"

    return re.sub(r"(^|: )([a-z][a-z0-9_]*)(?= )", mark, message)


COMMAND_FILE = "command.json"


def write_command(out: str, experiment: str, argv: Sequence[str]) -> bool:
    """``<out>/command.json``, what started the run, for ``jaxbatch resume``
    (kept when it exists: a second command on the directory cannot change
    it; skipped where ``out`` is a file or a non-empty directory). Returns
    whether it made the directory."""
    path = os.path.join(out, COMMAND_FILE)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        return False  # written at the start, or not a directory this run may use
    argv = [a for a in argv if a != "--resume"]
    if "--out" not in argv and not any(a.startswith("--out=") for a in argv):
        argv += ["--out", out]
    created = not os.path.exists(out)
    with contextlib.suppress(OSError):  # the run names an unusable --out itself
        os.makedirs(out, exist_ok=True)
        results.write_json(path, {"experiment": experiment, "argv": argv})
    return created


def _unwrite_command(out: str) -> None:
    """Undo :func:`write_command` for a command refused before its run
    started: a refusal leaves nothing behind."""
    with contextlib.suppress(OSError):
        if os.listdir(out) == [COMMAND_FILE]:
            os.remove(os.path.join(out, COMMAND_FILE))
            os.rmdir(out)


def prog(experiment: str) -> str:
    """The command that runs ``experiment``."""
    return "jaxbatch sweep" if experiment == "sweep" else (
        f"python -m experiments.{experiment}"
    )  # fmt: skip


@contextlib.contextmanager
def command(parser, experiment: str, given: list[str], args, out: str):
    """The body of an experiment's command: bad input, missing data or a full
    disk end in one line and exit 2; Ctrl-C and SIGTERM print the exact
    ``--resume`` command and exit 130 / 143."""
    created = False
    try:
        with interrupts.deferred():
            if args.resume and not args.out:
                raise ValueError("--resume needs --out DIR, the run to continue")
            if not args.dry_run:
                created = write_command(out, experiment, given)
            yield
    except (ValueError, OSError) as err:
        if created:
            _unwrite_command(out)
        message = " ".join(str(err).split()) if str(err) else type(err).__name__
        parser.exit(2, f"{parser.prog}: error: {with_flags(message)}\n")
    except KeyboardInterrupt as err:
        if not args.out:
            given = [*given, "--out", out]
        cmd = " ".join(shlex.quote(a) for a in given if a != "--resume")
        what = "terminated" if isinstance(err, Terminated) else "interrupted"
        sys.stderr.write(
            f"\n{what}. Every finished epoch is saved; continue with:\n"
            f"  {prog(experiment)} {cmd} --resume\n"
        )
        raise SystemExit(143 if isinstance(err, Terminated) else 130) from None


def print_summary(out: str) -> None:
    """The members table of a finished run, as the command line prints it,
    then (when arms have several seeds) each arm's mean ± 95% interval."""
    members = results.read_members(out)
    rows = [dict(zip(members, vals)) for vals in zip(*members.values())]
    print(format_table(rows, summary_columns(members)), flush=True)
    arms = stats.arm_rows(members)
    if any(a["seeds"] > 1 for a in arms):
        keys = stats.varying_fields(members)
        shown = []
        for a in arms:
            row = {k: a[k] for k in keys}
            row.update(seeds=a["seeds"], diverged=a["diverged"])
            for col in ("test_acc", "val_acc_at_best_loss", "max_val_acc", "gap_acc"):
                if col in a:
                    row[col] = _mean_pm(a[col], a[f"{col}_ci"])
            shown.append(row)
        print("\narms (mean ± 95% t-interval over seeds):")
        print(format_table(shown, list(shown[0])), flush=True)


def _mean_pm(mean: float, half: float) -> str:
    if mean != mean:  # NaN
        return ""
    return f"{mean:.4f}" + ("" if half != half else f" ± {half:.4f}")
