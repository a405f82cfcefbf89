"""Successive halving: a random search's best at a fraction of the compute.

Run (2-core CPU, built-in Fashion-MNIST, 166 s measured)::

    python -m experiments.successive_halving --preset quick

The claim (Jamieson & Talwalkar 2016; Li et al., Hyperband, 2018): trained
by successive halving, a random search finds a configuration as good as the
best of the same search trained to the end, at a fraction of the compute,
and better than a random search of as many members as that compute buys,
all trained to the end. Three arms, each repeated over independent random
draws (the repetitions are the error bars):

* ``every``: N log-uniform draws of LR, weight decay and momentum (SGD; the
  mission's ranges: lr ~ 10^U(-5,-1), wd ~ 10^U(-7,-1), momentum = 1 -
  10^U(-3,-1)), every member trained for E epochs;
* ``halving``: the same N draws, trained by successive halving with eta = 3
  from epoch 1: after epochs 1, 3, 9, ... the best third by validation loss
  continue, the rest stop (and the group trains the survivors only);
* ``hyperband``: Hyperband (Li et al. 2018) over the same ranges, one
  sweep: its brackets draw 9, 5 and 3 members (for E = 9, eta = 3), ranked
  first after 1, 3 and 9 epochs, each bracket halved among its own;
* ``small``: a fresh draw of M members, M x E member-epochs being what
  ``halving`` plans to spend, every member trained to the end.

Each arm picks its configuration by the validation accuracy of the final
parameters among the members that trained to the end, and reports its test
accuracy; ``compute`` is the member-steps the arm computed.

What you should see (quick: MLP 784-128-10, 2048 images, 9 epochs, batch
64, 27 draws, 3 repetitions): halving computes 26% of the member-steps of
training every member (2,016 of 7,776) but its pick is not as good here:
test accuracy 80.8 ± 4.6% against 82.2 ± 0.3% for every member to the end
and 81.4 ± 3.6% for 7 members trained to the end. In one repetition it
keeps the very member the full search picks (82.4%, the same numbers: a
survivor equals its run without halving); in another the first rung, after
one epoch, ranks a small LR (1.4e-3) above the search's best (1.9e-2) and
drops the latter: one epoch of a 9-epoch run rewards the fast starters, the
bias Hyperband's later brackets (later first rungs) hedge against. Hyperband
(17 draws, 2,208 member-steps, 28%) narrows the spread: 81.5 ± 2.5%, 0.7
points below every member to the end. The claim holds for the compute, not
(at this budget) for the accuracy.

Layout: ``<out>/to_the_end`` (``every`` and ``small`` of every repetition:
one sweep, one program; tags ``arm`` and ``rep``), ``<out>/halving_<r>``
(one sweep per repetition: halving ranks the members of one search) and
``<out>/hyperband_<r>`` (its brackets in one sweep, tag ``bracket``).
``plots/best_vs_compute.png``: test accuracy of each arm's pick against the
member-steps it computed (every repetition a dot, mean and 95% interval);
``plots/halving_curves.png``: validation accuracy against epochs for every
member of the first halving run, the dropped ones ending at their rung.
"""

from __future__ import annotations

import math

import jax

from jaxbatch import recipes
from jaxbatch.experiment import Experiment, derive
from jaxbatch.plots import population as figures

ETA = 3


def planned_member_epochs(n: int, epochs: int, eta: float = ETA, first: int = 1):
    """The member-epochs successive halving plans for ``n`` members: every
    member to the first rung, the best ``1/eta`` on to the next, ..."""
    total, alive, done = 0, n, 0
    rung = first
    while rung < epochs:
        total += alive * (rung - done)
        done, alive = rung, max(1, int(alive // eta))
        rung = round(rung * eta)
    return total + alive * (epochs - done)


def draws(n: int, seed: int, arm: str, rep: int):
    return [m.with_tags(arm=arm, rep=rep)
            for m in recipes.random(jax.random.PRNGKey(seed), n)]  # fmt: skip


PRESETS = {
    # 27 draws, 9 epochs of 2048 images, MLP 784-128-10, 3 repetitions.
    "quick": dict(
        model="mlp",
        model_kwargs=(("hidden", (128,)),),
        batch_sizes=(64,),
        weight_decay_mode="l2",
        train_size=2048,
        val_size=1000,
        epochs=9,
        eval_every=10**6,  # at the end of every epoch
        strategy="vmap",
    ),
    # 81 draws, 27 epochs of the whole training split, a small CNN.
    "paper": dict(
        model="simple_cnn",
        model_kwargs=(),
        batch_sizes=(128,),
        weight_decay_mode="l2",
        train_size=None,
        val_size=10000,
        epochs=27,
        eval_every=10**6,
        strategy="auto",
    ),
}
SEARCH = {"quick": (27, 3), "paper": (81, 5)}  # (draws, repetitions)


def stages(config_for, out, preset):
    n, reps = SEARCH[preset]
    epochs = config_for().epochs
    m = max(1, math.ceil(planned_member_epochs(n, epochs) / epochs))
    both = []
    for r in range(reps):
        both += draws(n, r, "every", r) + draws(m, 1000 + r, "small", r)
    yield "to_the_end", config_for(recipes=both), None
    for r in range(reps):
        # exact slot counts: pow2 would pad 9 survivors to 16 slots, and the
        # few counts of a halving run compile once each anyway
        yield (f"halving_{r}", config_for(recipes=draws(n, r, "halving", r),
               successive_halving=f"eta={ETA},first=1", compaction="exact"),
               None)  # fmt: skip
    for r in range(reps):
        # Hyperband's brackets (first rungs 1, 3, 9, ... epochs), its own draws
        yield (f"hyperband_{r}", config_for(hyperband=f"eta={ETA},min=1",
               search_seed=2000 + r, compaction="exact"), None)  # fmt: skip


EXPERIMENT = Experiment(
    name="successive_halving",
    doc=__doc__,
    claim=(
        "Successive halving finds a configuration as good as training every "
        "member of a random search, at a fraction of the compute, and better than "
        "a random search of the same compute (Li et al., Hyperband)."
    ),
    quick_s=166,
    presets={**PRESETS, "paper": derive(PRESETS["quick"], **PRESETS["paper"])},
    headline=("best_vs_compute.png", "halving_curves.png"),
    figures={
        "best_vs_compute.png": figures.best_vs_compute,
        "halving_curves.png": figures.halving_curves,
    },
    verdict=figures.halving_verdict,
    stages=stages,
)

if __name__ == "__main__":
    EXPERIMENT.main()
