"""Figures and verdict of population-based training (``experiments.pbt``).

The run directory holds ``fixed`` (arms ``fixed`` and ``hand_tuned`` of
every repetition, tags ``arm`` and ``rep``) and ``pbt_<r>`` (one PBT sweep
per repetition ``r``: PBT ranks the members of one population).
"""

from __future__ import annotations

import glob
import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from jaxbatch import results, stats
from jaxbatch.plots.style import Colors, arm_colors, pct

ARMS = ("pbt", "fixed", "hand_tuned")
ARM_LABELS = {
    "pbt": "PBT (lr, momentum)",
    "fixed": "same draws, fixed LR",
    "hand_tuned": "step decay, LR grid",
}


def _pbt_dirs(out: str) -> list[str]:
    found = sorted(glob.glob(os.path.join(out, "pbt_*")),
                   key=lambda p: int(p.rsplit("_", 1)[1]))  # fmt: skip
    return [d for d in found if os.path.exists(os.path.join(d, "members.csv"))]


def picks(out: str) -> list[dict]:
    """One row per (arm, repetition): the member with the highest final
    validation accuracy, its test accuracy, and the member-steps the arm
    computed."""
    rows = []
    dirs = [os.path.join(out, "fixed"), *_pbt_dirs(out)]
    for d in dirs:
        if not os.path.exists(os.path.join(d, "members.csv")):
            continue
        m = results.read_members(d)
        for arm in dict.fromkeys(m["arm"].astype(str)):
            for rep in sorted(set(m["rep"].astype(int))):
                sel = (m["arm"].astype(str) == arm) & (m["rep"].astype(int) == rep)
                if not sel.any():
                    continue
                ok = sel & ~stats.diverged(m)
                pool = np.flatnonzero(ok if ok.any() else sel)
                acc = np.nan_to_num(m["final_val_acc"][pool], nan=-1)
                best = pool[int(np.argmax(acc))]
                rows.append({
                    "arm": arm, "rep": rep, "members": int(sel.sum()),
                    "member": int(m["member"][best]), "lr": float(m["lr"][best]),
                    "val_acc": float(m["final_val_acc"][best]),
                    "test_acc": float(m["test_acc"][best]),
                    "computed_steps": int(m["steps"][sel].sum()), "dir": d,
                })  # fmt: skip
    return rows


def ancestry(lineage: dict, member: int, epochs: int) -> list[int]:
    """The member whose weights trained each epoch (1..epochs) on the way to
    ``member``'s final weights: itself back to its latest exploit, then that
    step's parent, and so on."""
    exploited = {
        (int(e), int(c)): int(p)
        for e, c, p, x in zip(
            lineage["epoch"], lineage["member"], lineage["parent"], lineage["exploited"]
        )  # fmt: skip
        if str(x) == "True"
    }
    owner, cur = [0] * epochs, member
    for ep in range(epochs, 0, -1):
        owner[ep - 1] = cur
        cur = exploited.get((ep - 1, cur), cur)
    return owner


def path_lr(d: str) -> tuple[np.ndarray, np.ndarray, int, list[int]]:
    """``(epochs, lr, best, owners)``: the LR of every step along the best
    member's ancestry (its weights' history) in PBT run ``d``."""
    m, h = results.read_members(d), results.read_history(d)
    lin = results.read_csv(os.path.join(d, "lineage.csv"))
    meta = results.read_json(os.path.join(d, "config.json"))
    epochs = int(meta["config"]["evaluation"]["epochs"])
    n_train = meta["data"]["n_train"]
    best = int(m["member"][np.nanargmax(np.nan_to_num(m["final_val_acc"], nan=-1))])
    owners = ancestry(lin, best, epochs)
    xs, ys = [], []
    for ep, owner in enumerate(owners, start=1):
        rows = (h["member"] == owner) & np.isfinite(h["lr"])
        seen = h["examples_seen"][rows] / n_train
        inside = (seen > ep - 1) & (seen <= ep + 1e-9)
        xs.append(seen[inside])
        ys.append(h["lr"][rows][inside])
    return np.concatenate(xs), np.concatenate(ys), best, owners


