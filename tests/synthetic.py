"""A results directory written without training: many arms, several seeds,
one diverged member, for the figure and report tests."""

from __future__ import annotations

import os

import numpy as np

from jaxbatch import results, sweep


def write_run(out: str, lrs, batch_sizes=(32, 256), seeds=(0, 1, 2), *,
              n_train: int = 2048, epochs: int = 4, diverge: int | None = 0,
              eval_every: int = 8, tag=None) -> str:  # fmt: skip
    """Members ``batch_sizes x lrs x seeds`` with smooth, seeded curves;
    member ``diverge`` (if not None) blows up to a loss of 1e24 half-way
    through its run and is marked diverged. ``tag``: ``(name, fn(batch
    size, lr) -> value)``, a tag column (and ``lr`` becomes ``fn``'s LR when
    it returns ``(value, lr)``). Returns ``out``."""
    rng = np.random.default_rng(0)
    os.makedirs(out, exist_ok=True)
    members, history, m = [], [], 0
    for b in batch_sizes:
        spe = n_train // b
        steps = np.arange(1, spe * epochs + 1)
        for lr0 in lrs:
            arm = tag[1](b, lr0) if tag else None
            arm, lr = arm if isinstance(arm, tuple) else (arm, lr0)
            for s in seeds:
                rate = 3.0 * lr * (32 / b) ** 0.5
                loss = 0.3 + 2.0 * np.exp(-rate * steps / spe)
                loss = loss * (1 + 0.05 * rng.standard_normal(len(steps)))
                acc = 1 - loss / 2.6
                gone = m == diverge
                if gone:
                    cut = len(steps) // 2
                    loss[cut - 3 : cut] = [1e3, 1e12, 1e24]
                    loss[cut:] = acc[cut - 3 :] = np.nan
                for t, step in enumerate(steps):
                    evaluated = step % eval_every == 0 or step == steps[-1]
                    history.append({
                        "member": m, "step": int(step),
                        "epoch": int((step - 1) // spe + 1),
                        "batch_size": b, "examples_seen": int(step * b),
                        "lr": lr, "train_loss": loss[t], "train_acc": acc[t],
                        "val_loss": loss[t] + 0.05 if evaluated else None,
                        "val_acc": acc[t] - 0.02 if evaluated else None,
                    })  # fmt: skip
                final = float("nan") if gone else float(acc[-1] - 0.02)
                members.append({
                    **({tag[0]: arm} if tag else {}),
                    "member": m, "group": batch_sizes.index(b), "model": "mlp",
                    "batch_size": b, "lr": lr, "momentum": 0.9, "weight_decay": 0.0,
                    "seed": s, "final_val_acc": final, "best_val_acc": final,
                    "test_acc": final - 0.01, "test_loss": 0.4, "gap_loss": 0.05,
                    "gap_acc": 0.02, "train_eval_acc": final + 0.02,
                    "final_val_loss": 0.4, "diverged": gone, "stopped": False,
                    "steps": len(steps), "wall_s": 1.0,
                })  # fmt: skip
                m += 1
    cols = ("member", "group", "model", *([tag[0]] if tag else []), "batch_size",
            "lr", "momentum", "weight_decay", "seed", "final_val_acc", "best_val_acc",
            "test_acc", "test_loss", "gap_loss", "gap_acc", "train_eval_acc",
            "final_val_loss", "diverged", "stopped", "steps", "wall_s")  # fmt: skip
    results.write_csv(os.path.join(out, "members.csv"), cols, members)
    results.write_csv(os.path.join(out, "history.csv"), sweep.HISTORY_COLUMNS, history)
    results.write_json(os.path.join(out, "config.json"), {
        "config": {"experiment": "synthetic"},
        "data": {"name": "synthetic", "n_train": n_train, "n_val": 512, "n_test": 512},
    })  # fmt: skip
    return out
