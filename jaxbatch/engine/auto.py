"""``auto``: the member-axis strategy chosen by measurement, not by faith.

Each candidate strategy's step is compiled and timed for a few steps on the
real shapes; the fastest wins (or, within a few percent, the one that
compiles much faster), and the decision is cached per machine, jax version,
flags and shapes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence

import jax

from jaxbatch import results
from jaxbatch.engine.caches import cache_dir
from jaxbatch.engine.group import group_fns, run_steps
from jaxbatch.engine.hparams import pad_members
from jaxbatch.engine.member_axis import member_multiple
from jaxbatch.engine.spec import TrainSpec
from jaxbatch.models import conv as model_conv


def default_candidates(spec: TrainSpec, members: int) -> tuple[str, ...]:
    """Strategies worth timing, the likely winner first (so the 2x give-up rule
    drops a hopeless candidate after one step): on CPU ``unroll`` (vmapped
    convolutions ran 2-6x slower per member there), elsewhere ``vmap``;
    unrolling only while compile time stays sane. Past that, on CPU, ``loop``
    (a call per member): 16 ``simple_cnn`` members stepped 4-18% slower
    looped than unrolled, but 1.7x faster than vmapped. Not on
    an accelerator, where one member's step leaves the chip mostly idle.

    ``map`` (one member after another inside one program) is timed except on
    CPU next to ``unroll``: there it lost to ``unroll`` in every cell measured
    (16 MLP members 11.9-12.1 vs 10.5-10.8 ms; conv nets 8-19x slower, a
    rolled loop of convolutions) and its compiles and two slow steps a group,
    ~36 s, were ~8% of the quick AlexNet sweep's first run (8.6 + 2 x 2.4 s
    and 11.8 + 2 x 5.3 s for its two groups of 6 members)."""
    cpu = jax.default_backend() == "cpu"
    if members <= 16:
        return ("unroll", "vmap") if cpu else ("vmap", "unroll", "map")
    return ("loop", "vmap", "map") if cpu else ("vmap", "map")


class _Trial:
    """One candidate strategy's compiled step, kept so that it can be timed again."""

    def __init__(self, spec: TrainSpec, hp: Mapping, train: Mapping):
        self.spec, self.train = spec, train
        self.hp, _ = pad_members(hp, member_multiple(spec))
        self.fns = group_fns(spec)
        self.state = self.fns.start_epoch(self.fns.init(self.hp), self.hp)

    def window(self, calls: int = 1) -> float:
        """Seconds for ``calls`` training calls (``steps_per_call`` steps each)."""
        n = calls * self.spec.steps_per_call
        t0 = time.perf_counter()
        self.state, m = run_steps(
            self.fns, self.spec, self.state, self.hp, self.train, n
        )
        jax.block_until_ready(m)
        return time.perf_counter() - t0

    def best_ms(self, steps: int, min_time_s: float, max_windows: int = 10) -> float:
        """The best ms/step over windows of ``steps`` calls until ``min_time_s``."""
        best, spent, windows = float("inf"), 0.0, 0
        while spent < min_time_s and windows < max_windows:
            dt = self.window(steps)
            spent, windows = spent + dt, windows + 1
            best = min(best, dt / (steps * self.spec.steps_per_call) * 1e3)
        return best

    def measure(
        self, steps: int, min_time_s: float, give_up_ms: float
    ) -> tuple[float, float]:
        """``(first_call_s, ms_per_step)``: see :func:`time_strategy`."""
        first = self.window()
        best = self.window() / self.spec.steps_per_call * 1e3
        if best >= give_up_ms:
            return first, best
        return first, min(best, self.best_ms(steps, min_time_s))


def time_strategy(
    spec: TrainSpec,
    hp: Mapping,
    train: Mapping,
    steps: int = 3,
    *,
    min_time_s: float = 0.2,
    give_up_ms: float = float("inf"),
) -> tuple[float, float]:
    """``(first_call_s, ms_per_step)`` of ``spec``'s training step on these members.

    The first call compiles. Then windows of ``steps`` steps are timed until
    ``min_time_s`` has passed (at most 10 windows) and the best window counts:
    a single short window on a busy machine misjudged millisecond steps. A
    candidate whose first step already takes ``give_up_ms`` is not timed further.
    """
    return _Trial(spec, hp, train).measure(steps, min_time_s, give_up_ms)


def _auto_key(spec: TrainSpec, members: int) -> str:
    # Everything the timed programs depend on: the compiler (jax version) and
    # the convolution forms the models trace (models.conv) included.
    device = jax.devices()[0]
    return "|".join(
        str(v)
        for v in (
            jax.default_backend(), device.device_kind, jax.__version__,
            model_conv.impl(), spec.model,
            dict(spec.model_kwargs), spec.image_shape, spec.batch_size, members,
            spec.n_devices, spec.compute_dtype, spec.steps_per_call, spec.optimizer,
            os.environ.get("XLA_FLAGS", ""),
        )
    )  # fmt: skip


