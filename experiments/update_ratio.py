"""The update/weight ratio: where does the ~1e-3 rule of thumb sit?

Run (2-core AMD EPYC CPU, built-in Fashion-MNIST, 19 s measured)::

    python -m experiments.update_ratio --preset quick

What you should see: the CS231n notes suggest watching the ratio of the
update's norm to the weights' norm, ``||Δw|| / ||w||``, per layer, and say a
good LR gives "somewhere around 1e-3": much lower and the LR is too small,
much higher and it is too large. Here a 3x grid of LRs trains at once and
every member logs the ratio of every layer at every step. Measured (quick:
MLP 784-256-128-10, 5 epochs of 10,000 images, batch 64, SGD momentum 0.9,
constant LR; test accuracy, mean of 3 seeds; ratio: median of the last
epoch over all layers): LR 0.001 gives a ratio of 3.6e-4 and 77.8%, LR 0.003
1.0e-3 and 82.2%, 0.01 2.6e-3 and 82.7%, 0.03 5.1e-3 and the best 83.6%, 0.1
8.3e-3 and 79.2%; at 0.3 two seeds of three diverge and the third dies
(10%), LR 1 diverges in every seed. The rule of thumb is the right order of
magnitude but on the low side: the ratio of the best LR is ~5e-3 (per layer
about 5e-3 in the first, 4e-3 in the second and 1e-2 in the output layer),
and the LR with the 1e-3 ratio is 1.4 points behind. The ratio does what the
rule needs, though: it rises monotonically with the LR (about as LR^0.7
here), is stable after the first hundred steps, and a ratio above ~1e-2
warns of instability.

All LRs and seeds are one compiled group (the LR is per-member data); the
``update_ratio`` probe adds ``update_ratio`` and ``update_ratio/<layer>`` to
``history.csv`` (every step) and the median of the last epoch to
``members.csv``. SGD with momentum 0.9 and no schedule, so the ratio is
set by the LR alone. ``plots/update_ratio.png``: the ratio per layer against
steps, one colour per LR (mean over seeds, smoothed over 25 steps), the 1e-3
line dashed; and the final test accuracy of each LR against its median
ratio of the last epoch.
"""

import numpy as np

from jaxbatch import plots, results, stats
from jaxbatch.experiment import Experiment, derive

LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)

# MLP 784-256-128-10, 5 epochs of 10,000 images, batch 64.
QUICK = dict(
    model="mlp",
    model_kwargs=(("hidden", (256, 128)),),
    batch_sizes=(64,),
    lrs=LRS,
    momentums=(0.9,),
    schedule="constant",
    seeds=(0, 1, 2),
    probes=("update_ratio",),
    probe_every=1,  # this experiment is about the probe: every step
    strategy="vmap",
    train_size=10000,
    val_size=2000,
    epochs=5,
    eval_every=10**6,
)
PRESETS = {
    "quick": QUICK,
    # A convolutional net on the whole training split.
    "paper": derive(
        QUICK,
        model="simple_cnn",
        model_kwargs=(),
        strategy="auto",
        train_size=None,
        val_size=6000,
        epochs=20,
    ),  # fmt: skip
}


def layer_ratios(out) -> list[str]:
    """The per-layer update-ratio columns of a run's history."""
    return [c for c in results.read_history(out) if c.startswith("update_ratio/")]


RULE = [(1e-3, "the 1e-3 rule of thumb")]
FIGURES = {
    "update_ratio.png": lambda out: plots.facet(
        out, x="step", y=layer_ratios(out), lines="lr", logy=True, smooth=5,
        hlines=RULE, title="||Δw|| / ||w|| per layer over training",
    ),
    "accuracy_vs_ratio.png": lambda out: plots.facet(
        out, x="update_ratio", y="test_acc", lines="lr", logx=True, vlines=RULE,
        title="Test accuracy against the median update ratio of the last epoch",
    ),
}  # fmt: skip


def verdict(out):
    """The update/weight ratio of the best LR and of the LR nearest 1e-3."""
    m = results.read_members(out, healthy=True)
    rows = []
    for lr in sorted(set(m["lr"])):
        sel = m["lr"] == lr
        rows.append((lr, np.nanmean(m["update_ratio"][sel]),
                     *stats.seed_stats(m["test_acc"][sel])[:2]))  # fmt: skip
    best = max(rows, key=lambda r: r[2])
    near = min(rows, key=lambda r: abs(np.log(r[1] / 1e-3)))
    text = lambda r: (  # noqa: E731
        f"LR {r[0]:g}: update/weight ratio {r[1]:.1e}, test accuracy "
        f"{100 * r[2]:.1f} ± {100 * r[3]:.1f}"
    )
    return [
        f"Best {text(best)}; the ratio nearest 1e-3 is at {text(near)} "
        f"({100 * (best[2] - near[2]):.1f} points behind).",
    ]


EXPERIMENT = Experiment(
    name="update_ratio",
    doc=__doc__,
    claim=("A good learning rate makes each update about 1e-3 of the weights' norm."),
    quick_s=19,
    presets=PRESETS,
    headline=("update_ratio.png",),
    figures=FIGURES,
    verdict=verdict,
)

if __name__ == "__main__":
    EXPERIMENT.main()
