"""Weight decay: L2 vs decoupled under SGD and Adam, L1 vs L2, weight norms.

Run (2-core AMD EPYC CPU, built-in Fashion-MNIST, 1 min 24 s measured)::

    python -m experiments.weight_decay --preset quick

What you should see (quick: MLP 784-128-10, 4000 training images, 10
epochs, batch 128, cosine LR, SGD momentum 0.9; test accuracy, mean of 3
seeds ± 95% interval):

- (a) Modest decay changes nothing measurable in this budget: up to 1e-2
  (SGD + L2), 1e-1 (SGDW), 1e-3 (Adam + L2) and 1 (AdamW) every cell is
  within the seed noise of no decay (SGD LR 0.1: 84.0 ± 0.2 without, 84.1 ±
  0.6 at 1e-3; Adam LR 0.01: 84.4 ± 0.6 without, 84.5 ± 0.7 at 1e-3). Too
  much coupled decay costs the same at every LR (SGD + L2 at 0.1: 78.8-79.4%
  at all four LRs; Adam + L2 at 1: 46-65%), while AdamW stays within 0.2
  points of no decay even at 1. Decay helps only where SGD is unstable: at
  LR 0.3 (75.2 ± 4.9 without) L2 1e-2 gives 82.9 ± 0.7 and SGDW 1e-1 gives
  82.9 ± 0.8. With momentum 0.9 SGDW needs a 10x (1 / (1 - momentum)) larger
  coefficient for the same effect: L2 1e-2 and SGDW 1e-1 end with the same
  weight norm (6.1 vs 6.0) and accuracy (84.0 vs 84.3).
- "base_lr and weight_decay two to three orders of magnitude apart": not
  supported as a rule. Every cell with LR/WD in 10^2..10^3 is within noise
  of no decay (harmless, but not where a best lies), and where decay does
  change accuracy it does so at a fixed decay, not at a fixed ratio: the
  SGD + L2 drop at WD 0.1 appears at every LR from 0.01 to 0.3 (ratios 0.1
  to 3), Adam + L2 degrades from WD 1e-2 at every LR (so the curves of
  ``wd_ratio.png`` do not line up on the ratio axis), and the one LR that
  needs decay (SGD 0.3) is best at ratio 30 (L2) or 3 (SGDW).
- (b) L1 at 1e-4 puts 23 ± 2% of the weights below |w| = 1e-3 at no cost
  (84.1 ± 0.2; no decay: 2.1%, 84.0 ± 0.2), L1 at 1e-3 90 ± 4% at 83.1 ±
  1.0; L2 reaches 43 ± 14% only at 0.1, where accuracy falls to 79.2 ± 0.2.
- (c) Final weight norm: SGD LR 0.1 14.1 without decay, 6.1 (L2 1e-2), 2.6
  (L2 1e-1), 6.0 (SGDW 1e-1), 5.9 (L1 1e-3); Adam LR 0.01 23.4 without, 5.4
  (L2 1e-2), 0.9 (L2 1), 11.3 (AdamW 1).

Ten epochs on 4000 images is short for decay to act as a regulariser; the
paper preset (all 54,000 images, 30 epochs, 6 LRs x 7 decays; not run here,
hours on a CPU) is the test of the long-training claim.

The claims tested: (a) weight decay added to the gradient (``l2``) and
weight decay applied to the weights outside the optimizer (``decoupled``:
SGDW, AdamW; Loshchilov & Hutter 2019) are the same for plain SGD but not
with momentum or Adam, where AdamW is said to generalise better and to make
the best weight decay independent of the LR; and the folklore that "base_lr
and weight_decay are two to three orders of magnitude apart" (e.g. Caffe's
0.01 and 5e-4). ``plots/wd_heatmaps.png``: test accuracy on the LR x decay
grid, one panel per (optimizer, mode), both axes logarithmic, the lines
LR/WD = 10^2 and 10^3 drawn, the best cell boxed; ``plots/wd_ratio.png``
the same numbers against LR/WD, one line per LR (if the folklore held, the
lines would peak together between 10^2 and 10^3). (b) L1 decay drives
weights to zero where L2 only shrinks them: ``plots/wd_sparsity.png`` the
fraction of weights with ``|w| < 1e-3`` against test accuracy (SGD at one
LR), read from every member's saved final weights. (c)
``plots/wd_norms.png`` the final weight norm against the decay per mode
(only final weights are saved, so no norm over training).

Every member of one optimizer family trains in one compiled program (SGD
with its L1 members, Adam/AdamW): the mode and coefficient are per-member
data. ``weight_decay=0`` trains once per LR and seed (an ``l2`` and a
``decoupled`` member would be twins) and is the bottom row of both panels.
``members.csv``: ``optimizer``, ``weight_decay``, ``weight_decay_mode`` and
the tag ``part`` (``grid`` or ``l1``). Decoupled decay is PyTorch's: the
weights shrink by ``lr(t) * wd`` per step.
"""

