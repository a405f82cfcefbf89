"""Run every experiment and write an index page that links each report.

Run (2-core CPU, built-in Fashion-MNIST; the sum of the quick runtimes that
``python -m experiments`` lists)::

    python -m experiments.suite --preset quick

Each experiment runs in its own process into ``<out>/<name>/`` (its log in
``<out>/<name>.log``), one after the other. ``<out>/index.html`` lists
every experiment with its claim, the first sentence of its verdict, the
measured wall time and a link to its ``report.html``; ``<out>/suite.json``
holds the same numbers. Run the same command with the same ``--out`` again
to continue an interrupted suite: finished experiments (a ``report.html``)
are kept, a started one resumes from its last complete epoch (its log goes
on below the interrupted run's). Ctrl-C or SIGTERM is passed to the running
experiment, which saves and stops; the suite then prints the command that
continues it and exits 130 / 143. A bad ``--preset`` or experiment name is
refused before anything is created; a failed experiment's last log line is
printed on stderr.
"""

from __future__ import annotations

import argparse
import difflib
import html
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

from experiments.__main__ import catalog, duration, experiments
from jaxbatch import cli


def _verdict(run_dir: str) -> list[str]:
    """The verdict sentences an experiment's run wrote (``verdict.json``)."""
    path = os.path.join(run_dir, "verdict.json")
    return json.load(open(path)).get("verdict", []) if os.path.isfile(path) else []


def index_html(root: str, entries: list[dict]) -> str:
    rows = []
    for e in entries:
        report = os.path.join(e["name"], "report.html")
        ok = os.path.isfile(os.path.join(root, report))
        link = (f'<a href="{html.escape(report)}">{html.escape(e["name"])}</a>'
                if ok else html.escape(e["name"]))  # fmt: skip
        thumb = ""
        for fig in e["headline"][:1]:
            rel = os.path.join(e["name"], "plots", fig)
            if os.path.isfile(os.path.join(root, rel)):
                thumb = f'<img src="{html.escape(rel)}" alt="{html.escape(fig)}">'
        verdict = "".join(
            f"<li>{html.escape(v)}</li>" for v in e.get("verdict", [])[:3]
        )
        status = e.get("status", "not run")
        took = duration(e["wall_s"]) if e.get("wall_s") else ""
        rows.append(
            f"<tr><td class=name>{link}<div class=took>{html.escape(status)} "
            f"{took}</div></td><td><p>{html.escape(e['claim'])}</p><ul>{verdict}"
            f"</ul></td><td>{thumb}</td></tr>"
        )
    total = sum(e.get("wall_s") or 0 for e in entries)
    style = (
        "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;"
        "padding:0 20px;color:#1d1d1f}table{border-collapse:collapse;width:100%}"
        "td{border-top:1px solid #ddd;padding:10px;vertical-align:top}"
        "td.name{white-space:nowrap;font-weight:600}.took{font-weight:400;"
        "color:#666;font-size:12px}img{width:360px;border:1px solid #eee}"
        "ul{margin:4px 0;padding-left:18px;color:#333;font-size:13px}p{margin:0}"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>jaxbatch experiments</title><style>{style}</style></head><body>"
        f"<h1>jaxbatch: every experiment</h1><p>{len(entries)} experiments, "
        f"{duration(total)} of training in all. Click a name for its report.</p>"
        f"<table>{''.join(rows)}</table></body></html>\n"
    )


