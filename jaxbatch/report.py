"""``report.html``: one self-contained page per run.

The claim the run tests, the verdict in numbers, the headline figures (PNG,
embedded), the arms table (mean ± 95% interval over seeds), the members
table (every seed; click a header to sort) and the configuration. No file
or network access is needed to read it: images are base64, the sorting
script is inline. Written at the end of every run;
``python -m jaxbatch.report RUN_DIR`` rebuilds it.

An experiment's run leaves ``verdict.json`` (its claim, headline figures and
verdict sentences; ``jaxbatch.experiment``); without one the report states
the sweep and the standard verdict (:func:`standard_verdict`). The page is
built from the files alone.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from jaxbatch import results, stats
from jaxbatch.columns import measured_columns, summary_columns

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;
color:#1d1d1f;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;
border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:15px;margin:20px 0 6px}
.claim{font-size:16px;color:#333;margin:6px 0 14px}
.verdict{background:#eef6ee;border-left:4px solid #3a8a3a;padding:10px 16px;
margin:12px 0}
.verdict li{margin:3px 0}.meta{color:#555;font-size:13px}
figure{margin:14px 0 22px;background:#fff;border:1px solid #e3e3e3;padding:8px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:12px;color:#555;margin-top:4px}
table{border-collapse:collapse;font-size:12px;background:#fff;margin:6px 0 14px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f0f0f0;cursor:pointer;user-select:none;position:sticky;top:0}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
td.text,th.text{text-align:left}tr.diverged td{color:#b00}
.scroll{max-height:480px;overflow:auto;display:inline-block;max-width:100%}
details{margin:8px 0}summary{cursor:pointer;color:#245}
pre{background:#fff;border:1px solid #e3e3e3;padding:10px;font-size:12px;overflow:auto}
"""
_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function(t){
 t.querySelectorAll("th").forEach(function(th,i){th.addEventListener("click",function(){
  var rows=Array.from(t.tBodies[0].rows),asc=!th.classList.contains("sorted-asc");
  t.querySelectorAll("th").forEach(function(h){h.classList.remove("sorted-asc","sorted-desc")});
  th.classList.add(asc?"sorted-asc":"sorted-desc");
  rows.sort(function(a,b){var x=a.cells[i].dataset.v,y=b.cells[i].dataset.v,
   p=parseFloat(x),q=parseFloat(y),c=(isNaN(p)||isNaN(q))?x.localeCompare(y):p-q;
   return asc?c:-c});
  rows.forEach(function(r){t.tBodies[0].appendChild(r)});});});});
"""


def run_dirs(run_dir: str) -> list[str]:
    """The sweeps of a run: ``run_dir`` itself, or (an experiment of several
    sweeps) its subdirectories that hold a ``members.csv``, in name order.

    A sweep's directory (one with a ``history.csv``) without its
    ``members.csv`` is a :class:`results.ResultsError`."""
    _sweep_complete(run_dir)
    if os.path.isfile(os.path.join(run_dir, "members.csv")):
        return [run_dir]
    if not os.path.isdir(run_dir):
        raise ValueError(f"{run_dir} is not a results directory")
    subdirs = sorted(
        os.path.join(run_dir, d)
        for d in os.listdir(run_dir)
        if os.path.isdir(os.path.join(run_dir, d))
    )
    for d in subdirs:
        _sweep_complete(d)
    return [d for d in subdirs if os.path.isfile(os.path.join(d, "members.csv"))]


def _sweep_complete(d: str) -> None:
    """Raise if ``d`` holds a sweep's ``history.csv`` but no ``members.csv``."""
    members = os.path.join(d, "members.csv")
    if os.path.isfile(os.path.join(d, "history.csv")) and not os.path.isfile(members):
        raise results.ResultsError(
            f"{members}: missing, though history.csv is there (the sweep did not "
            f"finish?); {results.SWEEP_FIX}"
        )


# The columns of members.csv the report reads (a tuple: one of them will do).
REQUIRED_COLUMNS = ("member", "diverged", ("test_acc", "val_acc_at_best_loss"))


def read_members(run_dir: str) -> dict[str, np.ndarray]:
    """``run_dir``'s ``members.csv``, with the columns the report needs, else
    a :class:`results.ResultsError` (so is a missing, empty or cut-short
    file)."""
    return results.read_members(run_dir, require=REQUIRED_COLUMNS)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def _pm(mean: float, half: float) -> str:
    if np.isnan(half):
        return _pct(mean)
    return f"{_pct(mean)} ± {_pct(half)}"


