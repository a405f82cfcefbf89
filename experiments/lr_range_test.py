"""The LR range test, classic and as a grid of members trained at once.

Run (2-core AMD EPYC CPU, built-in Fashion-MNIST, 23 s measured)::

    python -m experiments.lr_range_test --preset quick

What you should see: Smith ("Cyclical Learning Rates", 2017) finds a good LR
from one short run whose LR rises exponentially (here from 1e-7 to 10):
the loss falls, flattens and explodes, and a good LR sits somewhat below the
minimum of the loss curve (fastai: "minimum / 10"). The classic form mixes
LR and training time (a loss that falls late may be the LR or the extra
steps). The grid form has no such confusion: every member trains the same
budget at its own fixed LR, all members at once, so the loss of its final
parameters depends on nothing but the LR. Measured (quick: MLP 784-256-10,
SGD momentum 0.9, batch 64, 2 epochs of 10,000 images for every run, 3
seeds): the grid's lowest final training loss is at LR 0.0316 (0.40) and its
best validation accuracy at 0.01; the classic run's smoothed loss (a centred
mean over 17 of its 314 steps) bottoms out at 0.034 (0.024-0.066 over
seeds), where the grid's loss does, so "minimum / 10" suggests 0.0034
(0.0024-0.0066), a third of the grid's best-accuracy LR; both forms see
divergence at 0.3-0.4 (classic 0.32-0.43, grid 0.316). (fastai's causal
beta=0.98 average lagged 49 steps, 1.2 decades of LR here: its minimum was at
0.17 and its divergence at 1.2.) The classic curve sits above the grid's
(0.64-0.71 vs 0.39 at its best): each of its losses was reached after fewer
steps at that LR, which is the confusion of LR and training time the grid
avoids.

Two sweeps run one after the other (``stages``): ``<out>/range``, the
rising-LR run (schedule kind ``range``, one member per seed), and
``<out>/grid``, one member per LR on a half-decade grid per seed, with a
constant LR and the same budget in examples. ``lr_range.json`` holds both
forms' ``suggested_lr`` and ``diverge_lr`` (the rules are in
``jaxbatch.lr_range``; the headline values are the grid's) and the grid's
best LR by validation accuracy. ``plots/lr_range.png``: loss against LR for
both forms (the classic run's raw loss faint, the smoothed one bold, its
minimum a dot), each suggestion and divergence marked.
"""

import os

from jaxbatch import lr_range, results
from jaxbatch.experiment import Experiment
from jaxbatch.plots import special

SEEDS = (0, 1, 2)

COMMON = dict(
    batch_sizes=(64,),
    seeds=SEEDS,
    momentums=(0.9,),
    strategy="vmap",
)

PRESETS = {
    # MLP 784-256-10, 2 epochs of 10,000 images at batch 64 (314 updates).
    "quick": dict(
        **COMMON,
        model="mlp",
        model_kwargs=(("hidden", (256,)),),
        train_size=10000,
        val_size=2000,
        epochs=2,
        eval_every=50,
    ),
    # The whole training split for 2 epochs; a convolutional net.
    "paper": dict(
        **COMMON,
        model="simple_cnn",
        val_size=6000,
        epochs=2,
        eval_every=200,
    ),
}
RANGE_MIN = 1e-7  # where the range test's LR starts; it rises to --lr-max (10)
GRID_MIN = 1e-5  # the grid's lowest LR; half-decades up to --lr-max


def stages(config_for, out, preset):
    top = config_for().lr_max  # --lr-max, the top of both forms
    if not top > GRID_MIN:
        raise ValueError(
            f"--lr-max {top:g}: the LR range test needs --lr-max above {GRID_MIN:g} "
            "(its grid's lowest LR); e.g. --lr-max 10"
        )
    yield (
        "range",
        config_for(recipes=lr_range.range_members(RANGE_MIN, None)),  # --lr-max
        None,
    )
    grid = lr_range.grid_members(lr_range.log_grid(GRID_MIN, top))
    yield "grid", config_for(recipes=grid), None


def analyse(out):
    summary = lr_range.analyse(
        os.path.join(out, "range"), os.path.join(out, "grid"), out
    )
    print(_sentence(summary))


def _sentence(summary) -> str:
    c, g = summary["classic"], summary["grid"]
    lr = lambda v: "never" if v is None else f"{v:.3g}"  # noqa: E731
    return (
        f"Suggested LR: classic range test {lr(c['suggested_lr'])} (loss minimum "
        f"at {lr(c['min_loss_lr'])}, diverges at {lr(c['diverge_lr'])}), grid "
        f"{lr(g['suggested_lr'])} (diverges at {lr(g['diverge_lr'])}); the grid's "
        f"best validation accuracy is at LR {lr(g['best_val_acc_lr'])}."
    )


def verdict(out):
    """The report's verdict: the suggestions of ``lr_range.json``."""
    return [_sentence(results.read_json(os.path.join(out, "lr_range.json")))]


FIGURES = {"lr_range.png": special.lr_range_test}


EXPERIMENT = Experiment(
    name="lr_range_test",
    doc=__doc__,
    claim=(
        "The LR range test (Smith, 2017) finds a good learning rate in one short run."
    ),
    quick_s=34,
    presets=PRESETS,
    headline=("lr_range.png",),
    figures=FIGURES,
    verdict=verdict,
    analyse=analyse,
    stages=stages,
)

if __name__ == "__main__":
    EXPERIMENT.main()
