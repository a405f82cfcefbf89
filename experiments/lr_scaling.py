"""Scale the learning rate with the batch size: unscaled, linear or square root,
with and without gradual warmup (Krizhevsky 2014; Goyal et al. 2017).

Run (2-core AMD EPYC CPU, built-in Fashion-MNIST, 53 s measured)::

    python -m experiments.lr_scaling --preset quick

What you should see: Krizhevsky ("One weird trick", 2014) scales the LR by
sqrt(k) when the batch grows k-fold (and found linear scaling to work better
in practice); Goyal et al. ("Accurate, Large Minibatch SGD", 2017) claim that
the linear rule (LR x k) with a gradual warmup from LR/k keeps the accuracy
of the small batch up to very large batches, while without warmup the early
large steps hurt, and an unscaled LR falls behind because, at a fixed epoch
budget, a k-times larger batch takes k times fewer steps. Every member trains
the same number of epochs, from batch B0 to 32 B0. Measured (quick: MLP
784-256-10, 10,000 images, 5 epochs, SGD momentum 0.9, LR 0.01 at batch 32,
x0.1 after 2.5 epochs; test accuracy, mean of 3 seeds): batch 32 reaches
85.2. Unscaled, accuracy falls with every doubling (84.4, 83.0, 81.1, 77.7,
72.7 at k = 2 .. 32). The linear rule holds it to k = 8 (85.3, 85.1, 84.7)
and loses 1.5 points at k = 16 and 6 at k = 32 (79.0); the square-root rule
sits between (84.9 at k = 2, 80.4 at k = 32). Warmup from LR/k over one
epoch matters only where the linear rule breaks: +1.7 points at k = 32 (80.7
± 0.7 vs 79.0 ± 0.9); at k <= 16 it costs 0.1-0.4 points of a 5-epoch
budget, for every rule. Goyal et al.'s "linear scaling plus warmup" is
therefore the best rule measured here, but its limit comes early on this
small problem (about 256-512 images per batch, 20-40 updates an epoch).
``plots/lr_scaling.png`` shows the final test accuracy (left) and the final
training loss (right, the parameters evaluated on training images) against
the batch size, one colour per rule, solid with warmup and dashed without,
mean over seeds with a 95% t-interval; ``plots/lr_scaling_curves.png`` the
validation accuracy against epochs at the largest batch size.

Each batch size is one compiled group; its rules, warmups and seeds train
together. At B0 (k = 1) all rules give the same LR and the warmup starts at
1/k = 1 (none), so B0 trains one baseline per seed and every line starts
there. ``members.csv`` has the tags ``scaling_rule`` (none, linear, sqrt)
and ``k`` (batch size / B0), and the recipe columns ``lr``,
``warmup_epochs`` and ``warmup_start``.
"""

from jaxbatch import recipes, results, stats
from jaxbatch.experiment import Experiment
from jaxbatch.plots import search


def scaling_members(
    base_batch_size: int,
    batch_sizes,
    base_lr: float,
    warmup_epochs: float,
    rules=("none", "linear", "sqrt"),
):
    """One baseline at ``base_batch_size``; at every larger batch size each
    rule with and without warmup (``warmup_start = 1 / k``). The sweep
    crosses each member with --seeds."""
    M = recipes.Member
    out = recipes.scale_lr(
        [M(batch_size=base_batch_size, lr=base_lr)], "none", base_batch_size
    )
    out = [m.with_tags(k=1) for m in out]
    for b in batch_sizes:
        k = b // base_batch_size
        if b == base_batch_size:
            continue
        warm = [
            M(warmup_epochs=0.0),
            M(warmup_epochs=warmup_epochs, warmup_start=1 / k),
        ]
        base = recipes.product(warm, batch_size=(b,), lr=(base_lr,))
        for rule in rules:
            out += [
                m.with_tags(k=k) for m in recipes.scale_lr(base, rule, base_batch_size)
            ]
    return out


def built(warmup_epochs: float):
    """The members from --batch-sizes (the first is B0, the rest multiples
    of it) and --lrs (one value: the LR at B0)."""

    def members(values):
        sizes, lrs = tuple(values["batch_sizes"]), tuple(values["lrs"])
        if len(lrs) != 1:
            raise ValueError(
                f"--lrs takes one value here, the LR at the first batch size (the "
                f"rules scale it), got {','.join(map(str, lrs))}; e.g. --lrs 0.01"
            )
        b0 = sizes[0]
        bad = [b for b in sizes if b % b0 or b < b0]
        if bad:
            raise ValueError(
                f"--batch-sizes must be multiples of the first "
                f"({b0}), got {','.join(map(str, bad))}; e.g. --batch-sizes 32,64,128"
            )
        return scaling_members(b0, sizes, lrs[0], warmup_epochs)

    return members


MLP = dict(
    model="mlp",
    model_kwargs=(("hidden", (256,)),),
    momentums=(0.9,),
    schedule="step",  # x0.1 at half the epochs (Goyal et al.: x0.1 at 30, 60, 80)
    gamma=0.1,
    strategy="vmap",
)

PRESETS = {
    # B0 = 32 .. 1024 (k = 32), 5 epochs of 10k images, warmup over 1 epoch.
    "quick": dict(
        **MLP,
        recipes=built(warmup_epochs=1),
        batch_sizes=(32, 64, 128, 256, 512, 1024),
        lrs=(0.01,),
        seeds=(0, 1, 2),
        train_size=10000,
        val_size=2000,
        epochs=5,
        eval_every=100,
    ),
    # The whole training split, 30 epochs, Goyal et al.'s 5-epoch warmup.
    "paper": dict(
        **MLP,
        recipes=built(warmup_epochs=5),
        batch_sizes=(32, 64, 128, 256, 512, 1024, 2048, 4096),
        lrs=(0.01,),
        seeds=(0, 1, 2, 3, 4),
        val_size=6000,
        epochs=30,
        eval_every=200,
    ),
}

FIGURES = {
    "lr_scaling.png": search.lr_scaling,
    "lr_scaling_curves.png": search.lr_scaling_curves,
}


def verdict(out):
    """Each rule at the largest batch, with and without warmup, against the
    base batch (test accuracy, mean ± 95% t-interval)."""
    m = results.read_members(out, healthy=True)
    k = m["k"].max()

    def acc(sel):
        mean, half, _ = stats.seed_stats(m["test_acc"][sel])
        return f"{100 * mean:.1f} ± {100 * half:.1f}"

    base = acc(m["k"] == 1)
    parts = []
    for rule in ("linear", "sqrt", "none"):
        sel = (m["k"] == k) & (m["scaling_rule"].astype(str) == rule)
        warm, cold = sel & (m["warmup_epochs"] > 0), sel & (m["warmup_epochs"] == 0)
        parts.append(f"{rule} {acc(cold)} ({acc(warm)} with warmup)")
    b0, b = int(m["batch_size"].min()), int(m["batch_size"].max())
    return [
        f"At {k:g}x the base batch ({b} vs {b0}), test accuracy: "
        + "; ".join(parts)
        + f"; the base batch {base}."
    ]


EXPERIMENT = Experiment(
    name="lr_scaling",
    doc=__doc__,
    claim=(
        "Scale the LR linearly with the batch size, with a gradual warmup (Goyal et "
        "al., 2017), rather than by its square root or not at all."
    ),
    quick_s=84,
    presets=PRESETS,
    headline=("lr_scaling.png", "lr_scaling_curves.png"),
    figures=FIGURES,
    verdict=verdict,
)

if __name__ == "__main__":
    EXPERIMENT.main()
