"""``python -m experiments``: every experiment, its claim and its quick runtime.

Reads each module's ``CLAIM`` and ``QUICK_S`` without importing it (no JAX
start-up), so the list prints at once.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
NOT_EXPERIMENTS = {"__init__", "__main__", "suite", "gallery"}


def _constants(path: str) -> dict:
    tree = ast.parse(open(path, encoding="utf-8").read())
    out = {"doc": ast.get_docstring(tree) or ""}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in (
                "CLAIM", "HEADLINE", "QUICK_S",
            ):  # fmt: skip
                out[target.id] = ast.literal_eval(node.value)
    return out


def catalog() -> list[dict]:
    """``[{"name", "claim", "headline", "quick_s", "title"}]`` of every
    experiment module, by name."""
    out = []
    for file in sorted(os.listdir(HERE)):
        name, ext = os.path.splitext(file)
        if ext != ".py" or name in NOT_EXPERIMENTS:
            continue
        c = _constants(os.path.join(HERE, file))
        if "CLAIM" not in c:
            continue
        out.append({
            "name": name,
            "claim": c["CLAIM"],
            "headline": tuple(c.get("HEADLINE", ())),
            "quick_s": c.get("QUICK_S"),
            "title": c["doc"].split("\n")[0],
        })  # fmt: skip
    return out


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