def _metric(members: Mapping) -> tuple[str, str]:
    col = stats.accuracy_column(members)
    return col, {
        "test_acc": "test accuracy",
        "val_acc_at_best_loss": "validation accuracy at the lowest validation loss",
    }[col]


def contrast(members: Mapping, field: str) -> list[str]:
    """Sentences comparing the largest and the smallest value of ``field``
    within each setting of the other fields that vary: the difference of
    their mean accuracy over seeds with Welch's 95% interval, in points."""
    col, name = _metric(members)
    gone = stats.diverged(members)
    values = sorted({float(v) for v in members[field]})
    if len(values) < 2:
        return []
    lo, hi = values[0], values[-1]
    rest = [f for f in stats.varying_fields(members) if f != field]
    lines, diffs = [], []
    title = field.replace("_", " ")
    for setting, rows in stats.arms(members, fields=rest):
        ok = rows[~gone[rows]]
        a = members[col][ok][members[field][ok].astype(float) == hi]
        b = members[col][ok][members[field][ok].astype(float) == lo]
        if not len(a) or not len(b):
            continue
        d, half = stats.difference(a, b)
        where = f" ({stats.label(setting)})" if setting else ""
        spread = "" if np.isnan(half) else f" ± {_pct(half)}"
        title = field.replace("_", " ")
        word = "above" if d >= 0 else "below"
        lines.append(
            f"{title} {hi:g} ended {_pct(abs(d))}{spread} points {word} {title} "
            f"{lo:g} in {name}{where}: {_pct(a.mean())} vs {_pct(b.mean())} "
            f"({len(a)} and {len(b)} seeds)."
        )
        diffs.append(d)
    if len(lines) > 4:  # many settings: one sentence for all of them
        above = sum(d > 0 for d in diffs)
        lines = [
            f"{title} {hi:g} ended above {title} {lo:g} in {name} in {above} of "
            f"{len(diffs)} settings of {', '.join(r.replace('_', ' ') for r in rest)}"
            f", by {_pct(min(diffs))} to {_pct(max(diffs))} points."
        ]
    return lines


def versus(members: Mapping, key: str, baseline: str) -> list[str]:
    """One sentence per arm of tag ``key`` against the ``baseline`` arm: the
    difference of mean accuracy (Welch's 95% interval, points) and of the
    parameter updates taken."""
    col, name = _metric(members)
    gone = stats.diverged(members)
    ok = ~gone
    tag = members[key].astype(str)
    base = ok & (tag == baseline)
    if not base.any():
        return []
    b, b_steps = members[col][base], float(np.mean(members["steps"][base]))
    lines = []
    for arm in dict.fromkeys(tag):
        sel = ok & (tag == arm)
        if arm == baseline or not sel.any():
            continue
        a = members[col][sel]
        d, half = stats.difference(a, b)
        steps = float(np.mean(members["steps"][sel]))
        spread = "" if np.isnan(half) else f" ± {_pct(half)}"
        updates = (
            f" in {steps:.0f} vs {b_steps:.0f} updates ({steps / b_steps:.0%})"
            if abs(steps - b_steps) > 0.01 * b_steps
            else ""
        )
        lines.append(
            f"{arm}: {_pct(a.mean())}% {name} vs {_pct(b.mean())}% for {baseline} "
            f"({'+' if d >= 0 else '−'}{_pct(abs(d))}{spread} points, {len(a)} and "
            f"{len(b)} seeds){updates}."
        )
    return lines