import numpy as np

from jaxbatch import plots, recipes, results, stats
from jaxbatch.experiment import Experiment


def wd_members(sgd_lrs, sgd_wds, adam_lrs, adam_wds, l1_lr, l1_wds):
    """The LR x WD grid of both modes per optimizer (``weight_decay=0`` once
    per LR), and L1 members under SGD at ``l1_lr``; each is crossed with
    --seeds (and --batch-sizes, --momentums) by the sweep."""
    out = []
    for opt, lrs, wds in (("sgd", sgd_lrs, sgd_wds), ("adam", adam_lrs, adam_wds)):
        none = recipes.grid(optimizer=opt, lr=lrs, weight_decay=0.0)
        decayed = recipes.grid(
            optimizer=opt,
            lr=lrs,
            weight_decay=wds,
            weight_decay_mode=("l2", "decoupled"),
        )
        out += [m.with_tags(part="grid") for m in none + decayed]
    l1 = recipes.grid(
        optimizer="sgd",
        lr=l1_lr,
        weight_decay=l1_wds,
        weight_decay_mode="l1",
    )
    return out + [m.with_tags(part="l1") for m in l1]


COMMON = dict(
    model="mlp",
    batch_sizes=(128,),
    momentums=(0.9,),
    schedule="cosine",
    strategy="vmap",
    probes=("weights",),  # the final weights' norm and share near zero
)

