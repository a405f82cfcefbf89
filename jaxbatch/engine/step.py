"""The functions of one member: init, a training step, evaluation, control.

Each takes one member's state and hyperparameters (scalars); the member axis
maps them over a group (:mod:`jaxbatch.engine.member_axis`).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxbatch import probes
from jaxbatch.data import normalize
from jaxbatch.engine.hparams import augment_key, data_key, dropout_key, init_key
from jaxbatch.engine.optimizer import learning_rate, make_tx
from jaxbatch.engine.spec import MemberState, TrainSpec


def model_variables(state: MemberState) -> dict:
    if state.batch_stats:
        return {"params": state.params, "batch_stats": state.batch_stats}
    return {"params": state.params}


def _overlay(fresh, base):
    """``fresh`` with every leaf that ``base`` has at the same path and shape
    taken from ``base`` (a new classifier head keeps its fresh values)."""
    if not base:
        return fresh
    found = {
        jax.tree_util.keystr(path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(base)[0]
    }

    def pick(path, leaf):
        other = found.get(jax.tree_util.keystr(path))
        if other is None or other.shape != leaf.shape:
            return leaf
        return jnp.asarray(other, leaf.dtype)

    return jax.tree_util.tree_map_with_path(pick, fresh)


def base_fit(
    fresh: Mapping, base: Mapping, num_classes: int
) -> tuple[list[str], list[str], list[str]]:
    """How trained weights ``base`` fit a model's fresh ones (both
    ``{"params", "batch_stats"}``, arrays or shapes): ``(loaded, fresh_head,
    problems)``. Leaves at the same path with the same shape load. A
    classifier head for another number of classes starts fresh: leaves that
    differ only in their last axis, which is ``num_classes`` here, all in one
    top-level module, and nothing else differs. Anything else (a missing or
    extra array, another shape) is a problem, and then so is the head."""

    def flat(tree):
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {
            "/".join(str(getattr(k, "key", k)) for k in p): tuple(np.shape(v))
            for p, v in leaves
        }

    mine, theirs = flat(fresh), flat(base)
    loaded, other, problems = [], [], []
    for path, shape in mine.items():
        if theirs.get(path) == shape:
            loaded.append(path)
        elif path not in theirs:
            problems.append(f"{path} {shape} not in the run")
        elif (len(theirs[path]) == len(shape) and theirs[path][:-1] == shape[:-1]
              and shape[-1] == num_classes):  # fmt: skip
            other.append(path)
        else:
            problems.append(f"{path} {shape} here, {theirs[path]} in the run")
    problems += [f"{p} {theirs[p]} only in the run" for p in theirs if p not in mine]
    modules = {"/".join(p.split("/")[:2]) for p in other}  # params/Dense_2
    if len(modules) > 1 or problems:
        problems += [f"{p} {mine[p]} here, {theirs[p]} in the run" for p in other]
        other = []
    return loaded, other, problems


def member_shapes(spec: TrainSpec, hp: Mapping) -> MemberState:
    """The shapes of one member's state (``hp``: one member's values), traced
    without computing anything."""
    return jax.eval_shape(lambda h: init_member(spec, h), hp)


def init_member(
    spec: TrainSpec, hp: Mapping, base: Mapping | None = None
) -> MemberState:
    """A fresh member state from its own seed (vmap it for a group).

    ``base``: ``{"params": ..., "batch_stats": ...}`` of a trained model to
    start from (``--init-from``); leaves whose path or shape differ (a new
    head) keep their fresh initialisation.
    """
    model = spec.build_model()
    k_params, k_dropout = jax.random.split(init_key(hp))
    x = jnp.zeros((1, *spec.image_shape), jnp.float32)
    variables = model.init({"params": k_params, "dropout": k_dropout}, x, train=False)
    base = base or {}
    params = _overlay(variables["params"], base.get("params"))
    batch_stats = _overlay(variables.get("batch_stats", {}), base.get("batch_stats"))
    opt_state = make_tx(spec, hp, 0.0).init(params)
    return MemberState(
        params=params,
        batch_stats=batch_stats,
        opt_state=opt_state,
        step=jnp.zeros((), jnp.int32),
        epoch=jnp.zeros((), jnp.int32),
        pos=jnp.zeros((), jnp.int32),
        seen=jnp.zeros((), jnp.int32),
        perm=jnp.arange(spec.n_train, dtype=jnp.int32),
        lr_scale=jnp.ones((), jnp.float32),
        diverged=jnp.zeros((), bool),
        stopped=jnp.zeros((), bool),
        plateau=spec.plateau.init() if spec.plateau else (),
        early=spec.early_stopping.init() if spec.early_stopping else (),
        best_params=params if spec.early_stopping else {},
        best_batch_stats=batch_stats if spec.early_stopping else {},
    )


def update_control(
    spec: TrainSpec, state: MemberState, hp: Mapping, value
) -> MemberState:
    """Feed one evaluation's metric to the member's plateau and early-stop rules.

    The plateau factor is the member's own (``hp["plateau_factor"]``, 1: off).
    A diverged member is left as it is; a member whose rules say stop is frozen
    from the next step on.
    """
    new = state
    if spec.plateau is not None:
        plateau = spec.plateau.update(state.plateau, value, factor=hp["plateau_factor"])
        new = new.replace(
            plateau=plateau,
            lr_scale=plateau.scale.astype(jnp.float32),
            stopped=new.stopped | plateau.stopped,
        )
    if spec.early_stopping is not None:
        early = spec.early_stopping.update(state.early, value)
        improved = early.best_step != state.early.best_step
        new = new.replace(
            early=early,
            best_params=_tree_where(improved, state.params, state.best_params),
            best_batch_stats=_tree_where(
                improved, state.batch_stats, state.best_batch_stats
            ),
            stopped=new.stopped | early.stopped,
        )
    return _tree_where(state.diverged, state, new)


def start_epoch(spec: TrainSpec, state: MemberState, hp: Mapping) -> MemberState:
    """New example order for the next epoch, from the member's seed and epoch."""
    key = jax.random.fold_in(data_key(hp), state.epoch)
    perm = jax.random.permutation(key, spec.n_train).astype(jnp.int32)
    return state.replace(
        perm=perm, epoch=state.epoch + 1, pos=jnp.zeros_like(state.pos)
    )


