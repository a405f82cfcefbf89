"""Training throughput of a whole sweep: member-axis strategies vs one run at a time.

    python -m benchmarks.sweep_throughput --models mlp,simple_cnn --members 1,4,16 \\
        --batch-size 64 --steps 50 --json benchmarks/results/cpu-NAME.json

For every (model, batch size, member count) it trains the same group of
members (SGD momentum 0.9, LR 0.01, cross-entropy, synthetic 28x28x1 uint8
data) with each strategy:

* ``vmap``, ``map``, ``unroll``, ``chunk:N``: the member axis inside one
  compiled program (``jaxbatch.engine``); ``loop``: the one-member program
  called once per member;
* ``auto``: ``engine.auto_strategy`` picks one (its measuring counts as
  compile time), then the choice is timed like the others;
* ``sequential``: K single-member jaxbatch runs one after another in this
  process (compiled once), times summed;
* ``torch``: the same step in PyTorch (``benchmarks/torch_reference.py``), K
  runs one after another; needs ``pip install 'jaxbatch[bench]'``.

Timing: ``compile_s`` is the wall time from nothing to the first step done
(jit of init, start_epoch and the train step, plus that step; for ``torch``,
the first step). Then ``--steps`` steps are timed between two
``block_until_ready`` calls, repeated up to ``--repeats`` times (each window
after an untimed ``start_epoch``), stopping early once a row has spent
``--budget-s`` in timed windows; the fastest window counts (the least
disturbed by other processes). Sequential runs whose K x (one run) would pass
the budget are estimated as K x one run (``estimated: true``).
``examples_per_s`` is summed over members: ``members * batch * steps / time``.
XLA:CPU sizes its thread pool to all cores by itself; PyTorch gets
``torch.set_num_threads(os.cpu_count())``.

Default strategies: vmap, unroll, auto, sequential, torch, plus ``map`` for
the MLP only (a rolled loop of conv steps is ~10-25x slower on XLA:CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from inspect import signature
from typing import Any

import jax
import numpy as np

import jaxbatch
from jaxbatch import choices, data, engine, xla_flags

DEFAULT_STRATEGIES = ("vmap", "unroll", "auto", "sequential", "torch")
# The benchmark's own model defaults: the 784-100-10 MLP of the throughput target.
DEFAULT_MODEL_KWARGS: dict[str, dict[str, Any]] = {"mlp": {"hidden": (100,)}}
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
TORCH_MISSING = "skipped (pip install torch)"
# Other processes using more CPU than this (in cores) disturb a row.
QUIET_CORES = 0.2


@dataclasses.dataclass(frozen=True, kw_only=True)
class Case:
    """One (model, batch size, member count) cell of the benchmark."""

    model: str
    model_kwargs: tuple[tuple[str, Any], ...]
    batch_size: int
    members: int
    steps: int
    steps_per_call: int
    lr: float
    momentum: float
    devices: int = 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.sweep_throughput",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--models", default="mlp,simple_cnn,alexnet_small")
    p.add_argument("--members", default="1,4,16", help="member counts, e.g. 1,4,16")
    p.add_argument("--batch-size", default="64", help="one or more, e.g. 32,64")
    p.add_argument("--steps", type=int, default=50, help="steps per timed window")
    p.add_argument("--repeats", type=int, default=3, help="timed windows per row")
    p.add_argument(
        "--budget-s",
        type=float,
        default=60.0,
        help="stop repeating once a row spent this long in timed windows; "
        "estimate sequential/torch runs that would take longer",
    )
    p.add_argument(
        "--strategies",
        default=None,
        help="comma list of vmap, map, unroll, loop, chunk:N, auto, sequential, torch "
        f"(default: {','.join(DEFAULT_STRATEGIES)}, plus map for mlp)",
    )
    p.add_argument(
        "--model-kwargs",
        default="{}",
        help='JSON per model, e.g. \'{"alexnet_small": {"width": 0.5}}\' '
        f"(defaults: {json.dumps(DEFAULT_MODEL_KWARGS)})",
    )
    p.add_argument("--steps-per-call", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument(
        "--torch-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch.set_num_threads (default: all cores, like XLA:CPU)",
    )
    p.add_argument(
        "--quiet-wait-s",
        type=float,
        default=0.0,
        help="on a shared machine: before each row wait up to this long for "
        "other processes to go quiet, and re-run a disturbed row once",
    )
    p.add_argument(
        "--devices",
        type=int,
        default=1,
        help="split the members of the member-axis strategies over this many "
        "host devices (XLA_FLAGS --xla_force_host_platform_device_count): each "
        "device runs its block of members on its own threads",
    )
    p.add_argument("--json", default=None, help="write the records to this file")
    p.add_argument(
        "--append",
        action="store_true",
        help="add the records to those already in --json instead of replacing them",
    )
    args = p.parse_args(argv)
    for key in ("steps", "repeats", "steps_per_call", "devices"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    args.models = _split(args.models)
    args.members = [int(m) for m in _split(args.members)]
    args.batch_size = [int(b) for b in _split(args.batch_size)]
    if min(args.members) < 1 or min(args.batch_size) < 1:
        p.error("--members and --batch-size must be positive")
    try:
        extra = json.loads(args.model_kwargs)
    except json.JSONDecodeError as err:
        p.error(f"--model-kwargs is not JSON: {err}")
    args.model_kwargs = {
        m: {**DEFAULT_MODEL_KWARGS.get(m, {}), **extra.get(m, {})} for m in args.models
    }
    if args.strategies is not None:
        args.strategies = _split(args.strategies)
        for s in args.strategies:
            if s not in ("auto", "sequential", "torch"):
                choices.parse_strategy(s)  # raises with the accepted names
    return args


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _hashable(value):
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def strategies_for(model: str, requested: list[str] | None) -> list[str]:
    if requested is not None:
        return list(requested)
    extra = ["map"] if model == "mlp" else []
    return ["vmap", *extra, *DEFAULT_STRATEGIES[1:]]


def device_description() -> str:
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        return f"{dev.platform}: {dev.device_kind} x{jax.device_count()}"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(
                line.split(":", 1)[1].strip() for line in f if "model name" in line
            )
    except (OSError, StopIteration):
        pass
    return f"cpu: {name}, {os.cpu_count()} cores"


def jaxbatch_commit() -> str | None:
    """The checkout's short commit, "+dirty" with uncommitted library changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(jaxbatch.__file__)))
    try:
        run = functools.partial(
            subprocess.run, cwd=root, capture_output=True, text=True, check=True
        )
        commit = run(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = run(["git", "status", "--porcelain", "--", "jaxbatch"]).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty.strip() else "")


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


