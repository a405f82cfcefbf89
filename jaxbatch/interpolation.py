"""The line between two members' final parameters (Keskar et al. 2017, Fig. 3).

Loss and accuracy along ``(1 - α) w_a + α w_b``, read from a finished run's
saved weights: a small-batch and a large-batch solution with a barrier
between them sit in different minima; a flat, low line means one basin.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxbatch import models, results
from jaxbatch.config.sweep_config import SweepConfig
from jaxbatch.data import normalize
from jaxbatch.probes import cross_entropy

INTERPOLATION_ALPHAS = tuple(float(a) for a in np.linspace(-1.0, 2.0, 31))


def interpolation(
    out: str,
    a: int,
    b: int,
    alphas: Sequence[float] = INTERPOLATION_ALPHAS,
    dataset=None,
    max_images: int = 2000,
) -> dict[str, np.ndarray]:
    """Loss and accuracy along ``(1 - α) w_a + α w_b`` between the final
    parameters of members ``a`` and ``b`` of run ``out`` (Keskar et al. 2017,
    Figure 3: α = 0 is ``a``, 1 is ``b``; BatchNorm statistics are
    interpolated too), on at most ``max_images`` training images and test
    (or validation) images, in eval mode.

    Returns ``alpha``, ``train_loss``, ``train_acc``, ``test_loss``,
    ``test_acc`` (arrays over ``alphas``); also written to
    ``<out>/interpolation.csv``.
    """
    meta = results.read_json(os.path.join(out, "config.json"))
    config = SweepConfig.from_dict(meta["config"])
    members = results.read_members(out)
    model_of = dict(zip(members["member"].astype(int), members["model"].astype(str)))
    if model_of.get(a) is None or model_of.get(b) is None:
        raise ValueError(f"interpolation: members {a} and {b} must be in {out}")
    if model_of[a] != model_of[b]:
        raise ValueError(
            f"interpolation needs one model, got {model_of[a]} and {model_of[b]}"
        )
    ds = dataset or config.data.load()
    net = models.get_model(
        model_of[a],
        num_classes=meta["data"]["num_classes"],
        **dict(config.kwargs_for(model_of[a])),
    )
    va, vb = results.load_params(out, a), results.load_params(out, b)
    splits = {"train": (ds.x_train, ds.y_train)}
    if ds.x_test is not None:
        splits["test"] = (ds.x_test, ds.y_test)
    else:
        splits["test"] = (ds.x_val, ds.y_val)

    @jax.jit
    def evaluate(alpha, x, y):
        variables = jax.tree.map(lambda p, q: (1 - alpha) * p + alpha * q, va, vb)
        xn = normalize(x, ds.mean, ds.std)
        logits = net.apply(variables, xn, train=False)
        return cross_entropy(logits, y) * len(y), jnp.sum(jnp.argmax(logits, -1) == y)

    table = {"alpha": np.asarray(alphas, np.float64)}
    for name, (x, y) in splits.items():
        x, y = x[:max_images], y[:max_images]
        loss, acc = [], []
        for alpha in alphas:
            tot_l = tot_c = 0.0
            for s in range(0, len(y), 500):
                l_, c_ = evaluate(jnp.float32(alpha), x[s : s + 500], y[s : s + 500])
                tot_l, tot_c = tot_l + float(l_), tot_c + float(c_)
            loss.append(tot_l / len(y))
            acc.append(tot_c / len(y))
        table[f"{name}_loss"], table[f"{name}_acc"] = np.array(loss), np.array(acc)
    columns = list(table)
    rows = [dict(zip(columns, vals)) for vals in zip(*table.values())]
    results.write_csv(os.path.join(out, "interpolation.csv"), columns, rows)
    return table