def _cast(tree, dtype):
    """Floating leaves of ``tree`` as ``dtype`` (a no-op for float32 leaves)."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def _all_finite(tree) -> jax.Array:
    """Whether every element of ``tree`` is finite: its largest magnitude is.

    One max-reduction per leaf (XLA's max propagates NaN, and a max of finite
    values cannot overflow), cheaper than an ``isfinite`` mask per leaf.
    """
    peaks = [jnp.max(jnp.abs(x)) for x in jax.tree.leaves(tree)]
    return jnp.isfinite(jnp.max(jnp.stack(peaks))) if peaks else jnp.array(True)


def _tree_where(pred, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def augment(images, key, crop, flip_p, *, pad: int, flip: bool):
    """A member's augmented batch (``images``: ``[b, H, W, C]`` uint8, before
    normalisation): each image cropped back to ``H x W`` at an offset drawn
    in ``[-crop, crop]`` of the image padded by zeros (``pad``: the group's
    largest ``crop``, a constant of the program; ``crop`` the member's, as
    data: 0 is the image itself), then mirrored left-right with probability
    ``flip_p``; both drawn per image from ``key``."""
    k_crop, k_flip = jax.random.split(key)
    b, h, w, c = images.shape
    if pad:
        padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        crop = jnp.asarray(crop, jnp.int32)
        offsets = jax.random.randint(k_crop, (b, 2), -crop, crop + 1) + pad
        images = jax.vmap(
            lambda im, o: lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, c))
        )(padded, offsets)
    if flip:
        mirror = jax.random.bernoulli(k_flip, flip_p, (b,))
        images = jnp.where(mirror[:, None, None, None], images[:, :, ::-1], images)
    return images


WD_KEYS = ("wd_l2", "wd_l1", "wd_decoupled")


def scheduled_weight_decay(hp: Mapping, seen) -> dict:
    """The member's weight decay coefficients after ``seen`` examples: from
    ``wd_*`` at the start to ``wd_*_end`` at ``total_ex`` examples, linearly
    (``wd_kind`` 0, 1) or exponentially (2); a negative end is the start."""
    t = jnp.clip(jnp.asarray(seen, jnp.float32) / hp["total_ex"], 0.0, 1.0)
    out = {}
    for k in WD_KEYS:
        start = hp[k]
        end = jnp.where(hp[f"{k}_end"] < 0, start, hp[f"{k}_end"])
        linear = start + (end - start) * t
        safe = jnp.where(start > 0, start, 1.0)
        expo = start * (jnp.where(start > 0, end, 1.0) / safe) ** t
        out[k] = jnp.where((hp["wd_kind"] == 2) & (start > 0), expo, linear)
    return out


def train_step(
    spec: TrainSpec,
    state: MemberState,
    hp: Mapping,
    data: Mapping,
    batch_size: int | None = None,
):
    """One SGD step of one member, on the next ``batch_size`` examples of its
    epoch order (default ``spec.batch_size``; the smaller last batch passes its
    own size).

    Args:
      state: the member's state.
      hp: the member's hyperparameters (scalars).
      data: ``x_train: [n, H, W, C] uint8``, ``y_train: [n]``, ``mean``, ``std``.

    Returns:
      ``(state, metrics)`` with scalar metrics ``loss`` (NaN once diverged),
      ``acc`` (batch accuracy) and ``lr``, and with step probes on,
      ``probes``: ``[n]``, the probe values in sorted name order
      (:func:`probes.step_metric_names`).
    """
    model = spec.build_model()
    bs = batch_size or spec.batch_size
    idx = lax.dynamic_slice(state.perm, (state.pos,), (bs,))
    images = data["x_train"][idx]
    if spec.augment_pad or spec.augment_flip:
        key = jax.random.fold_in(augment_key(hp), state.step)
        images = augment(images, key, hp["aug_crop"], hp["aug_flip"],
                         pad=spec.augment_pad, flip=spec.augment_flip)  # fmt: skip
    x = normalize(images, data["mean"], data["std"])
    y = data["y_train"][idx]
    rng = jax.random.fold_in(dropout_key(hp), state.step)
    rate_kw = {}
    if spec.member_dropout:  # the member's rate as data (negative: the model's)
        own = float(getattr(model, "dropout_rate", 0.0))
        rate_kw["dropout_rate"] = jnp.where(hp["dropout"] < 0, own, hp["dropout"])

    def loss_fn(params):
        variables = _cast(
            {**model_variables(state), "params": params}, spec.compute_dtype
        )
        xc = x.astype(spec.compute_dtype)
        if state.batch_stats:
            logits, new_vars = model.apply(
                variables,
                xc,
                train=True,
                rngs={"dropout": rng},
                mutable=["batch_stats"],
                **rate_kw,
            )
            new_bs = _cast(new_vars["batch_stats"], jnp.float32)
        else:
            logits = model.apply(
                variables, xc, train=True, rngs={"dropout": rng}, **rate_kw
            )
            new_bs = state.batch_stats
        logits = logits.astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (logits, new_bs)

    (loss, (logits, new_bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    lr = learning_rate(spec, hp, state.seen, state.lr_scale)

    # A member whose loss or gradient is not finite diverges here; a diverged or
    # stopped member is frozen: its step gets zero gradient and LR 0, so its
    # parameters stay exactly as they are. (Zeroing fuses into the optimizer's
    # update; selecting between old and new states would be a pass over every
    # parameter and optimizer leaf, a third of a small model's step.) A frozen
    # member's optimizer state still decays (momentum x mu, Adam's count), which
    # no reported number reads.
    raw_grads = grads
    finite = jnp.isfinite(loss) & _all_finite(grads)
    diverged = state.diverged | (~finite & ~state.stopped)
    frozen = diverged | state.stopped
    grads = jax.tree.map(lambda g: jnp.where(frozen, jnp.zeros_like(g), g), grads)
    decay = scheduled_weight_decay(hp, state.seen) if spec.wd_scheduled else {}
    updates, opt_state = make_tx(
        spec, {**hp, **decay}, jnp.where(frozen, 0.0, lr)
    ).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_bs = _tree_where(frozen, state.batch_stats, new_bs)
    new_state = state.replace(
        params=params,
        batch_stats=new_bs,
        opt_state=opt_state,
        step=state.step + 1,
        pos=state.pos + bs,
        seen=state.seen + bs,
        diverged=diverged,
    )
    acc = jnp.mean(jnp.argmax(logits, -1) == y)
    # A frozen member's numbers are NaN, so its curves end where it stopped.
    metrics = {
        "loss": jnp.where(frozen, jnp.nan, loss),
        "acc": jnp.where(frozen, jnp.nan, acc),
        "lr": jnp.where(frozen, jnp.nan, lr),
    }
    if decay:  # the coefficient applied (one form is nonzero per member)
        metrics["wd"] = jnp.where(frozen, jnp.nan, sum(decay.values()))
    extra = probes.step_probes(spec.probes, state.params, updates, raw_grads)
    if extra:
        # one output for all of them, in sorted name order (fewer outputs per
        # step: a dozen scalars cost more to carry out than to compute)
        stacked = jnp.stack([extra[k] for k in sorted(extra)])
        metrics["probes"] = jnp.where(frozen, jnp.nan, stacked)
    return new_state, metrics


def eval_batch(spec: TrainSpec, state: MemberState, batch: Mapping):
    """Summed loss and correct count of one member on one padded batch.

    ``batch``: ``x: [eval_bs, H, W, C] uint8``, ``y: [eval_bs]``, ``mask: [eval_bs]``
    (0 for padding), ``mean``, ``std``.
    """
    model = spec.build_model()
    x = normalize(batch["x"], batch["mean"], batch["std"]).astype(spec.compute_dtype)
    variables = _cast(model_variables(state), spec.compute_dtype)
    logits = model.apply(variables, x, train=False).astype(jnp.float32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
    correct = jnp.argmax(logits, -1) == batch["y"]
    mask = batch["mask"]
    return jnp.sum(losses * mask), jnp.sum(correct * mask)