def generic_verdict(members: Mapping, field: str | None = None) -> list[str]:
    """The contrast along ``field`` (default: the batch size if it varies,
    else the first numeric field that varies), the best and the worst arm
    (mean ± 95% interval over seeds) and the diverged members."""
    col, name = _metric(members)
    rows = stats.arm_rows(members)
    lines = []
    scored = [r for r in rows if np.isfinite(r.get(col, np.nan))]
    keys = stats.varying_fields(members)
    label = lambda r: stats.label({k: r[k] for k in keys})  # noqa: E731
    if len(scored) >= 2:
        best = max(scored, key=lambda r: r[col])
        worst = min(scored, key=lambda r: r[col])
        lines.append(
            f"Best of {len(scored)} arms: {label(best)} at "
            f"{_pm(best[col], best[col + '_ci'])}% {name} ({best['seeds']} seeds); "
            f"worst: {label(worst)} at {_pm(worst[col], worst[col + '_ci'])}%."
        )
    elif scored:
        r = scored[0]
        lines.append(
            f"{name.capitalize()}: {_pm(r[col], r[col + '_ci'])}% "
            f"(mean of {r['seeds']} seeds ± 95% t-interval)."
        )
    numeric = [k for k in keys if members[k].dtype.kind == "f"]
    field = field or ("batch_size" if "batch_size" in numeric else None)
    field = field or (numeric[0] if numeric else None)
    if field:  # the contrast first: it is the comparison the sweep was made for
        lines = contrast(members, field) + lines
    n_gone = int(stats.diverged(members).sum())
    if n_gone:
        lines.append(f"{n_gone} of {len(members['member'])} members diverged.")
    return lines


def sweeps_verdict(sweeps: Mapping[str, Mapping]) -> list[str]:
    """The generic verdict of an experiment of several sweeps on one task
    (``{sweep directory: members}``): the arms of every sweep ranked together
    (labelled ``sweep: arm``)."""
    ranked = []
    for d, members in sweeps.items():
        col, name = _metric(members)
        keys = stats.varying_fields(members)
        for r in stats.arm_rows(members):
            if np.isfinite(r.get(col, np.nan)):
                label = stats.label({k: r[k] for k in keys})
                where = os.path.basename(d) + ("" if not keys else f" ({label})")
                ranked.append((r[col], r[col + "_ci"], r["seeds"], where, name))
    if not ranked:
        return []
    ranked.sort(key=lambda t: -t[0])
    lines = [
        f"{where}: {_pm(mean, half)}% ({n} seeds)" for mean, half, n, where, _ in ranked
    ]
    name = ranked[0][4]
    head = f"Best {name}: {lines[0]}" + (
        f"; worst: {lines[-1]}." if len(lines) > 1 else "."
    )
    return [head, f"All, by {name} (mean ± 95% t-interval): " + "; ".join(lines) + "."]


def standard_verdict(run_dir: str, sweeps: Sequence[str] | None = None) -> list[str]:
    """The verdict of a run without one of its own: :func:`generic_verdict`
    of its sweep, or of several sweeps (``sweeps``: the names of those
    ranked together; default all) :func:`sweeps_verdict`; then what the
    stopped members saved (:func:`compute_line`), when they saved anything."""
    dirs = run_dirs(run_dir)
    tables = {d: read_members(d) for d in dirs}
    if len(dirs) == 1:
        lines = generic_verdict(tables[dirs[0]])
    else:
        lines = sweeps_verdict({
            d: m for d, m in tables.items()
            if sweeps is None or os.path.basename(d) in sweeps
        })  # fmt: skip
    saved = compute_line(dirs)
    return lines + ([saved] if saved else [])


def compute_of(dirs: Sequence[str]) -> dict:
    """The member-steps the sweeps in ``dirs`` computed and would have
    computed training every member to the end (``config.json``'s
    ``cost.compute``; a sweep without one counts as every member's)."""
    total = {"computed_steps": 0, "every_member_steps": 0, "member_steps": 0}
    for d in dirs:
        c = results.read_json(os.path.join(d, "config.json")).get("cost", {})
        c = c.get("compute") or {}
        for k in total:
            total[k] += int(c.get(k, 0))
    every = total["every_member_steps"]
    total["saved_share"] = 1 - total["computed_steps"] / every if every else 0.0
    return total


def compute_line(dirs: Sequence[str]) -> str:
    """``"Compute: ..."`` when members that stopped for good (successive
    halving, early stopping, divergence) saved steps; else empty."""
    c = compute_of(dirs)
    if c["saved_share"] <= 0:
        return ""
    return (
        f"Compute: {c['computed_steps']:,} member-steps computed "
        f"({c['member_steps']:,} trained by real members), {c['saved_share']:.0%} "
        f"fewer than the {c['every_member_steps']:,} of training every member "
        "to the end: the members that stopped left the program."
    )


def _img(path: str) -> str:
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    name = html.escape(os.path.basename(path))
    return (
        f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
        f"<figcaption>{name}</figcaption></figure>"
    )


