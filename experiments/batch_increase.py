"""Don't decay the learning rate, increase the batch size (Smith et al., 2018).

Run (2-core AMD EPYC CPU, built-in Fashion-MNIST, 38 s measured)::

    python -m experiments.batch_increase --preset quick

What you should see: Smith, Kindermans, Ying and Le (ICLR 2018) argue that
SGD's noise scale grows with LR / batch size, so dividing the LR by a factor
and multiplying the batch size by the same factor are equivalent, and the
second needs fewer parameter updates. Three arms train from the same peak LR
and batch size: ``decay LR`` divides the LR by the factor at the milestone
epochs (batch fixed), ``increase batch`` keeps the LR and multiplies the batch
size instead, ``hybrid`` decays the LR at the first milestone and grows the
batch at the later ones. Measured (quick: MLP 784-256-10, 10,000 images, SGD
momentum 0.9, LR 0.05, batch 32, factor 5 at epochs 6 and 12 of 18; test
accuracy, mean of 5 seeds ± 95% interval): decay LR 84.9 ± 0.3 in 5634
updates, increase batch 85.0 ± 0.2 in 2334 updates (41%), hybrid 85.0 ± 0.3
in 4134. The claim holds here: the three arms end equal, their curves lie on
each other against epochs, and growing the batch takes 2.4 times fewer
updates (each of them larger, so on this CPU not 2.4 times less time).
``plots/batch_increase_curves.png`` shows validation accuracy and training
loss against epochs (the curves of the three arms should lie on each other)
and against parameter updates (the batch-increasing arm gets there in fewer
updates); ``plots/batch_increase_summary.png`` the final test accuracy per
arm (every seed, mean and 95% t-interval) beside the updates each arm took;
``plots/batch_increase_schedules.png`` the LR, the batch size and their ratio
per arm (the ratio is the same in all three).

Each arm is one group (a batch-size schedule is a group's shape); its seeds
train together. ``members.csv`` has the columns ``arm``, ``batch_schedule``
(e.g. ``x5 at 6 12``) and ``steps`` (updates taken).
"""

from jaxbatch import recipes, report, results
from jaxbatch.experiment import Experiment
from jaxbatch.plots import comparisons


def arms(milestones: tuple[int, ...], factor: float):
    """The three arms: LR decay, batch increase, and one LR decay followed by
    batch increases, at the same milestone epochs and factor."""
    M = recipes.Member
    first, rest = milestones[:1], milestones[1:]
    return [
        M(schedule="multistep", milestones=milestones, gamma=1 / factor,
          tags={"arm": "decay LR"}),
        M(schedule="constant", batch_milestones=milestones, batch_factor=factor,
          tags={"arm": "increase batch"}),
        M(schedule="multistep", milestones=first, gamma=1 / factor,
          batch_milestones=rest, batch_factor=factor, tags={"arm": "hybrid"}),
    ]  # fmt: skip


MLP = dict(model="mlp", model_kwargs=(("hidden", (256,)),), momentums=(0.9,))

PRESETS = {
    # Batch 32 -> 160 -> 800 (or LR 0.05 -> 0.01 -> 0.002) at epochs 6 and 12.
    "quick": dict(
        **MLP,
        recipes=arms((6, 12), 5),
        seeds=(0, 1, 2, 3, 4),
        batch_sizes=(32,),
        lrs=(0.05,),
        train_size=10000,
        val_size=2000,
        epochs=18,
        eval_every=100,
    ),
    # Smith et al.'s factor 5 at 60, 120, 160 of 200 epochs, scaled to 60
    # epochs of the whole Fashion-MNIST training split: batch 128 -> 16000.
    "paper": dict(
        **MLP,
        recipes=arms((18, 36, 48), 5),
        seeds=(0, 1, 2, 3, 4),
        batch_sizes=(128,),
        lrs=(0.1,),
        val_size=6000,
        epochs=60,
        eval_every=200,
    ),
}

FIGURES = {
    "batch_increase_curves.png": lambda out: comparisons.training_curves(out, "arm"),
    "batch_increase_summary.png": lambda out: comparisons.arm_summary(out, "arm"),
    "batch_increase_schedules.png": lambda out: comparisons.schedules_panel(out, "arm"),
}


def verdict(out):
    """Each arm against decaying the LR: accuracy and updates."""
    return report.versus(results.read_members(out), "arm", "decay LR")


EXPERIMENT = Experiment(
    name="batch_increase",
    doc=__doc__,
    claim=(
        "Increasing the batch size instead of decaying the LR reaches the same "
        "accuracy in fewer parameter updates (Smith et al., 2018)."
    ),
    quick_s=63,
    presets=PRESETS,
    headline=("batch_increase_curves.png", "batch_increase_summary.png"),
    figures=FIGURES,
    verdict=verdict,
)

if __name__ == "__main__":
    EXPERIMENT.main()
