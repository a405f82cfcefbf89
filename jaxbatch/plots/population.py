"""Figures and verdict of population control (``experiments.successive_halving``).

The run directory holds ``to_the_end`` (arms ``every`` and ``small``, tags
``arm`` and ``rep``), ``halving_<r>`` (one successive-halving sweep per
repetition ``r``) and ``hyperband_<r>`` (one Hyperband sweep per repetition:
its brackets' draws, tag ``bracket``).
"""

from __future__ import annotations

import glob
import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from jaxbatch import results, stats
from jaxbatch.plots.style import Colors, arm_colors, pct

ARMS = ("every", "halving", "hyperband", "small")
ARM_LABELS = {
    "every": "every member to the end",
    "halving": "successive halving",
    "hyperband": "Hyperband",
    "small": "random search of halving's compute",
}
ADAPTIVE = ("halving", "hyperband")  # arms whose compute is what they ran


def _sweeps(out: str) -> list[str]:
    names = ["to_the_end"] + sorted(
        os.path.basename(p)
        for arm in ADAPTIVE
        for p in glob.glob(os.path.join(out, f"{arm}_*"))
    )
    return [os.path.join(out, n) for n in names
            if os.path.exists(os.path.join(out, n, "members.csv"))]  # fmt: skip


def picks(out: str) -> list[dict]:
    """One row per (arm, repetition): the member picked (the highest final
    validation accuracy among the members that trained every epoch), its
    test accuracy, and the member-steps the arm computed."""
    rows = []
    for d in _sweeps(out):
        m = results.read_members(d)
        meta = results.read_json(os.path.join(d, "config.json"))
        total = max(g["total_steps"] for g in meta["groups"])
        computed = meta["cost"].get("compute", {}).get("computed_steps")
        if "arm" not in m:  # a Hyperband sweep draws its own members: no tags
            arm, _, rep = os.path.basename(d).rpartition("_")
            m["arm"] = np.full(len(m["member"]), arm)
            m["rep"] = np.full(len(m["member"]), float(rep))
        for arm in dict.fromkeys(m["arm"].astype(str)):
            for rep in sorted(set(m["rep"].astype(int))):
                sel = (m["arm"].astype(str) == arm) & (m["rep"].astype(int) == rep)
                if not sel.any():
                    continue
                done = sel & (m["steps"] == total) & ~stats.diverged(m)
                pool = np.flatnonzero(done if done.any() else sel)
                best = pool[np.nanargmax(np.nan_to_num(m["final_val_acc"][pool],
                                                       nan=-1))]  # fmt: skip
                steps = (computed if arm in ADAPTIVE and computed is not None
                         else int(sel.sum()) * total)  # fmt: skip
                rows.append({
                    "arm": arm, "rep": rep, "members": int(sel.sum()),
                    "member": int(m["member"][best]), "lr": float(m["lr"][best]),
                    "val_acc": float(m["final_val_acc"][best]),
                    "test_acc": float(m["test_acc"][best]), "computed_steps": steps,
                })  # fmt: skip
    return rows


def _by_arm(rows):
    return {a: [r for r in rows if r["arm"] == a] for a in ARMS
            if any(r["arm"] == a for r in rows)}  # fmt: skip


