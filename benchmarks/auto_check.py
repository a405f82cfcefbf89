"""Does ``auto`` pick a strategy within 10% of the best? Fresh decisions, repeated.

    python -m benchmarks.auto_check --models mlp,simple_cnn --members 16 --runs 3 \\
        --json benchmarks/results/cpu-NAME-auto.json

One row of ``benchmarks.sweep_throughput`` cannot answer this on a shared
machine: two rows of the very same program differ by up to 30% there. So each
run here is a fresh process that (1) lets ``engine.auto_strategy`` decide, its
cache off, then (2) times the chosen strategy and every candidate in
*alternating* windows (``--seconds`` of windows each, the best window counts;
candidates auto saw over 3x the fastest are left out),
so that a slow spell of the machine hits all of them alike. ``ratio`` is the
chosen strategy's step over the fastest candidate's in that look; ``auto`` is
within 10% of the best when it is <= 1.10 in every run.

Same training step as ``benchmarks.sweep_throughput`` (SGD momentum 0.9, LR
0.01, synthetic 28x28x1 data, one step per call).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence

from benchmarks import sweep_throughput as st


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.auto_check",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--models", default="mlp,simple_cnn", help="comma list of models")
    p.add_argument("--members", default="16", help="comma list of member counts")
    p.add_argument("--batch-size", type=int, default=64, help="per-member batch")
    p.add_argument("--runs", type=int, default=3, help="fresh processes per cell")
    p.add_argument(
        "--seconds", type=float, default=3.0,
        help="timed windows per candidate in the alternating look",
    )  # fmt: skip
    p.add_argument("--json", default=None, help="write the records here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # model:K
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error(f"--runs must be >= 1, got {args.runs}")
    if args.seconds <= 0:
        p.error(f"--seconds must be > 0, got {args.seconds}")
    args.models = [m for m in args.models.split(",") if m]
    try:
        args.members = [int(k) for k in args.members.split(",") if k]
    except ValueError:
        p.error(f"--members must be a comma list of integers, got {args.members!r}")
    if any(k < 2 for k in args.members):
        p.error("--members: auto only decides for 2 or more members per device")
    return args


def child(model: str, members: int, batch_size: int, seconds: float) -> dict:
    """One fresh decision and the alternating look (runs in its own process)."""
    from jaxbatch import xla_flags

    xla_flags.configure([model])
    from jaxbatch import data, engine
    from jaxbatch.engine import auto

    kw = tuple(
        sorted(
            (k, st._hashable(v))
            for k, v in st.DEFAULT_MODEL_KWARGS.get(model, {}).items()
        )
    )
    case = st.Case(
        model=model, model_kwargs=kw, batch_size=batch_size, members=members,
        steps=3, steps_per_call=1, lr=0.01, momentum=0.9,
    )  # fmt: skip
    n = st._n_train(case)
    ds = data.load("synthetic", train_size=n, val_size=16, seed=0)
    train = engine.device_train_data(ds.x_train, ds.y_train, ds.mean, ds.std)
    spec = st._train_spec(case, "vmap", n)
    hp = st._hparams(case, range(members))
    t0 = time.perf_counter()
    chosen, first_look = engine.auto_strategy(spec, hp, train, cache=False)
    auto_s = time.perf_counter() - t0
    # the candidates it timed, but those over 3x the fastest in its look (a
    # rolled loop of convolutions: 10x); the compiled programs are cached
    near = [c for c, ms in first_look.items() if ms <= 3 * min(first_look.values())]
    trials = {
        c: auto._Trial(dataclasses.replace(spec, strategy=c), hp, train) for c in near
    }
    best = dict.fromkeys(trials, float("inf"))
    spent = dict.fromkeys(trials, 0.0)
    while min(spent.values()) < seconds:
        for c, trial in trials.items():
            dt = trial.window(case.steps)
            spent[c] += dt
            best[c] = min(best[c], dt / case.steps * 1e3)
    fastest = min(best, key=best.get)
    return dict(
        model=model, members=members, batch_size=batch_size, chosen=chosen,
        auto_s=round(auto_s, 1), first_look_ms=first_look,
        look_ms={c: round(v, 2) for c, v in best.items()}, fastest=fastest,
        ratio=round(best[chosen] / best[fastest], 3),
        device=st.device_description(), commit=st.jaxbatch_commit(),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.child:
        model, k = args.child.split(":")
        print(json.dumps(child(model, int(k), args.batch_size, args.seconds)))
        return []
    records = []
    for model in args.models:
        for k in args.members:
            for run in range(args.runs):
                cmd = [
                    sys.executable, "-m", "benchmarks.auto_check",
                    "--child", f"{model}:{k}", "--batch-size", str(args.batch_size),
                    "--seconds", str(args.seconds),
                ]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"{model} x{k} run {run}: {proc.stderr[-2000:]}")
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                r["run"] = run
                records.append(r)
                look = ", ".join(f"{c} {ms:.1f}" for c, ms in r["look_ms"].items())
                print(
                    f"{model} x{k} run {run}: auto chose {r['chosen']} "
                    f"({r['auto_s']} s); alternating look ms/step: {look}; "
                    f"chosen/fastest {r['ratio']:.3f}",
                    flush=True,
                )
    worst = max(r["ratio"] for r in records)
    print(f"worst chosen/fastest over {len(records)} decisions: {worst:.3f}")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    return records


if __name__ == "__main__":
    main()
