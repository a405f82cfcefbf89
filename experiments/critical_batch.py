"""The critical batch size: steps to a target against batch size, and the
gradient noise scale that predicts the bend.

Run (2-core AMD EPYC CPU, built-in Fashion-MNIST, 3 min 21 s measured)::

    python -m experiments.critical_batch --preset quick

What you should see: Shallue et al. ("Measuring the Effects of Data
Parallelism on Neural Network Training", 2018) find three regimes when each
batch size gets its own best LR: perfect scaling (doubling the batch halves
the steps to a target), diminishing returns, and a plateau where more
parallelism buys nothing. McCandlish et al. ("An Empirical Model of
Large-Batch Training", 2018) fit ``S(B) = S_min (1 + B_crit / B)`` and
predict ``B_crit`` by the simple noise scale ``B_simple = tr(Σ) / |G|²``,
measured during training. Measured (quick: MLP 784-128-10, 5000 images,
target 82% validation accuracy, mean of 3 seeds at the best of 5 LRs): 573
steps at batch 16 (LR 0.01), 206 at 64 (0.03), 80 at 256 (0.1) and 47 at
1024 (0.1): the first 4x of batch cuts the steps 2.8x, the next two 2.6x and
1.7x (diminishing returns); in examples, 9.2k at batch 16 and 48k at 1024.
The fit gives S_min = 40 steps and B_crit = 234; the measured noise scale at
the target, B_simple = 59, is 4x smaller: the right order of magnitude, no
closer (B_simple equals the critical batch only when the Hessian is a
multiple of the identity; McCandlish et al. use it as an estimate). (Two
seeds gave 660, 190, 90, 45 steps, B_crit 269, B_simple 60.) The bend lies
between batch 64 and 256.

Each batch size is one compiled group; its LRs (a 3x grid, SGD momentum 0.9)
and 3 seeds train together for 40 epochs of 5000 images, evaluated every 20
steps and at the end of every epoch on 1000 held-out images. A batch size's
steps to the target are those of its best LR (mean over seeds; an LR counts
only if every seed reached the target). The ``noise_scale`` probe estimates
``|G|²`` and ``tr(Σ)`` at every 5th evaluation from 1024 training images in
16 parts.
``critical_batch.json``: steps to target, best LR per batch size, the fitted
``S_min`` and ``B_crit``, and ``B_simple`` at the target (median over the
best-LR members). ``plots/critical_batch.png``: steps and examples to the
target against batch size, with perfect scaling, the fit, ``B_crit`` and
``B_simple``.
"""

import os

from jaxbatch import critical, results
from jaxbatch.experiment import Experiment, derive
from jaxbatch.plots import special

TARGET = 0.82

QUICK = dict(
    model="mlp",
    model_kwargs=(("hidden", (128,)),),
    batch_sizes=(16, 64, 256, 1024),
    lrs=(0.003, 0.01, 0.03, 0.1, 0.3),
    momentums=(0.9,),
    schedule="constant",
    seeds=(0, 1, 2),
    probes=("noise_scale",),
    probe_size=1024,
    noise_every=5,
    strategy="vmap",
    train_size=5000,
    val_size=1000,
    epochs=40,
    eval_every=20,
)
PRESETS = {
    "quick": QUICK,
    # A small CNN on the whole training split, batch 16 .. 4096.
    "paper": derive(
        QUICK,
        model="simple_cnn",
        model_kwargs=(),
        batch_sizes=(16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
        lrs=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
        strategy="auto",
        train_size=None,
        val_size=6000,
    ),  # fmt: skip
}

FIGURES = {"critical_batch.png": special.critical_batch}


def _sentence(report) -> str:
    steps = ", ".join(
        f"{s:.0f} at batch {b:g}" if s is not None else f"never at batch {b:g}"
        for b, s in zip(report["batch_sizes"], report["steps_to_target"])
    )
    return (
        f"Steps to {report['target_val_acc']:.0%} validation accuracy (best LR, "
        f"mean of seeds): {steps}; fitted S_min {report['s_min']:.0f} and B_crit "
        f"{report['b_crit_fitted']:.0f}, measured noise scale B_simple "
        f"{report['b_simple_measured']:.0f}."
    )


def analyse(out):
    print(_sentence(critical.analyse(out, TARGET)))


def verdict(out):
    """The report's verdict: the numbers of ``critical_batch.json``."""
    return [_sentence(results.read_json(os.path.join(out, "critical_batch.json")))]


EXPERIMENT = Experiment(
    name="critical_batch",
    doc=__doc__,
    claim=(
        "Past a critical batch size, doubling the batch no longer halves the steps to"
        " a target, and the gradient noise scale predicts where (McCandlish et al., "
        "2018)."
    ),
    quick_s=201,
    presets=PRESETS,
    headline=("critical_batch.png",),
    figures=FIGURES,
    verdict=verdict,
    analyse=analyse,
)

if __name__ == "__main__":
    EXPERIMENT.main()