def best_vs_compute(out: str) -> Figure:
    """Test accuracy of each arm's pick against the member-steps it computed:
    every repetition a dot, the mean with its 95% t-interval."""
    arms = _by_arm(picks(out))
    colors = arm_colors(list(arms))
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    placed: list[float] = []
    for arm, rows in arms.items():
        x = np.array([r["computed_steps"] for r in rows], float)
        # arms of (nearly) one compute side by side, not on top of each other
        near = sum(abs(np.log(x.mean() / p)) < 0.03 for p in placed)
        placed.append(x.mean())
        x = x * 1.04**near
        y = np.array([r["test_acc"] for r in rows])
        mean, half, n = stats.seed_stats(y)
        ax.scatter(x, y, color=colors[arm], s=18, alpha=0.5, lw=0)
        ax.errorbar([x.mean()], [mean], yerr=[np.nan_to_num(half)], fmt="o", ms=8,
                    capsize=4, color=colors[arm],
                    label=f"{ARM_LABELS[arm]}: {pct(mean)}% ({rows[0]['members']} "
                          f"members)")  # fmt: skip
    ax.set_xscale("log")
    ax.set(xlabel="member-steps computed (log)",
           ylabel="test accuracy of the pick (best validation accuracy)")  # fmt: skip
    n = max(len(r) for r in arms.values())
    ax.set_title(f"best of a random search against its compute ({n} repetitions of "
                 "the draw: dots; bar: mean ± 95% t-interval)", fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def halving_curves(out: str) -> Figure:
    """Validation accuracy against epochs of every member of the first
    halving run, coloured by its LR; dropped members end at their rung
    (dotted lines); the survivor thick."""
    d = os.path.join(out, "halving_0")
    m, h = results.read_members(d), results.read_history(d)
    meta = results.read_json(os.path.join(d, "config.json"))
    n_train = meta["data"]["n_train"]
    colors = Colors("lr", m["lr"])
    total = max(g["total_steps"] for g in meta["groups"])
    fig, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
    rungs, ends = set(), []
    for i, member in enumerate(m["member"].astype(int)):
        rows = (h["member"] == member) & np.isfinite(h["val_acc"])
        if not rows.any():
            continue
        ep = h["examples_seen"][rows] / n_train
        survived = m["steps"][i] == total
        ax.plot(ep, h["val_acc"][rows], color=colors(m["lr"][i]),
                lw=2.4 if survived else 0.9, alpha=1 if survived else 0.7,
                marker="o" if survived else None, ms=3)  # fmt: skip
        ax.plot(ep[-1:], h["val_acc"][rows][-1:], "o", ms=4, color=colors(m["lr"][i]))
        ends.append(h["val_acc"][rows][-1])
        if not survived and m["stopped"][i] == "True":
            rungs.add(round(float(ep[-1])))
    for r in sorted(rungs):
        ax.axvline(r, color="0.5", ls=":", lw=1)
    if colors.continuous:
        colors.colorbar(fig, ax)
    finite = h["val_acc"][np.isfinite(h["val_acc"])]
    below = 0
    if len(finite):
        lo = max(0.0, np.quantile(finite, 0.1) - 0.05)
        ax.set_ylim(lo, min(1.0, finite.max() + 0.02))
        below = int((np.asarray(ends) < lo).sum())
    ax.set(xlabel="epochs", ylabel="validation accuracy")
    note = f"; {below} members below the axis" if below else ""
    ax.set_title(f"successive halving of {len(m['member'])} random draws: each member "
                 f"ends (dot) at its rung (dotted line), the survivors thick{note}",
                 fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3)
    return fig


def halving_verdict(out: str) -> list[str]:
    arms = _by_arm(picks(out))
    parts = {}
    for arm, rows in arms.items():
        mean, half, n = stats.seed_stats([r["test_acc"] for r in rows])
        steps = np.mean([r["computed_steps"] for r in rows])
        parts[arm] = (mean, half, steps)
    every = parts.get("every", (np.nan, np.nan, np.nan))[2]
    text = [
        f"{ARM_LABELS[a]}: test accuracy of the pick {pct(mean)} ± {pct(half)}% "
        f"with {steps:,.0f} member-steps ({steps / every:.0%} of every member's)"
        for a, (mean, half, steps) in parts.items()
    ]
    out_ = ["; ".join(text) + "."]
    for arm in ADAPTIVE:
        if arm in parts and "every" in parts:
            diff = parts[arm][0] - parts["every"][0]
            out_.append(
                f"{ARM_LABELS[arm].capitalize()} against every member: "
                f"{100 * diff:+.1f} points at {parts[arm][2] / every:.0%} of the "
                "compute"
                + (
                    f"; against a search of halving's compute: "
                    f"{100 * (parts[arm][0] - parts['small'][0]):+.1f} points"
                    if "small" in parts
                    else ""
                )  # fmt: skip
                + "."
            )
    return out_
