"""What the probes cost: ratios of compiled-program times, in one run.

For each model: the train step of K members with the step probes off and on
(``update_ratio``, ``grad_norm``, ``param_norm``), and the noise-scale and
sharpness probes against one step, so their cost per evaluation (or per run)
reads in steps::

    python -m benchmarks.probe_cost --models mlp --members 4
    python -m benchmarks.probe_cost --models simple_cnn --probe-size 256

Every number is the best of repeated windows after a compiling first call
(``engine.time_strategy`` for the step).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from jaxbatch import engine

KWARGS = {"mlp": (("hidden", (256, 256)),), "simple_cnn": ()}


def _best(fn, repeats: int = 5) -> float:
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def _steps_ms(fn, state, hp, train, steps: int = 10, repeats: int = 5):
    """Best ms per step over ``repeats`` windows (the step donates its state)."""
    state, m = fn(state, hp, train)  # compile
    jax.block_until_ready(m)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            state, m = fn(state, hp, train)
        jax.block_until_ready(m)
        best = min(best, (time.perf_counter() - t0) / steps * 1e3)
    return best, state


def random_train_data(n: int) -> dict:
    """``n`` random 28x28 uint8 images and labels on the device."""
    rng = np.random.default_rng(0)
    return engine.device_train_data(
        rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
        rng.integers(0, 10, n).astype(np.int32),
        np.full(1, 0.5, np.float32),
        np.full(1, 0.25, np.float32),
    )


def measure(model: str, members: int, batch_size: int, probe_size: int) -> dict:
    n = 4096
    train = random_train_data(n)
    hp = engine.stack_hparams([{"lr": 0.01, "seed": s} for s in range(members)])
    strategy = "vmap" if model == "mlp" else "unroll"

    def spec(probes):
        return engine.TrainSpec(
            model=model, model_kwargs=KWARGS.get(model, ()), num_classes=10,
            image_shape=(28, 28, 1), n_train=n, batch_size=batch_size,
            drop_last=True, strategy=strategy, probes=probes,
        )  # fmt: skip

    s = spec(("update_ratio", "grad_norm", "param_norm"))
    fns = engine.group_fns(s)
    noise = engine.member_fn(s, engine.noise_probe, probe_size)
    sharpness = engine.member_fn(s, engine.sharpness_probe, probe_size, (1e-3, 5e-4))
    state = fns.start_epoch(fns.init(hp), hp)
    off, state = _steps_ms(fns.train_one, state, hp, train)
    on, state = _steps_ms(fns.train_probe, state, hp, train)
    print(f"  {model}: step {off:.2f} ms, probed step {on:.2f} ms", flush=True)
    noise_ms = _best(lambda: noise(state, hp, train))
    print(f"  {model}: noise scale {noise_ms:.1f} ms", flush=True)
    sharp_ms = _best(lambda: sharpness(state, hp, train), repeats=1)
    return {
        "model": model, "members": members, "batch_size": batch_size,
        "probe_size": probe_size, "step_ms": off, "step_probes_ms": on,
        "step_probes_ratio": on / off, "noise_scale_ms": noise_ms,
        "noise_scale_in_steps": noise_ms / off, "sharpness_ms": sharp_ms,
        "sharpness_in_steps": sharp_ms / off, "backend": jax.default_backend(),
        # at the defaults: step probes every 10th step, the noise scale at
        # every 10th evaluation of one every 50 steps
        "step_probes_every_10": (9 * off + on) / (10 * off),
        "noise_every_10_evals_of_50": 1 + noise_ms / (500 * off),
    }  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", default="mlp,simple_cnn", help="comma-separated models"
    )
    parser.add_argument("--members", type=int, default=4, help="members K (4)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    parser.add_argument(
        "--probe-size", type=int, default=1024,
        help="images of the noise-scale and sharpness probes (1024)",
    )  # fmt: skip
    parser.add_argument("--json", help="write the records to this file")
    args = parser.parse_args(argv)
    rows = []
    for model in args.models.split(","):
        r = measure(model, args.members, args.batch_size, args.probe_size)
        rows.append(r)
        print(
            f"{model:>11} K={r['members']} batch {r['batch_size']}: step "
            f"{r['step_ms']:.2f} ms, with step probes {r['step_probes_ms']:.2f} ms "
            f"(x{r['step_probes_ratio']:.3f}); noise scale "
            f"{r['noise_scale_ms']:.1f} ms = {r['noise_scale_in_steps']:.1f} steps "
            f"per evaluation; sharpness "
            f"{r['sharpness_ms']:.0f} ms = {r['sharpness_in_steps']:.0f} steps, once; "
            f"at the default cadences: step probes x{r['step_probes_every_10']:.3f}, "
            f"noise scale x{r['noise_every_10_evals_of_50']:.3f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
