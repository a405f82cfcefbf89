"""The ``jaxbatch`` command (installed as a console script).

    jaxbatch list                      the experiments, their claims and runtimes
    jaxbatch run EXPERIMENT [FLAGS]    one experiment (python -m experiments.NAME)
    jaxbatch sweep [FLAGS]             a sweep of your own: every sweep flag, no
                                       claim (--claim TEXT states one for the report)
    jaxbatch report DIR                rebuild DIR/report.html
    jaxbatch resume DIR                continue a run with the flags it started with
    jaxbatch compare DIR DIR [...]     finished runs side by side: their arms in one
                                       table and one figure

``jaxbatch COMMAND --help`` explains each. Every run directory holds
``command.json`` (the command and its flags), which ``resume`` reads.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from jaxbatch import results
from jaxbatch.cli import COMMAND_FILE

SWEEP_DOC = """A sweep of your own: every configuration the flags describe, trained
together (one compiled program per batch size and model).

    jaxbatch sweep --model mlp --batch-sizes 32,256 --lrs 0.01,0.1 --seeds 0,1,2

The grid is the product of the lists (--batch-sizes, --lrs, --seeds, ...), or
a random search (--search random:N), or a file of members (--members FILE,
crossed with the lists given beside it). The run writes members.csv (one row
per member: its recipe and results), arms.csv (mean and 95% interval over
seeds), history.csv, the standard figures (chosen from what varies) and
report.html; --claim TEXT puts the sentence you test at the top of the report.
The default preset is a small MLP on the built-in Fashion-MNIST."""

SWEEP_PRESETS = {
    "quick": dict(
        model="mlp",
        model_kwargs=(("hidden", (256,)),),
        batch_sizes=(32, 256),
        lrs=(0.01, 0.1),
        seeds=(0,),
        train_size=10000,
        val_size=2000,
        epochs=5,
        eval_every=100,
    ),
    "paper": dict(
        model="simple_cnn",
        batch_sizes=(32, 256),
        lrs=(0.01, 0.1),
        seeds=(0, 1, 2),
        val_size=6000,
        epochs=30,
        eval_every=200,
    ),  # fmt: skip
}


def _fail(message: str):
    """Bad input: one line on stderr, exit 2."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def _sweep_experiment(claim: str = ""):
    from jaxbatch.experiment import Experiment

    return Experiment(
        name="sweep", doc=SWEEP_DOC, claim=claim, presets=SWEEP_PRESETS, quick_s=None
    )


def _experiment(name: str):
    from experiments.__main__ import NOT_EXPERIMENTS, experiments

    if name == "sweep":
        return _sweep_experiment()
    known = [e.name for e in experiments()]
    if name not in known or name in NOT_EXPERIMENTS:
        import difflib

        near = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {near[0]}? " if near else ""
        _fail(
            f"jaxbatch run: error: no experiment {name!r}; {hint}jaxbatch list "
            "names them all"
        )
    return importlib.import_module(f"experiments.{name}").EXPERIMENT


def _sweep(argv: list[str]) -> int:
    claim = ""
    if "--claim" in argv:
        i = argv.index("--claim")
        if i + 1 >= len(argv):
            _fail("jaxbatch sweep: error: --claim needs a value (see --help)")
        claim = argv[i + 1]
        argv = argv[:i] + argv[i + 2 :]
    exp = _sweep_experiment(claim)
    if "-h" in argv or "--help" in argv:
        print("jaxbatch sweep: --claim TEXT  the sentence the sweep tests (report)\n")
    exp.main(argv)
    return 0


def _resume(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        _fail(
            "jaxbatch resume: error: give one run directory, e.g. jaxbatch resume "
            "runs/sweep/2026-12-07_1200 (its command.json holds the flags)"
        )
    out = argv[0]
    path = os.path.join(out, COMMAND_FILE)
    try:
        command = results.read_json(path)
    except (OSError, ValueError) as err:
        _fail(
            f"jaxbatch resume: error: {path}: {' '.join(str(err).split())}; a run "
            "started before jaxbatch wrote command.json resumes with its original "
            "command and --resume"
        )
    flags = list(command["argv"])
    if "--out" in flags:
        flags[flags.index("--out") + 1] = out
    name = command["experiment"]
    if name == "sweep":
        return _sweep([*flags, "--resume"])
    _experiment(name).main([*flags, "--resume"])
    return 0


def _compare(argv: list[str]) -> int:
    from jaxbatch import compare

    return compare.main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[1].rstrip() if argv else __doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "list":
        from experiments.__main__ import main as list_main

        return list_main(rest)
    if command == "run":
        if not rest or rest[0].startswith("-"):
            _fail(
                "jaxbatch run: error: name an experiment first, e.g. jaxbatch run "
                "lr_scaling --preset quick (jaxbatch list names them)"
            )
        exp = _experiment(rest[0])
        exp.main(rest[1:])
        return 0
    if command == "sweep":
        return _sweep(rest)
    if command == "report":
        from jaxbatch import report

        return report.main(rest)
    if command == "resume":
        return _resume(rest)
    if command == "compare":
        return _compare(rest)
    import difflib

    commands = ["list", "run", "sweep", "report", "resume", "compare"]
    near = difflib.get_close_matches(command, commands, n=1)
    hint = f"; did you mean {near[0]}?" if near else ""
    _fail(
        f"jaxbatch: error: {command!r} is not a command{hint} (commands: "
        f"{', '.join(commands)}; jaxbatch --help)"
    )


if __name__ == "__main__":
    sys.exit(main())