def write_index(root: str, done: dict) -> str:
    """``<root>/index.html`` of every experiment this suite directory has run
    (``done``: ``suite.json``), also those of an earlier ``--only``."""
    listed = [{**e, **done[e["name"]]} for e in catalog() if e["name"] in done]
    path = os.path.join(root, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(index_html(root, listed))
    return path


def _preset_error(preset: str, chosen: list) -> str | None:
    """Why ``--preset`` cannot run every chosen experiment, or None.

    An experiment whose presets are built at first use (they run JAX, which
    this process must not start: on a GPU it would hold the memory its
    children need) is checked by its own run."""
    tables = {e.name: sorted(e.presets) for e in chosen if not callable(e.presets)}
    lacking = [name for name, table in tables.items() if preset not in table]
    if not lacking:
        return None
    if len(lacking) == len(tables):
        valid = sorted(set.intersection(*(set(t) for t in tables.values())))
        return f"--preset: {preset!r} is not a preset; choose from {', '.join(valid)}"
    return (
        f"--preset: {', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} "
        f"no preset {preset!r} (its presets: {', '.join(tables[lacking[0]])}); "
        "leave it out with --skip"
    )


def _names_error(flag: str, given: list[str], names: list[str]) -> str | None:
    bad = [n for n in given if n not in names]
    if not bad:
        return None
    near = difflib.get_close_matches(bad[0], names, n=1)
    hint = f"did you mean {near[0]}? " if near else ""
    return (
        f"{flag}: unknown experiment {', '.join(map(repr, bad))}; {hint}choose "
        f"from {', '.join(names)}"
    )


def last_line(path: str) -> str:
    """The last non-empty line of a log (progress bars' carriage returns
    split lines too), shortened to one terminal line or so."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 8192))
            tail = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in re.split(r"[\r\n]", tail) if line.strip()]
    line = lines[-1] if lines else "(empty log)"
    return line if len(line) <= 300 else line[:297] + "..."


class _Signals:
    """SIGINT and SIGTERM while the suite runs: forwarded to the running
    experiment (which saves its last complete epoch and stops), recorded for
    the loop, which stops once the child has exited."""

    def __init__(self):
        self.signum = None
        self.child = None
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._forward)
        return self

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _forward(self, signum, frame):
        self.signum = signum
        if self.child is not None:
            self.child.send_signal(signum)  # a second one stops it at once

    def run(self, cmd: list[str], log) -> int:
        # Its own process group: a Ctrl-C on the terminal reaches the child
        # once, through the suite (twice would stop it before it saved).
        self.child = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, process_group=0
        )
        try:
            if self.signum is not None:  # came before the child was known
                self.child.send_signal(self.signum)
            return self.child.wait()
        finally:
            self.child = None


def main(argv=None) -> int:
    known = experiments()
    names = [e.name for e in known]
    parser = cli.ArgumentParser(
        prog="python -m experiments.suite",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="experiments: " + ", ".join(names),
    )
    presets = sorted({p for e in known if not callable(e.presets) for p in e.presets})
    parser.add_argument("--preset", default="quick",
                        help=f"the preset every experiment runs: {', '.join(presets)} "
                        "(default: quick)")  # fmt: skip
    parser.add_argument("--out", default=None,
                        help="suite directory (default: runs/suite/<time>); give an "
                        "existing one to continue it")  # fmt: skip
    parser.add_argument("--only", default=None,
                        help="comma-separated experiments to run (default: "
                        "all)")  # fmt: skip
    parser.add_argument("--skip", default="",
                        help="comma-separated experiments to leave out")  # fmt: skip
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in (args.only or ",".join(names)).split(",") if n.strip()]
    skip = [n.strip() for n in args.skip.split(",") if n.strip()]
    entries = [
        dict(e) for e in catalog() if e["name"] in chosen and e["name"] not in skip
    ]
    error = (
        _names_error("--only", chosen, names)
        or _names_error("--skip", skip, names)
        or _preset_error(
            args.preset, [e for e in known if e.name in chosen and e.name not in skip]
        )
        or (None if entries else "--only/--skip leave no experiment to run")
    )
    if error:  # before anything is created or started
        parser.error(error)
    root = args.out or os.path.join("runs", "suite", time.strftime("%Y%m%d-%H%M%S"))
    again = ["--preset", args.preset, "--out", root]
    again += ["--only", args.only] if args.only else []
    again += ["--skip", args.skip] if args.skip else []
    again = "python -m experiments.suite " + shlex.join(again)
    os.makedirs(root, exist_ok=True)
    state_path = os.path.join(root, "suite.json")
    done = json.load(open(state_path)) if os.path.isfile(state_path) else {}
    print(f"suite -> {root} ({len(entries)} experiments, preset {args.preset})")
    stopped = None
    with _Signals() as signals:
        for i, e in enumerate(entries, 1):
            if signals.signum is not None:
                break
            out = os.path.join(root, e["name"])
            report = os.path.join(out, "report.html")
            if os.path.isfile(report) and e["name"] in done:
                e.update(done[e["name"]])
                print(f"[{i}/{len(entries)}] {e['name']}: done before, kept")
                continue
            cmd = [sys.executable, "-m", f"experiments.{e['name']}", "--preset",
                   args.preset, "--out", out, "--no-progress"]  # fmt: skip
            if os.path.isfile(os.path.join(out, "config.json")) or any(
                os.path.isfile(os.path.join(out, d, "config.json"))
                for d in (os.listdir(out) if os.path.isdir(out) else [])
            ):
                cmd.append("--resume")
            print(f"[{i}/{len(entries)}] {e['name']} (about "
                  f"{duration(e['quick_s'])}) ...", end=" ", flush=True)  # fmt: skip
            t0 = time.perf_counter()
            log_path = os.path.join(root, f"{e['name']}.log")
            # appended: the log of an interrupted run stays above its resume's
            with open(log_path, "a") as log:
                log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} "
                          f"python {shlex.join(cmd[1:])}\n")  # fmt: skip
                log.flush()
                rc = signals.run(cmd, log)
            if signals.signum is not None and rc != 0:
                print(flush=True)
                stopped = e["name"]
                break  # neither done nor failed: the next run resumes it
            e["wall_s"] = round(time.perf_counter() - t0, 1)
            e["status"] = (
                "ok" if rc == 0 else f"failed (exit {rc}, see {e['name']}.log)"
            )
            if rc != 0:
                e["error"] = last_line(log_path)
            if rc == 0 and os.path.isfile(report):
                e["verdict"] = _verdict(out)
            print(f"{e['status']} in {duration(e['wall_s'])}", flush=True)
            done[e["name"]] = {
                k: e[k] for k in ("wall_s", "status", "verdict", "error") if k in e
            }
            with open(state_path, "w") as f:
                json.dump(done, f, indent=2)
            write_index(root, done)
    if signals.signum is not None:
        what = "terminated" if signals.signum == signal.SIGTERM else "interrupted"
        saved = f"{stopped} saved at its last complete epoch; " if stopped else ""
        sys.stderr.write(f"{what}; {saved}to resume, run: {again}\n")
        return 128 + signals.signum
    write_index(root, done)
    total = sum(e.get("wall_s") or 0 for e in entries)
    failed = [e for e in entries if not str(e.get("status", "")).startswith("ok")]
    print(f"index: {os.path.join(root, 'index.html')} ({duration(total)} in all)")
    if failed:
        print(f"failed: {', '.join(e['name'] for e in failed)}")
        for e in failed:
            log_path = os.path.join(root, f"{e['name']}.log")
            sys.stderr.write(f"{e['name']} failed: {e.get('error', '')} ({log_path})\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