CLOSE_MARGIN = 0.10  # runners-up this close are timed again, longer ...
CONFIRM_S = 0.6  # ... for this long each, in alternating windows
TIE_MARGIN = 0.05  # steps this close count as a tie ...
COMPILE_ADVANTAGE = 1.5  # ... which the candidate that compiles this much faster wins


def pick_strategy(timings: Mapping[str, float], compiles: Mapping[str, float]) -> str:
    """The fastest step; among candidates within :data:`TIE_MARGIN` of it,
    the one whose first call (compile) took :data:`COMPILE_ADVANTAGE` times
    less: an unrolled program of K convolutional members compiles K bodies,
    and a 1% faster step does not pay back a minute of compilation."""
    best = min(timings, key=timings.get)
    ties = [c for c in timings if timings[c] <= (1 + TIE_MARGIN) * timings[best]]
    cheapest = min(ties, key=lambda c: compiles.get(c, float("inf")))
    if compiles.get(cheapest, 0) * COMPILE_ADVANTAGE <= compiles.get(best, 0):
        return cheapest
    return best


def auto_strategy(
    spec: TrainSpec,
    hp: Mapping,
    train: Mapping,
    *,
    candidates: Sequence[str] | None = None,
    steps: int = 3,
    cache: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[str, dict[str, float]]:
    """Time each candidate strategy for a few steps on the real shapes; pick the
    fastest step, or within 5% of it the one that compiles much faster
    (:func:`pick_strategy`).

    Returns ``(strategy, {candidate: ms_per_step})``. The decision is cached in
    ``<cache_dir()>/auto_strategy.json`` per (backend, device kind, jax version,
    convolution forms, model, batch size, member count, ...); a cached decision
    comes back with its timings. ``log`` (e.g. ``print``) hears what is being
    timed as it goes: for big convolutional groups on a CPU the decision takes
    minutes (16 full-width ``alexnet_small`` members: 1371 s on two cores).
    """
    say = log or (lambda _msg: None)
    members = len(hp["lr"])
    if members <= spec.n_devices:
        # one member per device: `unroll` of one member is the plain program,
        # which on XLA:CPU ran 5-18% faster than the vmapped one (simple_cnn
        # batch 64: 17.1 vs 21.2 ms, interleaved in one process)
        return "unroll", {}
    candidates = tuple(candidates or default_candidates(spec, members))
    key = _auto_key(spec, members)
    path = os.path.join(cache_dir(), "auto_strategy.json")
    known = {}
    if cache and os.path.exists(path):
        try:
            with open(path) as f:
                known = json.load(f)
        except (OSError, ValueError):
            known = {}  # a damaged cache is only a lost measurement
        hit = known.get(key)
        if hit and hit["strategy"] in candidates:
            say(f"auto: {hit['strategy']} (decided before; {path})")
            return hit["strategy"], hit["timings_ms"]
    say(
        f"auto times the strategies {', '.join(candidates)} for {members} members "
        "on the real shapes (once per shapes; --strategy NAME skips it)"
    )
    timings, compiles, trials = {}, {}, {}
    for candidate in candidates:
        trial = _Trial(dataclasses.replace(spec, strategy=candidate), hp, train)
        # a candidate 2x slower than the best so far on its first step is out
        give_up = 2 * min(timings.values(), default=float("inf"))
        first_s, ms = trial.measure(steps, min_time_s=0.2, give_up_ms=give_up)
        timings[candidate], compiles[candidate] = ms, round(first_s, 3)
        trials[candidate] = trial  # kept compiled, to be timed again
        say(
            f"  {candidate}: {ms:.1f} ms/step "
            f"(first call, compile included: {first_s:.1f} s)"
        )
    _confirm_close(timings, trials, steps)
    timings = {c: round(ms, 3) for c, ms in timings.items()}
    best = pick_strategy(timings, compiles)
    say(f"  chose {best}")
    if cache:
        known[key] = {"strategy": best, "timings_ms": timings, "compile_s": compiles}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        results.write_json(path, known)
    return best, timings


def _confirm_close(timings: dict, trials: Mapping, steps: int) -> None:
    """Time the candidates within :data:`CLOSE_MARGIN` of the fastest again, in
    alternating windows for :data:`CONFIRM_S` each, keeping each one's best:
    one short look misjudged a 15% difference on a shared machine."""
    best = min(timings.values())
    close = [c for c, ms in timings.items() if ms <= (1 + CLOSE_MARGIN) * best]
    if len(close) < 2:
        return
    spent = dict.fromkeys(close, 0.0)
    while min(spent.values()) < CONFIRM_S:
        for c in close:
            dt = trials[c].window(steps)
            spent[c] += dt
            timings[c] = min(
                timings[c], dt / (steps * trials[c].spec.steps_per_call) * 1e3
            )
