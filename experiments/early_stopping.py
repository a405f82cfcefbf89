"""Early stopping: final vs best-restored weights, patience, and "halve the LR
on a plateau" instead.

Run (2-core AMD EPYC CPU, built-in Fashion-MNIST, 1 min 11 s measured)::

    python -m experiments.early_stopping --preset quick

What you should see (quick: MLP 784-256-10 on 1000 images for 80 epochs, SGD
momentum 0.9, constant LR 0.05, one evaluation per epoch on 1000 held-out
images; test accuracy, mean of 5 seeds ± 95% interval): the validation loss
is lowest at epoch 7 ± 3 and then rises to twice that, yet the test accuracy
keeps improving: the final weights of the run that never stops score 80.8 ±
0.5, the weights kept at the best validation loss 79.1 ± 1.1. Restoring the
best weights therefore costs 1.7 points here, and early stopping on the loss
stops too early: patience 3 stops at epoch 8 ± 2 (final 74.9 ± 2.9, best
77.9 ± 1.2), patience 10 and 30 at epochs 17 and 37 (final 79.0 ± 1.5 and
79.7 ± 1.0, best 79.1 ± 1.1 for both: the same best point). Watching the
validation accuracy instead (patience 10) keeps better weights (80.1 ± 0.6)
but is still below training to the end. Halving the LR on a loss plateau
(patience 3) and stopping at 1/1024 wins: it stops at epoch 47 ± 3 with
81.1 ± 0.4, as good as 80 epochs at full LR in 58% of the updates, and its
final weights beat its kept best ones (78.5 ± 0.8).

The claims tested: on a small training set a long run overfits, so the
weights at the best validation loss ("restore best weights", Keras'
``EarlyStopping(restore_best_weights=True)``) beat the final ones; a
larger patience costs compute but not accuracy when the best weights are
restored; and "halve the LR whenever the validation loss stalls, stop at
1/1024 of the peak" (CS231n's annealing advice, PyTorch's
``ReduceLROnPlateau``) reaches at least the accuracy of early stopping at a
constant LR.

Early stopping's patience is a setting of a whole sweep, so every arm is
its own sweep (``stages``), trained one after the other into
``<out>/<arm>``, each with every seed: ``patience_<P>`` stops a member after
P evaluations (one per epoch) without a lower validation loss and keeps its
best weights; ``no_stop`` trains to the end (patience larger than the run)
and keeps its best weights too; ``plateau`` halves each member's LR after
``plateau_patience`` stalled evaluations and stops it when the LR reaches
1/1024 of the peak (its best weights are kept as well). ``members.csv`` of
every arm: ``test_acc`` (the final or stopped weights), ``best_test_acc``
(the kept best weights), ``steps`` (updates taken) and the tag ``arm``.
``plots/early_stopping.png``: test accuracy of the final and of the best
weights per arm (every seed, mean and 95% interval), and the validation loss
curves with each arm's stop points and best points marked.
"""

from jaxbatch import recipes
from jaxbatch.experiment import Experiment
from jaxbatch.plots import special

NEVER = 10**6  # a patience longer than any run: never stops, keeps the best


def arms(patiences, acc_patience, plateau_patience):
    """``(name, settings of the sweep, member fields)`` of every arm."""
    out = [("no_stop", dict(early_stop_patience=NEVER), {})]
    out += [(f"patience_{p}", dict(early_stop_patience=p), {}) for p in patiences]
    acc = dict(early_stop_patience=acc_patience, control_metric="val_acc")
    out += [(f"patience_{acc_patience}_val_acc", acc, {})]
    plateau = dict(
        early_stop_patience=NEVER,
        plateau_patience=plateau_patience,
        plateau_stop_scale=1 / 1024,
    )
    return out + [("plateau", plateau, dict(schedule="plateau", plateau_factor=0.5))]


PRESETS = {
    # 1000 training images for 80 epochs: the validation loss is lowest near
    # epoch 7 and rises from there.
    "quick": dict(
        model="mlp",
        model_kwargs=(("hidden", (256,)),),
        batch_sizes=(50,),
        lrs=(0.05,),
        momentums=(0.9,),
        schedule="constant",
        seeds=(0, 1, 2, 3, 4),
        train_size=1000,
        val_size=1000,
        epochs=80,
        eval_every=10**6,  # at the end of every epoch
        control_metric="val_loss",
        strategy="vmap",
    ),
    # 5000 images, 200 epochs, a small CNN (not run here).
    "paper": dict(
        model="simple_cnn",
        batch_sizes=(64,),
        lrs=(0.02,),
        momentums=(0.9,),
        schedule="constant",
        seeds=tuple(range(10)),
        train_size=5000,
        val_size=5000,
        epochs=200,
        eval_every=10**6,
        control_metric="val_loss",
    ),
}
# Patience in evaluations (one per epoch): on the validation loss, on the
# validation accuracy, and of the plateau rule.
PATIENCES = {"quick": ((3, 10, 30), 10, 3), "paper": ((5, 20, 50), 20, 5)}


def stages(config_for, out, preset):
    for name, settings, fields in arms(*PATIENCES[preset]):
        members = [recipes.Member(**fields, tags={"arm": name})]  # x --seeds
        yield name, config_for(recipes=members, **settings), None


FIGURES = {"early_stopping.png": special.early_stopping}


EXPERIMENT = Experiment(
    name="early_stopping",
    doc=__doc__,
    claim=(
        "Stopping when validation stalls and keeping the best weights beats training "
        "to the end; so does halving the LR on a plateau."
    ),
    quick_s=115,
    presets=PRESETS,
    headline=("early_stopping.png",),
    figures=FIGURES,
    stages=stages,
)

if __name__ == "__main__":
    EXPERIMENT.main()
