"""Time per update and per epoch against batch size, on the device in use.

Run (2-core AMD EPYC CPU, 52 s measured)::

    python -m experiments.batch_timing --preset quick

What you should see: the mission's claim is that on a GPU the time of one
update is nearly flat in the batch size until the device is full, so the
time of an epoch falls almost as 1/batch; on a CPU there is no idle
parallelism to fill, so past a small batch the update time grows with the
batch and the epoch time levels off. Measured on this 2-core CPU (XLA:CPU):
the MLP 784-512-512-10 takes 0.37 ms per update at batch 1 and 9.6 ms at
1024, 26x the time for 1024x the work, so its epoch falls from 19.7 s to
0.51 s (best at 1024; 0.72 s at 4096, where the update grows 5x for 4x the
batch). The small CNN's update grows almost linearly past batch 16 (2.8 ms,
12.8 ms at 64, 92 ms at 256, 2.3 s at 4096): its epoch is fastest at batch
16 (9.6 s) and three times slower at 4096 (32 s), and throughput peaks at
5700 images/s. On a CPU the "larger batches are free" half of the claim
holds only for the MLP, up to ~1000; run it on a GPU to see the flat part.

One member's SGD step is compiled for every batch size and timed on the
device (best of repeated windows; the first call, which compiles, is timed
apart and reported as ``compile_s``). ``timing.csv``: ``model, batch_size,
ms_per_update, s_per_epoch, examples_per_s, compile_s`` (``s_per_epoch`` is
the measured update times the updates of a 54,000-image epoch).
``plots/batch_timing.png``: the three against batch size. Run it on the
machine you want to know about: ``--models``, ``--batch-sizes`` and
``--n-train`` change the cells.
"""

import os

import numpy as np

from jaxbatch import plots, results
from jaxbatch.experiment import Experiment


def verdict(out):
    """Per model: the update time at the smallest and largest batch and the
    batch size with the fastest epoch (``timing.csv``)."""
    t = results.read_csv(os.path.join(out, "timing.csv"))
    lines = []
    for model in dict.fromkeys(t["model"]):
        sel = t["model"] == model
        bs, ms, ep = (
            t["batch_size"][sel],
            t["ms_per_update"][sel],
            t["s_per_epoch"][sel],
        )
        lo, hi, best = np.argmin(bs), np.argmax(bs), np.argmin(ep)
        lines.append(
            f"{model}: {ms[lo]:.2f} ms per update at batch {bs[lo]:g} and "
            f"{ms[hi]:.1f} ms at {bs[hi]:g} ({ms[hi] / ms[lo]:.0f}x the time for "
            f"{bs[hi] / bs[lo]:.0f}x the examples); the epoch is fastest at batch "
            f"{bs[best]:g} ({ep[best]:.2f} s, vs {ep[lo]:.1f} s at {bs[lo]:g})."
        )
    return lines


PRESETS = {
    # An MLP and a small CNN from batch 1 to 4096.
    "quick": dict(
        models=(("mlp", (("hidden", (512, 512)),)), ("simple_cnn", ())),
        batch_sizes=(1, 4, 16, 64, 256, 1024, 4096),
        n_train=54000,
        min_time_s=0.5,
    ),
    "paper": dict(
        models=(
            ("mlp", (("hidden", (512, 512)),)),
            ("simple_cnn", ()),
            ("alexnet_small", ()),
        ),  # fmt: skip
        batch_sizes=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
        n_train=54000,
        min_time_s=2.0,
    ),
}


def timing_figure(out):
    table = results.read_csv(os.path.join(out, "timing.csv"))
    backend, kind = str(table["backend"][0]), str(table["device_kind"][0])
    device = backend if kind.lower() == backend.lower() else f"{backend} ({kind})"
    return plots.facet(
        table,
        x="batch_size",
        y=("ms_per_update", "s_per_epoch", "examples_per_s"),
        lines="model",
        logx=True,
        logy=True,
        title=f"One member's SGD step on {device} (compile time excluded)",
    )


FIGURES = {"batch_timing.png": timing_figure}


EXPERIMENT = Experiment(
    name="batch_timing",
    doc=__doc__,
    claim=(
        "Larger batches make an epoch faster until the device is full: time per "
        "update and per epoch against batch size."
    ),
    quick_s=82,
    presets=PRESETS,
    headline=("batch_timing.png",),
    figures=FIGURES,
    verdict=verdict,
    timing=True,
)

if __name__ == "__main__":
    EXPERIMENT.main()
