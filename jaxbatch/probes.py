"""Probes: measurements of one member's training, beside its loss and accuracy.

Every probe is a pure function of one member (its parameters, a gradient, a
loss function of the parameters), so the engine maps it over the member axis
like the train step, and a member's probe values equal those of its solo run.
Three cadences, chosen with ``--probes`` (a probe that is off is not in the
compiled program at all):

- every step, from quantities the step has anyway (one reduction per
  parameter leaf): ``update_ratio`` (``||Δw|| / ||w||`` of the step, the ~1e-3
  rule of thumb), ``grad_norm`` and ``param_norm``, overall and per layer
  (a layer is a top-level module of the network, e.g. ``Dense_0``);
- at every evaluation: ``noise_scale``, McCandlish et al.'s (2018) simple
  noise scale ``B_simple = tr(Σ) / |G|²``, from the gradients of
  ``probe_size`` training images in 16 equal parts (their Appendix A: the
  squared norms at two batch sizes give unbiased estimates of ``|G|²`` and
  ``tr(Σ)``, each smoothed over evaluations before the ratio is taken);
- on the final parameters: ``sharpness``, the top eigenvalue of the training
  loss's Hessian (power iteration on Hessian-vector products) and Keskar et
  al.'s (2017) ε-sharpness, the largest relative loss increase in the box
  ``|δ_i| <= ε (|w_i| + 1)``, found by projected gradient ascent; and
  ``weights``, the norm of the final parameters and the share of kernel
  weights near zero (:func:`weight_stats`, on the host, in float64).

The sweep runs each probe as a hook at its cadence (``jaxbatch.sweep.hooks``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbatch.choices import NOISE_PARTS, STEP_PROBES

NOISE_SMOOTHING = 0.2  # weight of a new evaluation in the moving averages


# --- norms --------------------------------------------------------------------------


def _sq(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    return sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves)


def layer_sq_norms(tree) -> dict[str, jax.Array]:
    """Squared norm of every top-level layer of a parameter tree, and ``""``
    for the whole tree."""
    out = {str(k): _sq(v) for k, v in tree.items()}
    out[""] = sum(out.values()) if out else jnp.zeros((), jnp.float32)
    return out


def layer_names(params) -> tuple[str, ...]:
    """The per-layer suffixes of the step probes' metric names."""
    return tuple(str(k) for k in params)


def step_metric_names(probes: Sequence[str], layers: Sequence[str]) -> tuple[str, ...]:
    """Metric names the train step returns for ``probes``, in the sorted
    order of its stacked ``probes`` output: ``update_ratio`` and
    ``update_ratio/<layer>`` for each layer, likewise for the others."""
    return tuple(
        sorted(
            name + suffix
            for name in probes
            if name in STEP_PROBES
            for suffix in ("", *(f"/{layer}" for layer in layers))
        )
    )


def step_probes(probes: Sequence[str], params, updates, grads) -> dict:
    """Per-step probe metrics of one member (scalars), from its step: the
    parameters before it, the updates it added to them, and the gradient."""
    out = {}
    if not any(p in STEP_PROBES for p in probes):
        return out
    w2 = layer_sq_norms(params)
    sources = {
        "param_norm": lambda: {k: jnp.sqrt(v) for k, v in w2.items()},
        "grad_norm": lambda: {k: jnp.sqrt(v) for k, v in layer_sq_norms(grads).items()},
        "update_ratio": lambda: {
            k: jnp.sqrt(v / jnp.maximum(w2[k], 1e-30))
            for k, v in layer_sq_norms(updates).items()
        },
    }
    for name in probes:
        if name in sources:
            for layer, value in sources[name]().items():
                out[name + (f"/{layer}" if layer else "")] = value
    return out


# --- gradient noise scale -----------------------------------------------------------


def noise_scale_estimates(
    g_small_sq: jax.Array, g_big_sq: jax.Array, b_small: float, b_big: float
) -> tuple[jax.Array, jax.Array]:
    """Unbiased estimates ``(|G|², tr(Σ))`` from squared gradient norms at two
    batch sizes (McCandlish et al. 2018, Appendix A.1):

    ``|G|² = (B_big |G_big|² - B_small |G_small|²) / (B_big - B_small)``,
    ``tr(Σ) = (|G_small|² - |G_big|²) / (1 / B_small - 1 / B_big)``,

    since ``E |G_B|² = |G|² + tr(Σ) / B`` for a batch of ``B`` independent
    examples. ``g_small_sq`` may be the mean over several small batches.
    """
    g2 = (b_big * g_big_sq - b_small * g_small_sq) / (b_big - b_small)
    tr = (g_small_sq - g_big_sq) / (1.0 / b_small - 1.0 / b_big)
    return g2, tr


