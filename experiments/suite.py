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
are kept, a started one resumes from its last complete epoch.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import subprocess
import sys
import time

from experiments.__main__ import catalog, duration


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


def main(argv=None) -> int:
    names = [e["name"] for e in catalog()]
    parser = argparse.ArgumentParser(
        prog="python -m experiments.suite",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="experiments: " + ", ".join(names),
    )
    parser.add_argument("--preset", default="quick",
                        help="the preset every experiment runs (default: "
                        "quick)")  # fmt: skip
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
    skip = {n.strip() for n in args.skip.split(",") if n.strip()}
    bad = [n for n in [*chosen, *skip] if n not in names]
    if bad:
        parser.exit(2, f"{parser.prog}: error: unknown experiment(s) {', '.join(bad)}; "
                    f"choose from {', '.join(names)}\n")  # fmt: skip
    root = args.out or os.path.join("runs", "suite", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(root, exist_ok=True)
    state_path = os.path.join(root, "suite.json")
    done = json.load(open(state_path)) if os.path.isfile(state_path) else {}
    entries = [
        dict(e) for e in catalog() if e["name"] in chosen and e["name"] not in skip
    ]
    print(f"suite -> {root} ({len(entries)} experiments, preset {args.preset})")
    try:
        for i, e in enumerate(entries, 1):
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
            with open(os.path.join(root, f"{e['name']}.log"), "w") as log:
                rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
            e["wall_s"] = round(time.perf_counter() - t0, 1)
            e["status"] = (
                "ok" if rc == 0 else f"failed (exit {rc}, see {e['name']}.log)"
            )
            if rc == 0 and os.path.isfile(report):
                e["verdict"] = _verdict(out)
            print(f"{e['status']} in {duration(e['wall_s'])}", flush=True)
            done[e["name"]] = {
                k: e[k] for k in ("wall_s", "status", "verdict") if k in e
            }
            with open(state_path, "w") as f:
                json.dump(done, f, indent=2)
            write_index(root, done)
    except KeyboardInterrupt:
        sys.stderr.write(f"\ninterrupted; continue with: python -m experiments.suite "
                         f"--preset {args.preset} --out {root}\n")  # fmt: skip
        return 130
    write_index(root, done)
    total = sum(e.get("wall_s") or 0 for e in entries)
    failed = [
        e["name"] for e in entries if not str(e.get("status", "")).startswith("ok")
    ]
    print(f"index: {os.path.join(root, 'index.html')} ({duration(total)} in all)")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
