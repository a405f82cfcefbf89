"""AlexNet, SqueezeNet 1.1, MobileNetV1 and MobileNetV2 side by side.

The reference experiment's model comparison: each net trained at batch 64
and LR 0.01 (SGD, momentum 0.9, LR x0.1 at half of training) on one split, to see which
fits and which overfits (on GHIM-20 SqueezeNet overfit at ~87% validation
accuracy; the MobileNets overfit on one split and fit well on another: compare
``--seed 0`` with ``--seed 1``, which draws another split). Each model is one
group; several ``--lrs`` or ``--seeds`` train together inside a group.

Run (2-core AMD EPYC CPU, built-in Fashion-MNIST; 14 min 09 s measured on a
fresh machine, of which training is 2 min 20 s: compiling the four nets for
their 3 seeds takes 4 min, MobileNetV2's unrolled step 3 of them, and
``auto`` compiles and times three strategies per net; a second run finds
them in the compilation and strategy caches)::

    python -m experiments.model_zoo_sweep --preset quick

The reference setup on GHIM-20 (one folder per class, 224 px, full-size nets)::

    python -m experiments.model_zoo_sweep --preset paper --dataset imagefolder \\
        --data-dir /path/to/GHIM-20 --image-size 224 \\
        --models alexnet,squeezenet1_1,mobilenet_v1,mobilenet_v2

What you should see: ``plots/model_comparison.png`` puts the models' train and
validation losses, validation accuracies and final train/val gaps side by
side; the nets with the most parameters per training image (AlexNet) open the
largest gap, the BatchNorm MobileNets train fastest per step. Measured
(quick: 2000 images, 6 epochs, 3 seeds; test accuracy, mean ± 95%
t-interval): MobileNetV2 74.8 ± 1.7, AlexNet 74.6 ± 3.0, MobileNetV1 72.7 ±
2.5, with the largest train-validation gap (8 points, against 2 for AlexNet),
and SqueezeNet 25.2 ± 27.3: one seed of three starts learning within 6
epochs at LR 0.01. Output as in ``alexnet_bs_sweep`` (members.csv has a
``model`` column).
"""

from jaxbatch.experiment import Experiment, derive

MODELS = ("alexnet_small", "squeezenet1_1", "mobilenet_v1", "mobilenet_v2")

# Narrow nets at Fashion-MNIST's 28 px, sized for a 2-core CPU.
QUICK = dict(
    models=MODELS,
    model_options=(
        ("alexnet_small", (("width", 0.25),)),
        ("mobilenet_v1", (("alpha", 0.5),)),
        ("mobilenet_v2", (("width_mult", 0.5),)),
    ),
    batch_sizes=(64,),
    lrs=(0.01,),
    seeds=(0, 1, 2),
    momentums=(0.9,),
    train_size=2000,
    val_size=1000,
    epochs=6,
    eval_every=25,
)
PRESETS = {
    "quick": QUICK,
    # The reference schedule: 100 epochs, 9000/1000, evaluation every 10 steps.
    "paper": derive(
        QUICK,
        model_options=(),
        model_kwargs=(("small_input", True),),
        seeds=(0,),
        train_size=9000,
        epochs=100,
        eval_every=10,
    ),  # fmt: skip
}

EXPERIMENT = Experiment(
    name="model_zoo_sweep",
    doc=__doc__,
    claim=(
        "At one recipe (batch 64, LR 0.01, step decay), AlexNet, SqueezeNet, "
        "MobileNetV1 and MobileNetV2 differ in how fast they fit and how much they "
        "overfit."
    ),
    quick_s=849,
    presets=PRESETS,
    headline=("model_comparison.png", "summary.png"),
)

if __name__ == "__main__":
    EXPERIMENT.main()
