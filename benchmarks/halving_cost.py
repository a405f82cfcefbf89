"""What successive halving saves in wall time, against what it saves in
member-steps: one sweep of K members trained (a) every member to the end,
(b) by successive halving with compaction to power-of-two slot counts, (c)
with a program per exact count, (d) without compaction (the dropped members
frozen but still computed), in one run on one machine::

    python -m benchmarks.halving_cost --model mlp --members 16 --epochs 9
    python -m benchmarks.halving_cost --model simple_cnn --members 8 --epochs 9 \\
        --train-size 2048 --json benchmarks/results/halving-NAME.json

Each run is a real ``sweep.run`` on Fashion-MNIST (its wall time includes
compiling every slot count it meets, the caches cleared between modes, and
the evaluations). The ratios are to (a)'s wall time and to the member-steps
(a) computes (every member, every step). The target: the wall-time ratio of
(b) to (a) within 1.3x of its member-step ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time

import jax
import numpy as np

from jaxbatch import data, results, sweep
from jaxbatch.engine.group import group_fns, member_fn

KWARGS = {"mlp": (("hidden", (512, 512)),), "simple_cnn": ()}


def run(args) -> list[dict]:
    ds = data.load("fashion_mnist", train_size=args.train_size, val_size=1000, seed=0)
    lrs = tuple(float(v) for v in np.round(np.geomspace(3e-3, 0.5, args.members), 5))
    base = dict(
        model=args.model, model_kwargs=KWARGS.get(args.model, ()),
        batch_sizes=(args.batch_size,), lrs=lrs, momentums=(0.9,), epochs=args.epochs,
        eval_every_epochs=1.0, strategy=args.strategy, compile_cache=False,
    )  # fmt: skip
    halving = f"eta={args.eta},first=1"
    modes = {
        "every member": {},
        "halving, pow2": dict(successive_halving=halving, compaction="pow2"),
        "halving, exact": dict(successive_halving=halving, compaction="exact"),
        "halving, off": dict(successive_halving=halving, compaction="off"),
    }
    rows = []
    root = tempfile.mkdtemp(prefix="halving-")
    try:
        for name, extra in modes.items():
            out = f"{root}/{len(rows)}"
            cfg = sweep.SweepConfig(**base, **extra)
            jax.clear_caches()  # every mode compiles its own programs
            group_fns.cache_clear()
            member_fn.cache_clear()
            t0 = time.perf_counter()
            sweep.run(cfg, out, progress=False, plots=False, report=False, dataset=ds)
            wall = time.perf_counter() - t0
            meta = results.read_json(f"{out}/config.json")
            m = results.read_members(out)
            c = meta["cost"]["compute"]
            rows.append({
                "mode": name, "wall_s": wall, "compile_s": float(m["compile_s"][0]),
                "train_s": float(m["wall_s"][0]), **c,
                "slots": meta["cost"]["groups"][0]["slots"],
                "best_val_loss": float(np.nanmin(m["final_val_loss"])),
            })  # fmt: skip
            r = rows[-1]
            print(f"{name:16s} {wall:7.1f} s (compile {r['compile_s']:.1f} s)  "
                  f"member-steps {c['member_steps']:6d}  computed "
                  f"{c['computed_steps']:6d}  slots {r['slots']}",
                  flush=True)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    full = rows[0]  # it computes every member's every step (diverged ones too)
    for r in rows:
        r["wall_ratio"] = r["wall_s"] / full["wall_s"]
        r["member_step_ratio"] = r["member_steps"] / full["computed_steps"]
    print("\nmode              wall/every  member-steps/every  wall ratio / step ratio")
    for r in rows:
        ratio = r["wall_ratio"] / r["member_step_ratio"]
        print(f"{r['mode']:16s}  {r['wall_ratio']:10.3f}  "
              f"{r['member_step_ratio']:18.3f}  {ratio:10.2f}")  # fmt: skip
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mlp", help="mlp or simple_cnn (default mlp)")
    p.add_argument("--members", type=int, default=16, help="members (default 16)")
    p.add_argument("--epochs", type=int, default=9, help="epochs (default 9)")
    p.add_argument("--eta", type=float, default=3, help="halving factor (default 3)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--train-size", type=int, default=4096, help="training images")
    p.add_argument("--strategy", default="vmap", help="member axis (default vmap)")
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args(argv)
    rows = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
