"""``jaxbatch compare DIR DIR ...``: finished runs side by side.

Every arm (members equal but for the seed) of every run in one table, the
run it came from first, then the fields that vary across all of them, the
seeds, and test accuracy (or validation accuracy without a test split) as
mean ± 95% t-interval; and one figure, ``compare.png``, of that accuracy per
arm, one colour per run, the seeds as dots.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import numpy as np

from jaxbatch import cli, results, stats
from jaxbatch.columns import RECIPE_COLUMNS

# What may tell arms apart: the model, the recipe, and common tags.
_FIELDS = ("model", *RECIPE_COLUMNS)
# The result shown, the first a run has.
METRICS = ("test_acc", "final_val_acc")


def arms(run_dirs: Sequence[str]) -> list[dict]:
    """``[{"run", <varying fields>, "seeds", metric, metric_ci, "values"}]``:
    every arm of every run, in run order."""
    tables = [(d, results.read_members(d)) for d in run_dirs]
    metric = next(
        (
            m
            for m in METRICS
            if all(m in t and np.isfinite(t[m]).any() for _, t in tables)
        ),
        None,
    )
    if metric is None:
        raise ValueError(
            "the runs share no finished result (test_acc or final_val_acc)"
        )
    rows = []
    for d, table in tables:
        for row in stats.arm_rows(table):
            sel = np.ones(len(table["member"]), bool)
            for k in stats.varying_fields(table):
                sel &= table[k].astype(str) == str(row[k])
            first = int(np.flatnonzero(sel)[0])
            names = (*_FIELDS, *stats.tag_columns(table))
            fields = {k: _value(table[k][first]) for k in names if k in table}
            run = os.path.basename(os.path.normpath(d))
            rows.append((run, fields, row, sel, table))
    # the fields that differ between any two arms, of any runs
    names = dict.fromkeys(k for _, f, _, _, _ in rows for k in f)
    keys = [k for k in names
            if len({str(f.get(k, "")) for _, f, _, _, _ in rows}) > 1]  # fmt: skip
    return [
        {"run": run, **{k: fields.get(k, "") for k in keys}, "seeds": row["seeds"],
         metric: row[metric], f"{metric}_ci": row[f"{metric}_ci"],
         "values": np.asarray(table[metric][sel], float)}
        for run, fields, row, sel, table in rows
    ]  # fmt: skip


def _value(v):
    """A table cell as shown: numbers without a trailing .0, NaN empty."""
    if isinstance(v, float | np.floating):
        return "" if v != v else (int(v) if float(v).is_integer() else float(v))
    return str(v)


def figure(rows: Sequence[dict], path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = next(m for m in METRICS if m in rows[0])
    runs = list(dict.fromkeys(r["run"] for r in rows))
    colors = plt.get_cmap("tab10" if len(runs) <= 10 else "viridis")
    keys = [k for k in rows[0] if k not in ("run", "seeds", "values")
            and not k.startswith(metric)]  # fmt: skip
    labels = [", ".join(f"{k} {r[k]}" for k in keys if r[k] != "") or r["run"]
              for r in rows]  # fmt: skip
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.4))
    for i, r in enumerate(rows):
        c = colors(runs.index(r["run"]) / max(1, len(runs) - 1) if len(runs) > 10
                   else runs.index(r["run"]))  # fmt: skip
        y = len(rows) - 1 - i
        vals = r["values"][np.isfinite(r["values"])]
        ax.scatter(vals, np.full(len(vals), y), color=c, s=14, alpha=0.6)
        ax.errorbar(r[metric], y, xerr=r[f"{metric}_ci"], color=c, marker="|",
                    ms=14, capsize=3, lw=1.5)  # fmt: skip
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels[::-1], fontsize=8)
    for run in runs:
        ax.plot([], [], "o", color=colors(runs.index(run)) if len(runs) <= 10 else None,
                label=run)  # fmt: skip
    ax.legend(fontsize=8, loc="best", title="run")
    seen = np.concatenate([r["values"][np.isfinite(r["values"])] for r in rows])
    if len(seen):  # the seeds in view; a wide interval runs off the edge
        pad = max(0.02, 0.1 * float(np.ptp(seen)))
        ax.set_xlim(max(0.0, seen.min() - pad), min(1.0, seen.max() + pad))
    ax.set_xlabel(f"{metric.replace('_', ' ')} (dots: seeds; tick: mean ± 95%)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.ArgumentParser(
        prog="jaxbatch compare",
        description="Two or more finished runs side by side: every arm of each in "
        "one table (printed, and written to OUT/compare.csv) and one figure "
        "(OUT/compare.png).",
    )
    parser.add_argument("run_dirs", nargs="+", help="finished results directories")
    parser.add_argument(
        "--out", default="runs/compare", help="where the table and figure go"
    )
    args = parser.parse_args(argv)
    if len(args.run_dirs) < 2:
        parser.error("give two or more run directories")
    try:
        rows = arms(args.run_dirs)
        os.makedirs(args.out, exist_ok=True)
        columns = [k for k in rows[0] if k != "values"]
        results.write_csv(os.path.join(args.out, "compare.csv"), columns, rows)
        shown = [{k: r[k] for k in columns} for r in rows]
        print(cli.format_table(shown, columns))
        print(f"figure: {figure(rows, os.path.join(args.out, 'compare.png'))}")
    except (ValueError, OSError) as err:
        print(f"jaxbatch compare: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0