PRESETS = {
    # LRs half a decade apart, decays a decade apart; 10 epochs of 4000 images.
    "quick": dict(
        **COMMON,
        model_kwargs=(("hidden", (128,)),),
        recipes=wd_members(
            sgd_lrs=(0.01, 0.03, 0.1, 0.3),
            sgd_wds=(1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
            adam_lrs=(3e-4, 1e-3, 3e-3, 1e-2),
            adam_wds=(1e-4, 1e-3, 1e-2, 1e-1, 1.0),
            l1_lr=0.1,
            l1_wds=(1e-5, 1e-4, 1e-3),
        ),
        seeds=(0, 1, 2),
        train_size=4000,
        val_size=1000,
        epochs=10,
        eval_every=10**6,  # only at the end of every epoch
    ),
    # All 54,000 training images for 30 epochs, a wider net, wider grids.
    "paper": dict(
        **COMMON,
        model_kwargs=(("hidden", (256,)),),
        recipes=wd_members(
            sgd_lrs=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
            sgd_wds=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
            adam_lrs=(3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
            adam_wds=(1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0),
            l1_lr=0.1,
            l1_wds=(1e-6, 1e-5, 1e-4, 1e-3),
        ),
        seeds=(0, 1, 2),
        val_size=6000,
        epochs=30,
        eval_every=10**6,
    ),
}

MODES = ("optimizer", "weight_decay_mode")  # a panel per (optimizer, mode)
# the members without decay (mode l2) belong to the panel of every mode
NO_DECAY = ({"weight_decay": 0.0}, ("weight_decay_mode",))
GRID = {"part": "grid"}


def l1_lr(out) -> float:
    """The SGD LR the L1 members train at (the L2 members at it compare)."""
    m = results.read_members(out)
    return float(m["lr"][np.asarray(m["weight_decay_mode"]).astype(str) == "l1"][0])


def lr_over_wd(m):
    wd = m["weight_decay"]
    return np.where(wd > 0, m["lr"] / np.where(wd > 0, wd, 1.0), np.inf)


FIGURES = {
    "wd_heatmaps.png": lambda out: plots.heatmap(
        out, ("weight_decay", "lr"), panels=MODES, where=GRID, copy_to_panels=NO_DECAY,
        ratio_lines=(2, 3), span=0.1,
    ),
    "wd_ratio.png": lambda out: plots.facet(
        out, x="lr_over_wd", y="test_acc", panels=MODES, lines="lr", where=GRID,
        derive={"lr_over_wd": lr_over_wd}, copy_to_panels=NO_DECAY,
        baseline={"weight_decay": 0.0}, vspan=(1e2, 1e3, "LR/WD in [10², 10³]"),
        title="Does the best weight decay sit 2-3 decades below the LR?",
    ),
    "wd_sparsity.png": lambda out: plots.facet(
        out, x="near_zero_frac", y="test_acc", lines="weight_decay_mode",
        where={"optimizer": "sgd", "lr": l1_lr(out)}, annotate="weight_decay",
        title=f"L1 vs L2: sparsity and accuracy (SGD, LR {l1_lr(out):g})",
    ),
    "wd_norms.png": lambda out: plots.facet(
        out, x="weight_decay", y="weight_norm", panels=MODES, lines="lr",
        copy_to_panels=NO_DECAY, logy=True, title="Final weight norm against decay",
    ),
}  # fmt: skip


def verdict(out):
    """Per optimizer: the best cell of the LR x WD grid for each decay mode
    (and without decay), test accuracy mean ± 95% t-interval over seeds."""
    m = results.read_members(out)
    grid = {k: v[m["part"].astype(str) == "grid"] for k, v in m.items()}
    lines = []
    for opt in dict.fromkeys(grid["optimizer"].astype(str)):
        parts = []
        for mode in ("none", "l2", "decoupled"):
            sel = grid["optimizer"].astype(str) == opt
            if mode == "none":
                sel &= grid["weight_decay"] == 0
            else:
                sel &= (grid["weight_decay"] > 0) & (
                    grid["weight_decay_mode"].astype(str) == mode
                )
            rows = [r for r in stats.arm_rows({k: v[sel] for k, v in grid.items()})
                    if r.get("test_acc") == r.get("test_acc")]  # fmt: skip
            if not rows:
                continue
            best = max(rows, key=lambda r: r["test_acc"])
            where = f"LR {best['lr']:g}" + (
                "" if mode == "none" else f", WD {best['weight_decay']:g}"
            )
            name = "no decay" if mode == "none" else mode
            parts.append(
                f"{name} {100 * best['test_acc']:.1f} ± "
                f"{100 * best['test_acc_ci']:.1f} ({where})"
            )
        lines.append(f"{opt}, best cell per mode: " + "; ".join(parts) + ".")
    return lines


EXPERIMENT = Experiment(
    name="weight_decay",
    doc=__doc__,
    claim=(
        "L2 regularization and decoupled weight decay are the same under SGD but not "
        "under Adam (Loshchilov and Hutter, 2019), and the LR/WD ratio is what "
        "matters."
    ),
    quick_s=84,
    presets=PRESETS,
    headline=("wd_heatmaps.png", "wd_ratio.png"),
    figures=FIGURES,
    verdict=verdict,
)

if __name__ == "__main__":
    EXPERIMENT.main()
