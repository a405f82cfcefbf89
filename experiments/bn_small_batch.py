"""BatchNorm at tiny batches: a CNN with and without BatchNorm, batch 2 to 256.

Run (2-core AMD EPYC CPU, built-in Fashion-MNIST, 81 s measured)::

    python -m experiments.bn_small_batch --preset quick

What you should see: the mission's claim is that BatchNorm "can't use too
small a batch: the mean and variance are off". Each training step normalises
with the statistics of its own batch, which at 2 or 4 images are mostly
noise, and the evaluation normalises with running averages of those noisy
statistics, so the network that is evaluated is not the one that was
trained. Ioffe (2017) and Wu & He (2018, "Group Normalization") show the
accuracy of BatchNorm nets falling below a batch of ~8-16 while the same net
without normalisation does not. Measured (quick, width-0.5 CNN, test
accuracy, mean of 3 seeds): not here. With BatchNorm the net reaches 81.4%
at batch 2, 82.0 at 4, 81.7 at 8, 82.0 at 16 and 81.7 at 64; without it
79.4, 78.6, 77.0, 77.7 and 78.6: BatchNorm helps by 2-5 points at every batch
size, batch 2 included, and the evaluated network (running statistics)
matches the trained one (train-test gap 2.6 points at batch 2, 1.7 at 64).
Both fall at batch 256 (73.6 and 69.4), where 2 epochs are only 32 updates.
The claim belongs to larger nets, larger images and per-device batches of
ImageNet training; for a small CNN on 28x28 images, batch statistics of 2
images are noisy but still good enough.

Each (model, batch size) is one compiled group; its 3 seeds train together.
Every batch size trains the same 2 epochs of 4000 images with SGD momentum
0.9 and the LR scaled linearly from 0.02 at batch 64 (0.000625 at batch 2),
so that the update per example is the same at every batch size and a plain
network is as stable at batch 2 as at 64: what changes with the batch is
then the normalisation alone. ``members.csv``'s ``model`` is ``simple_cnn``
or ``simple_cnn_bn`` (the same net with a BatchNorm after each convolution);
``plots/bn_small_batch.png``: test accuracy against batch
size for both models (mean of 3 seeds, band: 95% interval), and the train
(eval mode) minus test gap.
"""

import numpy as np

from jaxbatch import plots, results, stats
from jaxbatch.experiment import Experiment, derive

SIZES = (2, 4, 8, 16, 64, 256)

QUICK = dict(
    models=("simple_cnn", "simple_cnn_bn"),
    model_kwargs=(("width", 0.5),),
    batch_sizes=SIZES,
    lrs=(0.02,),
    lr_scaling="linear",
    base_batch_size=64,
    momentums=(0.9,),
    schedule="constant",
    seeds=(0, 1, 2),
    train_size=4000,
    val_size=1000,
    epochs=2,
    eval_every=10**6,
)
PRESETS = {
    "quick": QUICK,
    # Full-width nets on the whole training split, from batch 2 to 256.
    "paper": derive(
        QUICK,
        model_kwargs=(),
        batch_sizes=(2, 4, 8, 16, 32, 64, 128, 256),
        train_size=None,
        val_size=6000,
        epochs=10,
    ),  # fmt: skip
}

FIGURES = {
    "bn_small_batch.png": lambda out: plots.facet(
        out, x="batch_size", y=("test_acc", "train_minus_test"), lines="model",
        derive={"train_minus_test": lambda m: m["train_eval_acc"] - m["test_acc"]},
        logx=True, title="BatchNorm at small batches (same epochs)",
    ),
}  # fmt: skip


def verdict(out):
    """BatchNorm minus no BatchNorm, test accuracy, at every batch size."""
    m = results.read_members(out, healthy=True)
    parts = []
    for b in sorted(set(m["batch_size"])):
        at = m["batch_size"] == b
        d, half = stats.difference(
            m["test_acc"][at & (m["model"] == "simple_cnn_bn")],
            m["test_acc"][at & (m["model"] == "simple_cnn")],
        )
        if np.isfinite(d):
            parts.append(f"{100 * d:+.1f} ± {100 * half:.1f} at batch {b:g}")
    return [
        "BatchNorm minus no BatchNorm, test accuracy points (Welch 95%): "
        + ", ".join(parts)
        + "."
    ]


EXPERIMENT = Experiment(
    name="bn_small_batch",
    doc=__doc__,
    claim=(
        "BatchNorm breaks down at tiny batches (2-8 images), where a net without it "
        "does better."
    ),
    quick_s=273,
    presets=PRESETS,
    headline=("bn_small_batch.png",),
    figures=FIGURES,
    verdict=verdict,
)

if __name__ == "__main__":
    EXPERIMENT.main()