class OtherLoad:
    """CPU time other processes used while a row ran, in cores (Linux only).

    All busy time in /proc/stat minus this process's own CPU time, over the wall
    time: 0.0 on a quiet machine, ~1.0 when another job kept a core busy. The
    load average cannot tell the benchmark's own threads from others'.
    """

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
        own = sum(os.times()[:4])
        return busy / os.sysconf("SC_CLK_TCK"), own, time.perf_counter()

    def cores(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self.start))
        return round(max(0.0, busy - own) / max(wall, 1e-9), 2)


def wait_for_quiet(max_s: float, threshold: float = QUIET_CORES) -> float:
    """Wait (up to ``max_s``) until other processes use < ``threshold`` cores."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_s:
        probe = OtherLoad()
        time.sleep(1.0)
        cores = probe.cores()
        if cores is None or cores < threshold:
            break
    return time.perf_counter() - t0


def best_window(
    window: Callable[[], float], repeats: int, budget_s: float
) -> tuple[float, int]:
    """Run ``window()`` (returns seconds) up to ``repeats`` times; the fastest.

    Stops early once the windows so far took ``budget_s`` in all.
    """
    times = []
    while len(times) < repeats and (not times or sum(times) < budget_s):
        times.append(window())
    return min(times), len(times)


# --- jaxbatch -----------------------------------------------------------------


def _train_spec(case: Case, strategy: str, n_train: int) -> engine.TrainSpec:
    return engine.TrainSpec(
        model=case.model,
        model_kwargs=case.model_kwargs,
        num_classes=NUM_CLASSES,
        image_shape=IMAGE_SHAPE,
        n_train=n_train,
        batch_size=case.batch_size,
        strategy=strategy,
        steps_per_call=case.steps_per_call,
        devices=case.devices,
    )


def _hparams(case: Case, seeds: Sequence[int]) -> dict:
    return engine.stack_hparams(
        [dict(lr=case.lr, momentum=case.momentum, seed=s) for s in seeds]
    )


class JaxGroup:
    """A compiled group of members, ready to time windows of steps."""

    def __init__(self, case: Case, spec: engine.TrainSpec, seeds, train: dict):
        self.case, self.spec, self.train = case, spec, train
        self.hp = _hparams(case, seeds)
        t0 = time.perf_counter()
        self.fns = engine.group_fns(spec)
        self.state = self.fns.start_epoch(self.fns.init(self.hp), self.hp)
        # Compile every function a window uses: the scan of steps_per_call steps
        # and, if the window does not split into whole chunks, the single step.
        k = spec.steps_per_call
        warm = k + (1 if k > 1 and case.steps % k else 0)
        self._steps(warm)
        self.compile_s = time.perf_counter() - t0

    def _steps(self, n: int) -> None:
        self.state, metrics = engine.run_steps(
            self.fns, self.spec, self.state, self.hp, self.train, n
        )
        jax.block_until_ready((self.state, metrics))

    def window(self) -> float:
        """Seconds for ``case.steps`` steps, from the start of a fresh epoch."""
        self.state = jax.block_until_ready(self.fns.start_epoch(self.state, self.hp))
        t0 = time.perf_counter()
        self._steps(self.case.steps)
        return time.perf_counter() - t0


def _n_train(case: Case) -> int:
    # Every window starts a new epoch, so one epoch must hold a whole window.
    return case.batch_size * (max(case.steps, case.steps_per_call) + 1)


def run_member_axis(case: Case, strategy: str, train, args) -> dict:
    spec = _train_spec(case, strategy, _n_train(case))
    engine.group_fns.cache_clear()  # compile_s is a cold compile for every row
    group = JaxGroup(case, spec, range(case.members), train)
    seconds, windows = best_window(group.window, args.repeats, args.budget_s)
    return dict(seconds=seconds, windows=windows, compile_s=group.compile_s)


def run_auto(case: Case, train, args) -> dict:
    spec = _train_spec(case, "vmap", _n_train(case))
    hp = _hparams(case, range(case.members))
    engine.group_fns.cache_clear()
    t0 = time.perf_counter()
    # A fresh measurement every row, never a decision cached by an earlier run.
    fresh = "cache" in signature(engine.auto_strategy).parameters
    kw = {"cache": False} if fresh else {}
    chosen, timings = engine.auto_strategy(spec, hp, train, **kw)
    auto_s = time.perf_counter() - t0
    chosen_spec = dataclasses.replace(spec, strategy=chosen)
    group = JaxGroup(case, chosen_spec, range(case.members), train)
    seconds, windows = best_window(group.window, args.repeats, args.budget_s)
    return dict(
        seconds=seconds,
        windows=windows,
        compile_s=auto_s + group.compile_s,
        chosen=chosen,
        auto_s=auto_s,
        auto_ms_per_step={k: round(float(v), 3) for k, v in timings.items()},
    )


def run_one_at_a_time(
    case: Case, args, make: Callable[[int], Any], window_of: Callable[[Any], float]
) -> dict:
    """K single-member runs one after another: ``make(seed)`` builds (and warms)
    a run, ``window_of(run)`` times one window of it. Sums the K windows; the
    fastest of up to ``--repeats`` such sums, or K x one run when that would
    take longer than ``--budget-s``."""
    first = make(0)
    one, _ = best_window(lambda: window_of(first), args.repeats, args.budget_s)
    if case.members * one > args.budget_s and case.members > 1:
        return dict(seconds=case.members * one, windows=1, estimated=True, first=first)
    runs = [first] + [make(seed) for seed in range(1, case.members)]
    seconds, windows = best_window(
        lambda: sum(window_of(r) for r in runs), args.repeats, args.budget_s
    )
    return dict(seconds=seconds, windows=windows, estimated=False, first=first)


def run_sequential(case: Case, train, args) -> dict:
    one = dataclasses.replace(case, members=1, devices=1)
    spec = _train_spec(one, "vmap", _n_train(case))
    engine.group_fns.cache_clear()
    out = run_one_at_a_time(
        case, args, lambda seed: JaxGroup(one, spec, [seed], train), JaxGroup.window
    )
    out["compile_s"] = out.pop("first").compile_s  # compiled once, for all K runs
    return out


# --- PyTorch ------------------------------------------------------------------


class TorchRun:
    def __init__(self, case: Case, seed: int, tensors: dict):
        from benchmarks import torch_reference as tr

        torch = _torch()
        self.tr, self.case, self.t = tr, case, tensors
        torch.manual_seed(seed)
        self.seed = seed
        self.model = tr.make_model(
            case.model, NUM_CLASSES, IMAGE_SHAPE, **dict(case.model_kwargs)
        )
        self.opt = tr.make_optimizer(self.model, case.lr, case.momentum)
        t0 = time.perf_counter()
        self._steps(1)
        self.compile_s = time.perf_counter() - t0

    def _steps(self, n: int):
        return self.tr.train_steps(
            self.model,
            self.t["x"],
            self.t["y"],
            n,
            self.case.batch_size,
            self.case.lr,
            self.case.momentum,
            mean=self.t["mean"],
            std=self.t["std"],
            seed=self.seed,
            optimizer=self.opt,
        )

    def window(self) -> float:
        t0 = time.perf_counter()
        self._steps(self.case.steps)
        return time.perf_counter() - t0


def torch_tensors(ds: data.Dataset) -> dict:
    torch = _torch()
    c = ds.image_shape[-1]
    return {
        "x": torch.from_numpy(np.ascontiguousarray(ds.x_train.transpose(0, 3, 1, 2))),
        "y": torch.from_numpy(ds.y_train.astype(np.int64)),
        "mean": torch.tensor(ds.mean, dtype=torch.float32).reshape(1, c, 1, 1),
        "std": torch.tensor(ds.std, dtype=torch.float32).reshape(1, c, 1, 1),
    }


def run_torch(case: Case, tensors: dict, args) -> dict:
    out = run_one_at_a_time(
        case, args, lambda seed: TorchRun(case, seed, tensors), TorchRun.window
    )
    out["compile_s"] = out.pop("first").compile_s
    return out


# --- the table ----------------------------------------------------------------


def add_ratios(records: list[dict]) -> None:
    """speedup_vs_sequential / speedup_vs_torch within each (model, batch, members)."""

    def key(r):
        return (
            r["model"],
            json.dumps(r["model_kwargs"]),
            r["batch_size"],
            r["members"],
        )

    base = {
        (key(r), r["strategy"]): r["examples_per_s"]
        for r in records
        if r["strategy"] in ("sequential", "torch")
    }
    for r in records:
        for ref in ("sequential", "torch"):
            b = base.get((key(r), ref))
            r[f"speedup_vs_{ref}"] = round(r["examples_per_s"] / b, 3) if b else None


def format_table(records: list[dict]) -> str:
    head = (
        f"{'model':<14}{'batch':>6}{'K':>4}  {'strategy':<11}{'examples/s':>11}"
        f"{'step ms':>10}{'ms/mem-step':>12}{'compile s':>10}{'x seq':>7}"
        f"{'x torch':>8}{'others':>7}  note"
    )
    lines = [head, "-" * len(head)]
    prev = None
    for r in records:
        group = (r["model"], r["batch_size"], r["members"])
        if prev is not None and group != prev:
            lines.append("")
        prev = group
        note = []
        if r.get("chosen"):
            note.append(f"chose {r['chosen']}")
        if r.get("estimated"):
            note.append("estimated")

        def ratio(v):
            return f"{v:.2f}" if v is not None else "-"

        lines.append(
            f"{r['model']:<14}{r['batch_size']:>6}{r['members']:>4}  "
            f"{r['strategy']:<11}{r['examples_per_s']:>11.0f}{r['step_ms']:>10.1f}"
            f"{r['ms_per_member_step']:>12.2f}{r['compile_s']:>10.2f}"
            f"{ratio(r['speedup_vs_sequential']):>7}"
            f"{ratio(r['speedup_vs_torch']):>8}{ratio(r['other_cpu_cores']):>7}"
            f"  {', '.join(note)}"
        )
    return "\n".join(lines)


def _record(case: Case, strategy: str, result: dict, env: dict) -> dict:
    seconds = result["seconds"]
    k = case.members
    step_ms = 1e3 * seconds / case.steps
    rec = {
        "model": case.model,
        "model_kwargs": json.loads(json.dumps(dict(case.model_kwargs))),
        "batch_size": case.batch_size,
        "members": k,
        "strategy": strategy,
        "devices": case.devices if strategy not in ("sequential", "torch") else 1,
        "examples_per_s": round(k * case.batch_size * case.steps / seconds, 1),
        "step_ms": round(step_ms, 3),
        "ms_per_member_step": round(step_ms / k, 3),
        "compile_s": round(result["compile_s"], 3),
        "steps": case.steps,
        "windows": result["windows"],
        "steps_per_call": case.steps_per_call,
        "estimated": bool(result.get("estimated", False)),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "other_cpu_cores": result.get("other_cpu_cores"),
        **env,
    }
    for key in ("chosen", "auto_s", "auto_ms_per_step"):
        if key in result:
            rec[key] = round(result[key], 3) if key == "auto_s" else result[key]
    if strategy == "torch":
        torch = _torch()
        rec["torch_version"] = torch.__version__
        rec["torch_threads"] = torch.get_num_threads()
    return rec


def _skip_reason(strategy: str, members: int, torch) -> str | None:
    kind, n = choices.parse_strategy(strategy) if ":" in strategy else (strategy, 1)
    if kind == "chunk" and members % n:
        return f"skipped ({members} members do not split into {strategy})"
    if strategy == "torch" and torch is None:
        return TORCH_MISSING
    if strategy == "auto" and not hasattr(engine, "auto_strategy"):
        return "skipped (engine.auto_strategy not available yet)"
    return None


def run_row(case: Case, strategy: str, train: dict, tensors: dict | None, args):
    """Time one strategy on one case; the raw result for :func:`_record`."""
    if strategy == "sequential":
        return run_sequential(case, train, args)
    if strategy == "torch":
        return run_torch(case, tensors, args)
    if strategy == "auto":
        return run_auto(case, train, args)
    return run_member_axis(case, strategy, train, args)


def run_quietly(case: Case, strategy: str, train, tensors, args) -> dict:
    """:func:`run_row`, noting how much CPU other processes took meanwhile.

    With ``--quiet-wait-s`` it first waits for the machine to go quiet, and
    runs a disturbed row once more.
    """
    for attempt in range(2):
        if args.quiet_wait_s:
            wait_for_quiet(args.quiet_wait_s)
        others = OtherLoad()
        result = run_row(case, strategy, train, tensors, args)
        result["other_cpu_cores"] = cores = others.cores()
        if not args.quiet_wait_s or attempt or cores is None or cores < QUIET_CORES:
            return result
        print(f"  disturbed (others used {cores} cores): once more", flush=True)
    return result


def _progress(label: str, rec: dict) -> str:
    extra = " (estimated)" if rec["estimated"] else ""
    extra += f" (chose {rec['chosen']})" if "chosen" in rec else ""
    return (
        f"{label}: {rec['examples_per_s']:.0f} examples/s, "
        f"{rec['step_ms']:.1f} ms/step, compile {rec['compile_s']:.2f} s{extra}"
    )


def _cases(args, model: str, batch: int):
    kwargs = tuple(
        sorted((k, _hashable(v)) for k, v in args.model_kwargs[model].items())
    )
    for members in args.members:
        yield Case(
            model=model,
            model_kwargs=kwargs,
            batch_size=batch,
            members=members,
            steps=args.steps,
            steps_per_call=args.steps_per_call,
            lr=args.lr,
            momentum=args.momentum,
            devices=args.devices,
        )


def write_json(path: str, records: list[dict], *, append: bool = False) -> None:
    old = []
    if append and os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:  # one record per line: small, and diffs well
        f.write("[\n" + ",\n".join(json.dumps(r) for r in old + records) + "\n]\n")
    print(f"wrote {len(records)} records to {path} ({len(old) + len(records)} in all)")


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run the benchmark; print the table; return (and with --json write) records."""
    args = parse_args(argv)
    # before JAX starts its CPU backend; process-wide: one choice for all models
    xla_flags.configure(args.models, devices=args.devices)
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(args.torch_threads)
    env = {
        "device": device_description(),
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "jaxbatch_commit": jaxbatch_commit(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    print(f"{env['device']} | jax {jax.__version__} on {env['backend']}", flush=True)
    probe = OtherLoad()
    time.sleep(1.0)
    busy = probe.cores()
    warn = " -- expect noisy, low numbers" if busy and busy > 0.25 else ""
    print(f"other processes are using {busy} CPU cores{warn}", flush=True)
    records: list[dict] = []
    notes: set[str] = set()
    for model in args.models:
        strategies = strategies_for(model, args.strategies)
        for batch in args.batch_size:
            n = batch * (max(args.steps, args.steps_per_call) + 1)
            ds = data.load("synthetic", train_size=n, val_size=16, seed=0)
            train = engine.device_train_data(ds.x_train, ds.y_train, ds.mean, ds.std)
            tensors = torch_tensors(ds) if torch and "torch" in strategies else None
            for case in _cases(args, model, batch):
                for strategy in strategies:
                    label = f"{model} batch {batch} x{case.members} {strategy}"
                    reason = _skip_reason(strategy, case.members, torch)
                    if reason:
                        if not strategy.startswith("chunk:"):
                            notes.add(f"{strategy}: {reason}")
                        print(f"{label}: {reason}", flush=True)
                        continue
                    result = run_quietly(case, strategy, train, tensors, args)
                    records.append(_record(case, strategy, result, env))
                    print(_progress(label, records[-1]), flush=True)
    add_ratios(records)
    print()
    print(format_table(records))
    for note in sorted(notes):
        print(note)
    if args.json:
        write_json(args.json, records, append=args.append)
    return records


if __name__ == "__main__":
    main(sys.argv[1:])
