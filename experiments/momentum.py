"""Momentum at a fixed LR and at a fixed effective LR ``lr / (1 - m)``.

Run (2-core CPU, built-in Fashion-MNIST, 43 s measured)::

    python -m experiments.momentum --preset quick

The claims (the CS231n notes; Smith et al. 2018): momentum carries training
past poor regions, so at a fixed LR a larger momentum makes faster early
progress; and what matters is the effective LR ``lr / (1 - m)`` (the noise
scale goes as ``lr / (B (1 - m))``), so at a fixed effective LR momentum 0,
0.5, 0.9 and 0.99 come close. Two forms, every member in one compiled
program (momentum and LR are data), each over the same seeds:

* ``fixed_lr``: LR 0.01 with momentum 0, 0.5, 0.9, 0.99;
* ``fixed_effective_lr``: ``lr = 0.1 x (1 - m)`` (0.1, 0.05, 0.01, 0.001),
  effective LR 0.1; its momentum-0.9 member is the ``fixed_lr`` one (one
  training, listed in both forms).

SGD, cosine LR decay, MLP 784-256-10, 4096 images, batch 64, 10 epochs,
evaluated every quarter epoch. ``plots/momentum_test_accuracy.png``: test
accuracy against momentum, one line per form; ``plots/momentum_early.png``:
validation accuracy against epochs, a panel per form.

What you should see (quick, 3 seeds, 43 s on a 2-core Xeon): both claims
hold. At LR 0.01 momentum speeds progress: validation accuracy after one
epoch 68.9% (m=0), 72.8 (0.5), 76.6 (0.9), 71.3 (0.99: its velocity takes
~100 steps to build up), and test accuracy 77.1 ± 0.8, 80.0 ± 0.8, 83.2 ±
0.1, 83.2 ± 0.8% (a spread of 6.1 points). At a fixed effective LR of 0.1
the four come within 1.0 point: 83.4 ± 0.3, 83.4 ± 0.2, 83.2 ± 0.1, 82.4 ±
0.3%, m=0.99 the one behind (LR 0.001 with a 100-step memory lags early,
right panel).
"""

from __future__ import annotations

import numpy as np

from jaxbatch import recipes, results, stats
from jaxbatch.experiment import Experiment
from jaxbatch.plots import folklore
from jaxbatch.plots.style import pct

MOMENTA = (0.0, 0.5, 0.9, 0.99)
LR, EFFECTIVE = 0.01, 0.1


def members():
    M = recipes.Member
    out = []
    for m in MOMENTA:
        arm = f"m={m:g}, lr={LR:g}"
        out.append(M(lr=LR, momentum=m, tags={"form": "fixed_lr", "arm": arm}))
    for m in MOMENTA:
        lr = recipes.round_draw(EFFECTIVE * (1 - m))
        arm = f"m={m:g}, lr={lr:g} (eff. {EFFECTIVE:g})"
        out.append(M(lr=lr, momentum=m, tags={"form": "fixed_effective_lr",
                                              "arm": arm}))  # fmt: skip
    return out


PRESETS = {
    "quick": dict(
        model="mlp",
        model_kwargs=(("hidden", (256,)),),
        recipes=members(),
        batch_sizes=(64,),
        schedule="cosine",
        seeds=(0, 1, 2),
        train_size=4096,
        val_size=2000,
        epochs=10,
        eval_every_epochs=0.25,
    ),
    "paper": dict(
        model="simple_cnn",
        model_kwargs=(),
        recipes=members(),
        batch_sizes=(128,),
        schedule="cosine",
        seeds=(0, 1, 2, 3, 4),
        train_size=None,
        val_size=10000,
        epochs=30,
        eval_every_epochs=0.25,
    ),
}


def _early(out):
    """``{(form, momentum): [val_acc after 1 epoch per seed]}``."""
    m, h = results.read_members(out), results.read_history(out)
    n_train = results.read_json(f"{out}/config.json")["data"]["n_train"]
    at = {}
    ep = h["examples_seen"] / n_train
    for i, member in enumerate(m["member"].astype(int)):
        src = m["shares_training_of"][i] if "shares_training_of" in m else ""
        src = int(float(src)) if str(src) not in ("", "nan") else member
        rows = (
            (h["member"] == src) & np.isfinite(h["val_acc"]) & (np.abs(ep - 1) < 1e-6)
        )
        key = (str(m["form"][i]), float(m["momentum"][i]))
        at.setdefault(key, []).extend(h["val_acc"][rows].tolist())
    return at


def verdict(out):
    m = results.read_members(out)
    lines = []
    early = _early(out)
    parts = [f"m={mom:g} {pct(np.mean(v))}%" for (form, mom), v in early.items()
             if form == "fixed_lr"]  # fmt: skip
    lines.append(f"Validation accuracy after 1 epoch at LR {LR:g}: " + ", ".join(parts)
                 + ".")  # fmt: skip
    for form in ("fixed_lr", "fixed_effective_lr"):
        sel = m["form"].astype(str) == form
        cells = []
        means = []
        for mom in MOMENTA:
            rows = sel & (m["momentum"].astype(float) == mom)
            mean, half, _ = stats.seed_stats(m["test_acc"][rows].astype(float))
            means.append(mean)
            cells.append(f"m={mom:g} {pct(mean)} ± {pct(half)}%")
        spread = 100 * (np.nanmax(means) - np.nanmin(means))
        lines.append(f"Test accuracy at {form.replace('_', ' ')}: " + ", ".join(cells)
                     + f" (spread {spread:.1f} points).")  # fmt: skip
    return lines


FIGURES = {
    "momentum_test_accuracy.png": lambda out: folklore.metric_vs(
        out,
        "momentum",
        "form",
        "test_acc",
        log_one_minus=True,
        xlabel="momentum (axis: 1 - momentum, log)",
    ),  # fmt: skip
    "momentum_early.png": lambda out: folklore.curves_by(out, "form", "arm", "val_acc"),
}

EXPERIMENT = Experiment(
    name="momentum",
    doc=__doc__,
    claim=(
        "Momentum speeds early progress at a fixed LR; at a fixed effective LR "
        "lr/(1-m) momentum 0 to 0.99 come close (Smith et al. 2018)."
    ),
    quick_s=43,
    presets=PRESETS,
    headline=("momentum_test_accuracy.png", "momentum_early.png"),
    figures=FIGURES,
    verdict=verdict,
)

if __name__ == "__main__":
    EXPERIMENT.main()