def _figures(run_dir: str, headline: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(headline paths, other paths)`` of ``<run_dir>/plots``."""
    plot_dir = os.path.join(run_dir, "plots")
    names = sorted(os.listdir(plot_dir)) if os.path.isdir(plot_dir) else []
    names = [n for n in names if n.endswith(".png")]
    first = [n for n in headline if n in names]
    return (
        [os.path.join(plot_dir, n) for n in first],
        [os.path.join(plot_dir, n) for n in names if n not in first],
    )


def _cell(value) -> tuple[str, str]:
    """(display text, sort key) of a table cell."""
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return "", ""
        return f"{value:.4g}", repr(float(value))
    return str(value), str(value)


def table(rows: Sequence[Mapping], columns: Sequence[str], cls: str = "") -> str:
    """A sortable HTML table of ``rows`` (dicts)."""
    text_cols = {c for c in columns if any(isinstance(r.get(c), str) for r in rows)}
    head = "".join(
        f'<th class="{"text" if c in text_cols else ""}">{html.escape(c)}</th>'
        for c in columns
    )
    body = []
    for r in rows:
        gone = str(r.get("diverged")) == "True"
        cells = []
        for c in columns:
            shown, key = _cell(r.get(c, ""))
            klass = ' class="text"' if c in text_cols else ""
            cells.append(
                f'<td{klass} data-v="{html.escape(key)}">{html.escape(shown)}</td>'
            )
        body.append(f"<tr{' class=diverged' if gone else ''}>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table class="sortable {cls}"><thead><tr>{head}'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _members_rows(members: Mapping) -> list[dict]:
    return [dict(zip(members, vals)) for vals in zip(*members.values())]


def _arms_html(members: Mapping) -> str:
    rows = stats.arm_rows(members)
    if all(r["seeds"] == 1 for r in rows):
        return ""
    keys = stats.varying_fields(members)
    measured = measured_columns(members)
    shown = []
    for r in rows:
        row = {k: r[k] for k in keys}
        row["seeds"], row["diverged"] = r["seeds"], r["diverged"]
        cols = ("test_acc", "val_acc_at_best_loss", "max_val_acc", "gap_acc")
        for col in (*cols, "gap_loss", *measured):
            if col in r:
                row[col] = r[col]
                row[f"{col} ±95%"] = r[f"{col}_ci"]
        shown.append(row)
    columns = list(dict.fromkeys(k for r in shown for k in r))
    return (
        "<h3>Arms (members equal but for the seed): mean and 95% t-interval</h3>"
        + table(shown, columns)
    )


def _meta_html(meta: Mapping, members: Mapping) -> str:
    env = meta.get("environment", {})
    d = meta.get("data", {})
    wall = {}
    for g, w in zip(members.get("group", []), members.get("wall_s", [])):
        wall[g] = w
    total = float(np.nansum(list(wall.values()))) if wall else float("nan")
    parts = [
        f"data: {d.get('name', '?')} ({d.get('n_train', '?')} train / "
        f"{d.get('n_val', '?')} validation / {d.get('n_test', '?')} test images)",
        f"{len(members['member'])} members in {len(wall)} compiled group(s)",
        f"training time {total:.0f} s" if np.isfinite(total) else "",
        _compute_text(meta),
        f"{env.get('backend', '?')} ({env.get('device_kind', '?')} x "
        f"{env.get('device_count', '?')}), jax {env.get('jax', '?')}, "
        f"jaxbatch {env.get('jaxbatch', '?')}",
    ]
    return '<p class="meta">' + " · ".join(html.escape(p) for p in parts if p) + "</p>"


def _compute_text(meta: Mapping) -> str:
    c = meta.get("cost", {}).get("compute")
    if not c:
        return ""
    saved = c.get("saved_share", 0.0)
    text = f"{c.get('computed_steps', 0):,} member-steps computed"
    return text + (f" ({saved:.0%} saved by stopped members)" if saved > 0 else "")


def _sweep_section(run_dir: str, members: Mapping, title: str) -> str:
    meta = results.read_json(os.path.join(run_dir, "config.json"))
    out = [f"<h2>{html.escape(title)}</h2>"]
    out.append(_meta_html(meta, members))
    out.append(_arms_html(members))
    ens = os.path.join(run_dir, "ensembles.csv")
    if os.path.exists(ens):  # each arm's seeds averaged into one prediction
        cols = results.read_csv(ens)
        out.append("<h3>Ensembles (each arm's seeds, averaged predictions)</h3>")
        out.append(table(_members_rows(cols), list(cols)))
    columns = [c for c in summary_columns(members) if c in members]
    out.append("<h3>Members (every seed)</h3>")
    out.append(table(_members_rows(members), columns))
    return "\n".join(out)


def _csv_tables(run_dir: str) -> str:
    """The run's own CSV files (e.g. ``timing.csv``) as tables, for runs that
    are not sweeps."""
    out = []
    for file in sorted(os.listdir(run_dir)):
        if file.endswith(".csv"):
            cols = results.read_csv(os.path.join(run_dir, file))
            out.append(f"<h3>{html.escape(file)}</h3>")
            out.append(table(_members_rows(cols), list(cols)))
    return "\n".join(out)


def build(run_dir: str, out_file: str | None = None) -> str:
    """Write ``<run_dir>/report.html`` (or ``out_file``); returns its path."""
    sweeps = run_dirs(run_dir)
    tables = {d: read_members(d) for d in sweeps}
    meta = results.read_json(os.path.join(sweeps[0], "config.json")) if sweeps else {}
    stated = os.path.join(run_dir, "verdict.json")
    stated = results.read_json(stated) if os.path.isfile(stated) else {}
    name = stated.get("experiment") or meta.get("config", {}).get("experiment", "")
    claim, headline = stated.get("claim"), tuple(stated.get("headline", ()))
    verdict = stated.get("verdict")
    if verdict is None and sweeps:
        verdict = standard_verdict(run_dir)
    if claim is None and not sweeps:
        claim = "(no claim stated)"
    if claim is None:
        n = sum(len(m["member"]) for m in tables.values())
        claim = f"A sweep of {n} members: which of them trains best, and by how much."
    first, rest = _figures(run_dir, headline)
    if not first and rest:  # no headline named: the run's first figure leads
        first, rest = rest[:1], rest[1:]
    parts = [
        f"<h1>{html.escape(name or os.path.basename(os.path.abspath(run_dir)))}</h1>",
        f'<p class="claim"><b>Claim tested:</b> {html.escape(claim)}</p>',
    ]
    if verdict:
        items = "".join(f"<li>{html.escape(v)}</li>" for v in verdict)
        parts.append(f'<div class="verdict"><b>Verdict</b><ul>{items}</ul></div>')
    parts += [_img(p) for p in first]
    for d, members in tables.items():
        title = f"sweep: {os.path.basename(d)}" if len(sweeps) > 1 else "Results"
        parts.append(_sweep_section(d, members, title))
    if not sweeps:
        parts.append("<h2>Results</h2>" + _csv_tables(run_dir))
    if rest:
        parts.append("<h2>More figures</h2>")
        parts += [_img(p) for p in rest]
    for d in sweeps if len(sweeps) > 1 else []:
        figs = sum(_figures(d, ()), [])
        if figs:
            stage = html.escape(os.path.basename(d))
            parts.append(
                f"<details><summary>the standard figures of sweep {stage}</summary>"
                + "".join(_img(p) for p in figs)
                + "</details>"
            )
    config = json.dumps(meta.get("config", {}), indent=2, sort_keys=True)
    parts.append(
        ""
        if not meta
        else "<h2>Configuration</h2><details><summary>config.json (the flags of this "
        f"run)</summary><pre>{html.escape(config)}</pre></details>"
    )
    doc = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(name or 'jaxbatch run')} — jaxbatch report</title>"
        f"<style>{_STYLE}</style></head><body><main>{''.join(parts)}</main>"
        f"<script>{_SORT_JS}</script></body></html>\n"
    )
    path = out_file or os.path.join(run_dir, "report.html")
    with results.atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(doc)
    return path


class _Parser(argparse.ArgumentParser):
    """One-line errors: ``prog: error: message (see --help)``, no usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv=None) -> int:
    parser = _Parser(
        prog="python -m jaxbatch.report",
        description="Rebuild a run's self-contained report.html (figures embedded).",
    )
    parser.add_argument("run_dir", help="a results directory (or an experiment's)")
    parser.add_argument("--out", help="write here instead of RUN_DIR/report.html")
    args = parser.parse_args(argv)
    try:
        path = build(args.run_dir, args.out)
    except (ValueError, OSError) as err:  # one line: the file and what is wrong
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"jaxbatch.report: {message}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
