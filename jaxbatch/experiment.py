"""An experiment: one claim from the folklore, tested by sweeps, declared once.

Each module of ``experiments/`` declares ``EXPERIMENT = Experiment(...)``: the
claim, the presets (``quick`` for a 2-core CPU, ``paper`` for the full
size), the figures that answer the claim and the verdict in numbers. Its
command line (:meth:`Experiment.main`), ``python -m experiments`` (the index)
and the suite read the declaration; the run writes what the report needs of
it into ``verdict.json`` (claim, headline figures, verdict sentences), so a
results directory explains itself and ``python -m jaxbatch.report DIR``
rebuilds its page from the files alone.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence

from jaxbatch import cli, plots, report, results, tasks, timing

VERDICT_FILE = "verdict.json"


def derive(base: Mapping, **changes) -> dict:
    """A preset made from another: ``paper = derive(quick, epochs=100)``."""
    return {**base, **changes}


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Experiment:
    """One comparison.

    Attributes:
      name: the module's name (``python -m experiments.<name>``).
      doc: its docstring (the command, the hardware and runtime, what you
        should see); the ``--help`` text, its first line the index's title.
      claim: the sentence from the folklore the run tests.
      presets: ``{"quick": {...}, "paper": {...}}`` of ``SweepConfig`` fields
        (a timing experiment: its own settings), or a function returning them
        for presets that need computation (built at first use, so importing
        the module starts no JAX).
      quick_s: the measured wall time of the quick preset on a 2-core CPU.
      headline: the figures the report leads with.
      figures: ``{file name: fn(out) -> Figure}`` drawn after the run.
      verdict: ``fn(out) -> [sentences with numbers]``; without one, the
        report's standard verdict.
      analyse: ``fn(out)`` run once the sweeps finished, before the figures
        (an analysis that writes a file the figures and verdict read).
      stages: for several sweeps, ``stages(config_for, out, preset)`` yielding
        ``(name, config, dataset)`` (:func:`jaxbatch.tasks.run_stages`).
      verdict_sweeps: the stages the standard verdict ranks together.
      timing: a timing experiment (:func:`jaxbatch.timing.run_timing`).
    """

    name: str
    doc: str
    claim: str
    presets: Mapping[str, Mapping] | Callable[[], Mapping[str, Mapping]]
    quick_s: float | None = None
    headline: tuple[str, ...] = ()
    figures: Mapping[str, Callable] = dataclasses.field(default_factory=dict)
    verdict: Callable[[str], Sequence[str]] | None = None
    analyse: Callable[[str], object] | None = None
    stages: Callable | None = None
    verdict_sweeps: tuple[str, ...] | None = None
    timing: bool = False

    @property
    def title(self) -> str:
        return self.doc.strip().split("\n")[0]

    @functools.cached_property
    def preset_table(self) -> dict[str, dict]:
        table = self.presets() if callable(self.presets) else self.presets
        return {k: dict(v) for k, v in table.items()}

    def preset(self, name: str) -> dict:
        return dict(self.preset_table[name])

    def main(self, argv: Sequence[str] | None = None) -> str:
        """The experiment's command: run it (``--help`` for every flag), then
        :meth:`finish`; returns the results directory."""
        args = (self.name, self.doc, self.preset_table, argv)

        def then(out, flags):  # inside the command's handling of errors and signals
            self.finish(out, figures=not flags.no_plots)

        if self.timing:
            out, _ = timing.run_timing(*args, then=then)
        elif self.stages is not None:
            out, _ = tasks.run_stages(*args, self.stages, then=then)
        else:
            out, _ = cli.run_sweep(*args, then=then)
        return out

    def planner(self):
        """``plan(args) -> [(config, read, fixed)]``: the sweeps of parsed flags."""
        if self.stages is not None:
            return tasks.planner(self.name, self.preset_table, self.stages)
        return cli.planner(self.name, self.preset_table)

    @property
    def own_members(self) -> bool:
        return self.stages is not None or cli._own(self.preset_table)

    def plan(self, argv: Sequence[str] = ()) -> list:
        """The sweeps ``argv`` would run (those that can be built before
        anything trains), after every check of the flags: a flag that does
        not act raises ``ValueError`` as the command would refuse it."""
        parser = cli.build_parser(self.doc, self.preset_table, self.name)
        args = parser.parse_args(cli._attach_negative_values(list(argv)))
        built = self.planner()(args)
        cli.refuse_inert(args, self.name, built, own_members=self.own_members)
        return [config for config, _, _ in built]

    def help_fields(self) -> set[str]:
        """The config fields ``--help`` lists: every flag that can act."""
        hidden = cli.hidden_fields(
            self.preset_table, self.name, self.planner(), self.own_members
        )
        return {f for f, _, _ in cli.config_flags().values()} - hidden

    def finish(self, out: str, *, figures: bool = True) -> str:
        """The last steps of a run: the analysis, the figures (into
        ``<out>/plots``), ``verdict.json`` and ``report.html``."""
        if self.analyse is not None:
            self.analyse(out)
        if figures:
            for path in plots.save_figures(out, self.figures):
                print(f"figure: {path}")
        results.write_json(os.path.join(out, VERDICT_FILE), {
            "experiment": self.name,
            "claim": self.claim,
            "headline": list(self.headline),
            "verdict": self.verdict_of(out),
        })  # fmt: skip
        if figures:
            print(f"report: {report.build(out)}")
        print(f"results: {out}")
        return out

    def verdict_of(self, out: str) -> list[str]:
        """The verdict sentences: the experiment's own, or (without one, or
        where it cannot be made, e.g. a stage missing) the standard one."""
        if self.verdict is not None:
            try:
                return list(self.verdict(out))
            except (OSError, ValueError, KeyError):
                pass
        return report.standard_verdict(out, self.verdict_sweeps)