def lr_trajectories(out: str) -> Figure:
    """The LR of every member of the first PBT population against epochs
    (thin, coloured by its starting LR) and along the final best member's
    ancestry (thick black; dots: the exploits it went through)."""
    d = _pbt_dirs(out)[0]
    m, h = results.read_members(d), results.read_history(d)
    meta = results.read_json(os.path.join(d, "config.json"))
    n_train = meta["data"]["n_train"]
    colors = Colors("lr", m["lr"])
    fig, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
    for i, member in enumerate(m["member"].astype(int)):
        rows = (h["member"] == member) & np.isfinite(h["lr"])
        ax.plot(h["examples_seen"][rows] / n_train, h["lr"][rows],
                color=colors(m["lr"][i]), lw=0.9, alpha=0.75)  # fmt: skip
    x, y, best, owners = path_lr(d)
    ax.plot(
        x, y, color="k", lw=2.6, label=f"ancestry of the final best (member {best})"
    )
    jumps = [ep for ep in range(1, len(owners)) if owners[ep] != owners[ep - 1]]
    for ep in jumps:
        at = np.flatnonzero(x > ep)[:1]
        if len(at):
            ax.plot(x[at], y[at], "o", color="k", ms=6)
    ax.set_yscale("log")
    if colors.continuous:
        colors.colorbar(fig, ax)
    ax.set(xlabel="epochs", ylabel="learning rate (log)")
    ax.set_title(f"PBT over {len(m['member'])} members: each member's LR (colour: its "
                 f"start) and the best one's history ({len(jumps)} exploits, dots)",
                 fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def _by_arm(rows):
    return {a: [r for r in rows if r["arm"] == a] for a in ARMS
            if any(r["arm"] == a for r in rows)}  # fmt: skip


def test_accuracy(out: str) -> Figure:
    """Test accuracy of each arm's pick: every repetition a dot, the mean
    with its 95% t-interval; the member-steps each arm computed."""
    arms = _by_arm(picks(out))
    colors = arm_colors(list(arms))
    fig, ax = plt.subplots(figsize=(7, 4.4), layout="constrained")
    for x, (arm, rows) in enumerate(arms.items()):
        y = np.array([r["test_acc"] for r in rows])
        mean, half, n = stats.seed_stats(y)
        jitter = np.linspace(-0.08, 0.08, len(y)) if len(y) > 1 else [0.0]
        ax.scatter(x + np.asarray(jitter), y, color=colors[arm], s=22, alpha=0.6, lw=0)
        ax.errorbar([x + 0.22], [mean], yerr=[np.nan_to_num(half)], fmt="o", ms=8,
                    capsize=5, color=colors[arm])  # fmt: skip
        steps = np.mean([r["computed_steps"] for r in rows])
        ax.annotate(f"{pct(mean)}%\n{steps:,.0f} member-steps", (x + 0.3, mean),
                    fontsize=8, va="center")  # fmt: skip
    ax.set_xticks(range(len(arms)), [ARM_LABELS[a] for a in arms], fontsize=9)
    ax.set_xlim(-0.4, len(arms) - 0.1 + 0.5)
    ax.set_ylabel("test accuracy of the pick (best validation accuracy)")
    n = max(len(r) for r in arms.values())
    ax.set_title(
        "PBT against fixed LRs and a tuned step schedule at equal compute\n"
        f"({n} repetitions: dots; bar: mean ± 95% t-interval)", fontsize=9,
    )  # fmt: skip
    ax.grid(alpha=0.3, axis="y")
    return fig


def pbt_verdict(out: str) -> list[str]:
    arms = _by_arm(picks(out))
    parts = {}
    for arm, rows in arms.items():
        mean, half, _ = stats.seed_stats([r["test_acc"] for r in rows])
        parts[arm] = (mean, half, np.mean([r["computed_steps"] for r in rows]))
    text = [
        f"{ARM_LABELS[a]}: test accuracy {pct(mean)} ± {pct(half)}% with "
        f"{steps:,.0f} member-steps"
        for a, (mean, half, steps) in parts.items()
    ]
    lines = ["; ".join(text) + "."]
    if "pbt" in parts and "hand_tuned" in parts:
        pbt, hand = parts["pbt"][0], parts["hand_tuned"][0]
        fixed = parts.get("fixed", (np.nan,))[0]
        lines.append(
            f"PBT against the tuned step schedule: {100 * (pbt - hand):+.1f} points; "
            f"against fixed LRs: {100 * (pbt - fixed):+.1f} points."
        )
    ratios = []
    for d in _pbt_dirs(out):
        _, y, _, _ = path_lr(d)
        if len(y):
            ratios.append(float(y[-1] / y[0]))
    if ratios:
        decays = sum(r < 1 for r in ratios)
        lines.append(
            "The LR along the best member's ancestry ends at "
            + ", ".join(f"{r:.2g}" for r in ratios)
            + f" x its start: it decays in {decays} of {len(ratios)} repetitions."
        )
    return lines
