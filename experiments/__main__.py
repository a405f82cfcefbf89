"""``python -m experiments``: every experiment, its claim and its quick runtime.

Reads each module's declaration (``EXPERIMENT``); importing a module starts no
JAX backend.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
NOT_EXPERIMENTS = {"__init__", "__main__", "suite", "gallery"}


def experiments() -> list:
    """The ``Experiment`` of every module here, by name."""
    out = []
    for file in sorted(os.listdir(HERE)):
        name, ext = os.path.splitext(file)
        if ext == ".py" and name not in NOT_EXPERIMENTS:
            module = importlib.import_module(f"experiments.{name}")
            if hasattr(module, "EXPERIMENT"):
                out.append(module.EXPERIMENT)
    return out


def catalog() -> list[dict]:
    """``[{"name", "claim", "headline", "quick_s", "title"}]`` of every
    experiment, by name."""
    return [
        {"name": e.name, "claim": e.claim, "headline": e.headline,
         "quick_s": e.quick_s, "title": e.title}
        for e in experiments()
    ]  # fmt: skip


def duration(seconds) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return (
        f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments",
        description="List every experiment with the claim it tests and the wall "
        "time of its quick preset on a 2-core CPU. Run one with python -m "
        "experiments.NAME --preset quick; all of them with python -m "
        "experiments.suite --preset quick.",
    )
    parser.parse_args(argv)
    rows = catalog()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        head = f"{r['name']:<{width}}  {duration(r['quick_s']):>12}  "
        lines = textwrap.wrap(r["claim"], max(40, 100 - len(head)))
        print(head + lines[0])
        for line in lines[1:]:
            print(" " * len(head) + line)
    total = sum(r["quick_s"] or 0 for r in rows)
    print(f"\n{len(rows)} experiments; all quick presets: about {duration(total)} "
          "(python -m experiments.suite --preset quick)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
