"""Small batches: the range of stable learning rates narrows as the batch grows.

Run (2-core AMD EPYC CPU, built-in Fashion-MNIST, 3 min 28 s measured)::

    python -m experiments.small_batch --preset quick

What you should see: Masters & Luschi ("Revisiting Small Batch Training for
Deep Neural Networks", 2018; "friends don't let friends use minibatches
larger than 32") scale the LR with the batch so that the update per example
is fixed, ``η = m η̃``, and sweep the base LR ``η̃``: the best accuracy is
reached at small batches (2-32), and the range of ``η̃`` that trains well
shrinks as ``m`` grows, because a k times larger batch at the same ``η̃``
takes k times larger, fewer steps. Measured (quick: MLP 784-256-10, plain
SGD, 3 epochs of 10,000 images; test accuracy, mean of 2 seeds): the best
accuracy is 83.5% at batch 2, 83.4 at 8, 82.1 at 32, 78.3 at 128 and 79.3 at
512, and the range of base LRs within 2 points of each batch size's best
spans 16x (4 doublings, 2^-11 .. 2^-7) at batch 2 to 32, 8x at 128 and 2x at
512, where every base LR above 2^-10 collapses (LR 0.5 and up). Both halves
of the claim hold here; at a fixed epoch budget part of the large batches'
loss is their few updates (60 at batch 512).

Each batch size is one compiled group; its base LRs (``η̃`` from 2^-13 to
2^-5, every factor of 2) and 2 seeds train together, with plain SGD (no
momentum, as in the paper), 3 epochs of 10,000 images for every batch size.
``members.csv`` has the tag ``eta`` (``η̃``) and ``lr = batch_size x eta``.
``plots/small_batch.png``: test accuracy against ``η̃``, one line per batch
size (colour: batch size), and the best test accuracy and the width of the
range of ``η̃`` within 2 points of it, against batch size.
"""

import numpy as np

from jaxbatch import plots, recipes, results, stats
from jaxbatch.experiment import Experiment

SIZES = (2, 8, 32, 128, 512)
ETAS = tuple(2.0**-k for k in range(13, 4, -1))


def small_batch_members(sizes, etas):
    """One member per (batch size, base LR); LR = batch size x base LR (the
    sweep crosses each with --seeds)."""
    return [
        recipes.Member(batch_size=m, lr=m * eta).with_tags(eta=eta)
        for m in sizes
        for eta in etas
    ]


def built(etas):
    """The members of the batch sizes given (--batch-sizes), at ``etas``."""
    return lambda values: small_batch_members(values["batch_sizes"], etas)


PRESETS = {
    "quick": dict(
        model="mlp",
        model_kwargs=(("hidden", (256,)),),
        recipes=built(ETAS),
        batch_sizes=SIZES,
        seeds=(0, 1),
        momentums=(0.0,),
        schedule="constant",
        strategy="vmap",
        train_size=10000,
        val_size=2000,
        epochs=3,
        eval_every=10**6,
    ),
    "paper": dict(
        model="simple_cnn",
        recipes=built(tuple(2.0**-k for k in range(14, 3, -1))),
        batch_sizes=(2, 4, 8, 16, 32, 64, 128, 256, 512),
        seeds=(0, 1, 2),
        momentums=(0.0,),
        schedule="constant",
        val_size=6000,
        epochs=20,
        eval_every=10**6,
    ),
}

FIGURES = {
    "small_batch.png": lambda out: plots.facet(
        out, x="eta", y="test_acc", lines="batch_size", logx=True,
        title="Test accuracy against the base LR η̃ = LR / batch size",
    ),
}  # fmt: skip


def verdict(out, within: float = 0.02):
    """Per batch size: the best test accuracy over the base LRs (mean of
    seeds) and how wide the range of base LRs within 2 points of it is."""
    m = results.read_members(out, healthy=True)
    parts = []
    for b in sorted(set(m["batch_size"])):
        etas = sorted(set(m["eta"][m["batch_size"] == b]))
        means = np.array([
            stats.seed_stats(m["test_acc"][(m["batch_size"] == b) & (m["eta"] == e)])[0]
            for e in etas
        ])  # fmt: skip
        means = np.nan_to_num(means, nan=0.0)
        good = np.asarray(etas)[means >= means.max() - within]
        width = good.max() / good.min()
        parts.append(f"batch {b:g}: {100 * means.max():.1f}% (range {width:.0f}x)")
    return [
        "Best test accuracy over the base LR, and the width of the base-LR range "
        "within 2 points of it: " + "; ".join(parts) + "."
    ]


EXPERIMENT = Experiment(
    name="small_batch",
    doc=__doc__,
    claim=(
        "Small batches (2-32) train best and tolerate the widest range of learning "
        "rates (Masters and Luschi, 2018)."
    ),
    quick_s=208,
    presets=PRESETS,
    headline=("small_batch.png",),
    figures=FIGURES,
    verdict=verdict,
)

if __name__ == "__main__":
    EXPERIMENT.main()