def gradient_sq_norms(grad_fn: Callable, params, x, y, parts: int = NOISE_PARTS):
    """``(mean over parts of |g_part|², |mean of g_part|², part size)`` for the
    gradients of ``grad_fn(params, x, y)`` on ``parts`` equal parts of a batch.

    The mean of the parts' gradients is the whole batch's gradient, so one
    pass over the batch gives both batch sizes of the noise-scale estimate.
    """
    n = x.shape[0] // parts * parts
    xs = x[:n].reshape(parts, n // parts, *x.shape[1:])
    ys = y[:n].reshape(parts, n // parts)
    grads = jax.vmap(grad_fn, in_axes=(None, 0, 0))(params, xs, ys)
    small = jnp.mean(jax.vmap(_sq)(grads))
    big = _sq(jax.tree.map(lambda g: jnp.mean(g, 0), grads))
    return small, big, n // parts


def smooth_noise_scale(g2: np.ndarray, tr: np.ndarray, alpha: float = NOISE_SMOOTHING):
    """``B_simple`` after each evaluation: the ratio of the exponential moving
    averages of the ``tr(Σ)`` and ``|G|²`` estimates (``[members, evals]``;
    NaN entries, i.e. evaluations not reached, are skipped)."""
    g2, tr = np.asarray(g2, np.float64), np.asarray(tr, np.float64)
    out = np.full(g2.shape, np.nan)
    for i in range(g2.shape[0]):
        mg = mt = None
        for e in range(g2.shape[1]):
            if not (np.isfinite(g2[i, e]) and np.isfinite(tr[i, e])):
                continue
            mg = g2[i, e] if mg is None else (1 - alpha) * mg + alpha * g2[i, e]
            mt = tr[i, e] if mt is None else (1 - alpha) * mt + alpha * tr[i, e]
            out[i, e] = mt / mg if mg > 0 else np.nan
    return out


# --- sharpness ----------------------------------------------------------------------


def hessian_top_eigenvalue(
    loss_fn: Callable, params, key: jax.Array, iters: int = 20
) -> jax.Array:
    """The eigenvalue of largest magnitude of the Hessian of ``loss_fn`` at
    ``params``, by ``iters`` steps of power iteration on Hessian-vector
    products (forward-over-reverse); the Rayleigh quotient of the last vector.
    """
    grad = jax.grad(loss_fn)

    def hvp(v):
        return jax.jvp(grad, (params,), (v,))[1]

    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    v = jax.tree.unflatten(
        treedef,
        [jax.random.normal(k, x.shape, jnp.float32) for k, x in zip(keys, leaves)],
    )

    def normalize(t):
        norm = jnp.sqrt(_sq(t))
        return jax.tree.map(lambda a: a / jnp.maximum(norm, 1e-30), t)

    def body(_, v):
        return normalize(hvp(v))

    # unrolled: a rolled loop of convolutions is many times slower on XLA:CPU
    v = jax.lax.fori_loop(0, iters, body, normalize(v), unroll=True)
    hv = hvp(v)
    return sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(hv)))


def eps_sharpness(
    loss_fn: Callable, params, eps: float, key: jax.Array, steps: int = 10
) -> jax.Array:
    """Keskar et al.'s sharpness: ``100 (max_{δ in C} f(w + δ) - f(w)) / (1 +
    f(w))`` over the box ``C = {|δ_i| <= ε (|w_i| + 1)}``.

    The maximum is found by projected sign-gradient ascent from a random
    point of the box (``steps`` steps of a quarter of the box's width, each
    projected back into the box); a lower bound of the true maximum,
    exact for losses whose maximum is a corner reached by following the
    gradient's sign (convex quadratics, for one).
    """
    f0 = loss_fn(params)
    radius = jax.tree.map(lambda w: eps * (jnp.abs(w) + 1.0), params)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    delta = jax.tree.unflatten(
        treedef,
        [
            jax.random.uniform(k, w.shape, jnp.float32, -1.0, 1.0) * r
            for k, w, r in zip(keys, leaves, jax.tree.leaves(radius))
        ],
    )
    grad = jax.grad(lambda d: loss_fn(jax.tree.map(jnp.add, params, d)))

    def body(_, d):
        g = grad(d)
        return jax.tree.map(
            lambda d_, g_, r: jnp.clip(d_ + 0.5 * r * jnp.sign(g_), -r, r),
            d,
            g,
            radius,
        )

    delta = jax.lax.fori_loop(0, steps, body, delta, unroll=True)
    f1 = loss_fn(jax.tree.map(jnp.add, params, delta))
    return 100.0 * (jnp.maximum(f1, f0) - f0) / (1.0 + f0)


def sharpness_names(eps: Sequence[float]) -> tuple[str, ...]:
    """``members.csv`` columns of the final sharpness probe."""
    return ("sharpness_eig", "sharpness_eps", *(f"sharpness_eps_{e:g}" for e in eps))


def sharpness(loss_fn: Callable, params, key, eps: Sequence[float]) -> dict:
    """Every sharpness number of one member's final parameters."""
    k1, k2 = jax.random.split(key)
    out = {"sharpness_eig": hessian_top_eigenvalue(loss_fn, params, k1)}
    for i, e in enumerate(eps):
        out[f"sharpness_eps_{e:g}"] = eps_sharpness(
            loss_fn, params, e, jax.random.fold_in(k2, i)
        )
    out["sharpness_eps"] = out[f"sharpness_eps_{eps[0]:g}"]
    return out


def cross_entropy(logits, y) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), y
    ).mean()


# --- weights of the final parameters ------------------------------------------------

NEAR_ZERO = 1e-3  # |w| below this counts as zero (L1 drives weights there)


def weight_stats(params, threshold: float = NEAR_ZERO) -> dict[str, float]:
    """``weight_norm``, the Euclidean norm of all of one member's parameters,
    and ``near_zero_frac``, the fraction of its kernel weights with ``|w| <
    threshold``; numpy leaves, summed in float64."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    sq = sum(float((np.asarray(w, np.float64) ** 2).sum()) for _, w in leaves)
    kernels = [
        np.asarray(w) for p, w in leaves if getattr(p[-1], "key", None) == "kernel"
    ]
    size = sum(w.size for w in kernels)
    zeros = sum(int((np.abs(w) < threshold).sum()) for w in kernels)
    return {
        "weight_norm": float(np.sqrt(sq)),
        "near_zero_frac": zeros / size if size else float("nan"),
    }
