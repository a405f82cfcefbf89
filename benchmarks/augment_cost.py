"""What on-device augmentation costs per step: the train step of K members
without augmentation, with a random crop (padding 4), with a flip, and with
both, in one run (ratios to the plain step)::

    python -m benchmarks.augment_cost --models mlp,simple_cnn --members 4

Every number is the best of repeated windows after a compiling first call;
the windows hold at least ``--min-window`` seconds of steps.
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from benchmarks.probe_cost import random_train_data
from jaxbatch import engine

KWARGS = {"mlp": (("hidden", (256, 256)),), "simple_cnn": ()}
FORMS = {"none": (0, False), "crop:4": (4, False), "flip": (0, True),
         "crop:4,flip": (4, True)}  # fmt: skip


def _steps_ms(fn, state, hp, train, min_window: float, repeats: int = 5):
    """Best ms per step over ``repeats`` windows of at least ``min_window`` s."""
    state, m = fn(state, hp, train)  # compile
    jax.block_until_ready(m)
    t0, steps = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_window:  # how many steps a window takes
        state, m = fn(state, hp, train)
        jax.block_until_ready(m)
        steps += 1
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            state, m = fn(state, hp, train)
        jax.block_until_ready(m)
        best = min(best, (time.perf_counter() - t0) / steps * 1e3)
    return best


def measure(model: str, members: int, batch_size: int, min_window: float) -> dict:
    n = 4096
    train = random_train_data(n)
    strategy = "vmap" if model == "mlp" else "unroll"
    row = {"model": model, "members": members, "batch_size": batch_size,
           "backend": jax.default_backend()}  # fmt: skip
    for name, (pad, flip) in FORMS.items():
        hp = engine.stack_hparams([
            {"lr": 0.01, "seed": s, "aug_crop": pad, "aug_flip": 0.5 if flip else 0.0}
            for s in range(members)
        ])  # fmt: skip
        spec = engine.TrainSpec(
            model=model, model_kwargs=KWARGS.get(model, ()), num_classes=10,
            image_shape=(28, 28, 1), n_train=n, batch_size=batch_size,
            drop_last=True, strategy=strategy, augment_pad=pad, augment_flip=flip,
        )  # fmt: skip
        fns = engine.group_fns(spec)
        state = fns.start_epoch(fns.init(hp), hp)
        row[f"{name}_ms"] = _steps_ms(fns.train_one, state, hp, train, min_window)
        print(f"  {model} {name}: {row[f'{name}_ms']:.3f} ms/step", flush=True)
    for name in FORMS:
        row[f"{name}_ratio"] = row[f"{name}_ms"] / row["none_ms"]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="mlp,simple_cnn", help="comma-separated")
    parser.add_argument("--members", type=int, default=4, help="members K (4)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    parser.add_argument("--min-window", type=float, default=0.3,
                        help="seconds of steps per timed window (0.3)")  # fmt: skip
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)
    rows = [measure(m, args.members, args.batch_size, args.min_window)
            for m in args.models.split(",")]  # fmt: skip
    for r in rows:
        print(f"{r['model']:>11} K={r['members']} batch {r['batch_size']}: "
              + ", ".join(f"{k} x{r[f'{k}_ratio']:.3f}" for k in FORMS))  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
