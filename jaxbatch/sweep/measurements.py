"""The hooks that measure: evaluation, the probes, and a user's own metric.

Each declares its columns and returns ``{name: values[members]}`` at its
cadence (:mod:`jaxbatch.sweep.hooks`); a probe that is off is not a hook, so
it costs nothing and the training step is the program it always was.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxbatch import interpolation, probes, recipes, results, stats
from jaxbatch.engine.group import eval_members, fetch, member_fn
from jaxbatch.engine.probe_steps import batch_metric, noise_probe, sharpness_probe
from jaxbatch.sweep.hooks import EVALS, Columns, Hook
from jaxbatch.sweep.plan import GroupPlan
from jaxbatch.sweep.state import GroupRun, SweepRun

NAN = float("nan")


class Evaluation(Hook):
    """Validation loss and accuracy at every evaluation; after training, the
    final parameters (and, under early stopping, the best ones) in eval mode
    on a fixed training subset and the test split.

    ``members.csv``: ``final_val_*`` (the last evaluation), over every
    evaluation ``min_val_loss`` (the lowest validation loss),
    ``val_acc_at_best_loss`` (the accuracy of that evaluation: it can be
    below ``final_val_acc``) and ``max_val_acc`` (the highest accuracy),
    ``best_val_step`` (the step of the best evaluation by ``control_metric``;
    under early stopping the one whose parameters were kept), ``train_eval_*``,
    ``test_*``, ``best_test_*``, and the clean overfitting gaps ``gap_loss =
    final_val_loss - train_eval_loss``, ``gap_acc = train_eval_acc -
    final_val_acc``. A stopped member's numbers are those where it stopped; a
    diverged member's are empty.
    """

    FINAL = ("train_eval", "test")

    def columns(self, plan: GroupPlan) -> Columns:
        return Columns(evals=("val_loss", "val_acc"), members=(
            "train_eval_loss", "train_eval_acc", "final_val_loss", "final_val_acc",
            "min_val_loss", "val_acc_at_best_loss", "max_val_acc", "best_val_step",
            "test_loss", "test_acc", "best_test_loss", "best_test_acc", "gap_loss",
            "gap_acc",
        ))  # fmt: skip

    def start(self, g: GroupRun) -> None:
        g.first_call(eval_members, g.fns, g.spec, g.state, g.sweep.device.evals["val"])

    def at_eval(self, g: GroupRun, e: int) -> dict:
        g.last_eval = eval_members(g.fns, g.spec, g.state, g.sweep.device.evals["val"])
        # Curves end where a member diverged or stopped (the evaluation that
        # stopped it is kept).
        gone = g.gone()
        return {
            k: np.where(gone, np.nan, g.last_eval[k]) for k in ("val_loss", "val_acc")
        }

    def at_end(self, g: GroupRun) -> dict:
        out = {}
        early = g.spec.early_stopping is not None
        if early:  # the evaluation whose parameters early stopping kept
            out["best_eval"] = fetch(g.state.early.best_step)
        for name in self.FINAL:
            if name not in g.sweep.device.evals:
                continue
            ev = eval_members(g.fns, g.spec, g.state, g.sweep.device.evals[name])
            out[f"{name}_loss"], out[f"{name}_acc"] = ev["val_loss"], ev["val_acc"]
            if early:
                best = g.state.replace(params=g.state.best_params)
                ev = eval_members(g.fns, g.spec, best, g.sweep.device.evals[name])
                out[f"best_{name}_loss"] = ev["val_loss"]
                out[f"best_{name}_acc"] = ev["val_acc"]
        return out

    def results(self, g: GroupRun, i: int) -> dict:
        h, diverged = g.history, bool(g.final["diverged"][i])

        def final(key):
            return NAN if diverged or key not in g.final else float(g.final[key][i])

        evaluated = np.flatnonzero(np.isfinite(h["val_loss"][i]))
        e = evaluated[-1] if len(evaluated) and not diverged else None
        val_loss = float(h["val_loss"][i, e]) if e is not None else NAN
        val_acc = float(h["val_acc"][i, e]) if e is not None else NAN
        # a best evaluation needs a finite value of the control metric (a
        # member that blew up at once has an accuracy but no finite loss)
        has_best = np.isfinite(h[g.config.control_metric][i]).any()
        best = self._best(g, i) if has_best else -1
        losses, accs = h["val_loss"][i], h["val_acc"][i]
        has_loss, has_acc = np.isfinite(losses).any(), np.isfinite(accs).any()
        lowest = int(np.nanargmin(losses)) if has_loss else -1
        return {
            "train_eval_loss": final("train_eval_loss"),
            "train_eval_acc": final("train_eval_acc"),
            "final_val_loss": val_loss,
            "final_val_acc": val_acc,
            "min_val_loss": float(losses[lowest]) if has_loss else NAN,
            "val_acc_at_best_loss": float(accs[lowest]) if has_loss else NAN,
            "max_val_acc": float(np.nanmax(accs)) if has_acc else NAN,
            "best_val_step": int(g.plan.eval_steps[best]) if has_best else None,
            "test_loss": final("test_loss"),
            "test_acc": final("test_acc"),
            "best_test_loss": final("best_test_loss"),
            "best_test_acc": final("best_test_acc"),
            "gap_loss": val_loss - final("train_eval_loss"),
            "gap_acc": final("train_eval_acc") - val_acc,
        }

    @staticmethod
    def _best(g: GroupRun, i: int) -> int:
        """The member's best evaluation: the one early stopping kept, else the
        best by the control metric (lowest loss or highest accuracy)."""
        if "best_eval" in g.final and g.final["best_eval"][i] >= 0:
            return int(g.final["best_eval"][i])
        if g.config.control_metric == "val_acc":
            return int(np.nanargmax(g.history["val_acc"][i]))
        return int(np.nanargmin(g.history["val_loss"][i]))


class StepProbes(Hook):
    """The update/weight ratio, gradient and parameter norms (overall and per
    layer) at every ``probe_every``-th step, computed inside a probed step of
    their own; ``members.csv`` gets the median update ratio of the last epoch."""

    def columns(self, plan: GroupPlan) -> Columns:
        names = probes.step_metric_names(plan.spec.probes, plan.layers)
        ratio = ("update_ratio",) if "update_ratio" in plan.spec.probes else ()
        return Columns(steps=names, members=ratio)

    def after_steps(self, g: GroupRun, start: int, stop: int, metrics) -> None:
        if "probes" in metrics:  # [members, steps, probes], names sorted
            for j, name in enumerate(self.columns(g.plan).steps):
                g.write(name, slice(start, stop), metrics["probes"][..., j])

    def results(self, g: GroupRun, i: int) -> dict:
        if not self.columns(g.plan).members:
            return {}
        last = g.last_epoch(i)
        ratio = g.history["update_ratio"][i, last] if len(last) else np.array([])
        ratio = ratio[np.isfinite(ratio)]  # the probed steps of the last epoch
        return {"update_ratio": float(np.median(ratio)) if len(ratio) else NAN}


class NoiseScale(Hook):
    """McCandlish et al.'s simple noise scale at every ``every``-th evaluation
    (and the last), from ``size`` training images; ``history.csv`` gets the
    unbiased ``|G|²`` and ``tr(Σ)`` estimates and their smoothed ratio,
    ``members.csv`` the last ratio."""

    def __init__(self, size: int, every: int):
        self.size, self.eval_every = size, every

    def columns(self, plan: GroupPlan) -> Columns:
        return Columns(evals=("noise_g2", "noise_tr"), members=("noise_scale",),
                       computed=("noise_scale",))  # fmt: skip

    def _fn(self, g: GroupRun):
        return member_fn(g.spec, noise_probe, self.size)

    def start(self, g: GroupRun) -> None:
        g.first_call(self._fn(g), g.state, g.hp, g.sweep.device.train)

    def at_eval(self, g: GroupRun, e: int) -> dict | None:
        last = e == len(g.plan.eval_steps) - 1
        if not (e % self.eval_every == 0 or last):
            return None
        g2, tr = fetch(self._fn(g)(g.state, g.hp, g.sweep.device.train))
        return {"noise_g2": g2, "noise_tr": tr}

    def history(self, g: GroupRun) -> dict:
        g2, tr = g.history["noise_g2"], g.history["noise_tr"]
        return {"noise_scale": (EVALS, probes.smooth_noise_scale(g2, tr)),
                "noise_g2": (EVALS, g2), "noise_tr": (EVALS, tr)}  # fmt: skip

    def results(self, g: GroupRun, i: int) -> dict:
        h = g.history
        ns = probes.smooth_noise_scale(
            h["noise_g2"][i : i + 1], h["noise_tr"][i : i + 1]
        )
        ok = np.flatnonzero(np.isfinite(ns[0]))
        gone = bool(g.final["diverged"][i])
        return {"noise_scale": float(ns[0][ok[-1]]) if len(ok) and not gone else NAN}


class Sharpness(Hook):
    """The Hessian's top eigenvalue and Keskar's ε-sharpness of the final
    parameters, on a fixed subset of ``size`` training images."""

    def __init__(self, size: int, eps: tuple[float, ...]):
        self.size, self.eps = size, tuple(eps)

    def columns(self, plan: GroupPlan) -> Columns:
        return Columns(members=probes.sharpness_names(self.eps))

    def at_end(self, g: GroupRun) -> dict:
        fn = member_fn(g.spec, sharpness_probe, self.size, self.eps)
        return fetch(fn(g.state, g.hp, g.sweep.device.train))


class WeightStats(Hook):
    """The norm of every member's final parameters and the fraction of its
    kernel weights near zero (``|w| < 1e-3``), from the gathered weights."""

    def columns(self, plan: GroupPlan) -> Columns:
        return Columns(members=("weight_norm", "near_zero_frac"))

    def at_end(self, g: GroupRun) -> dict:
        params = g.weights["final"]["params"]
        rows = [
            probes.weight_stats(jax.tree.map(lambda a, i=i: a[i], params))
            for i in range(g.n_real)
        ]
        return {
            k: np.asarray([r[k] for r in rows]) for k in self.columns(g.plan).members
        }


class MemberMetric(Hook):
    """A user's measurement: ``fn(params, batch)`` of every member, every
    ``every`` steps (into ``history.csv``) and on the final parameters (into
    ``members.csv``, with its mean and interval over seeds in ``arms.csv``).

    ``batch`` is ``size`` fixed training images: ``{"x", "y", "logits"}``
    (see :func:`jaxbatch.engine.probe_steps.batch_metric`). ``fn`` returns a
    scalar (the column ``name``) or a dict of scalars (a column per key). It
    runs as a program of its own, mapped over the members like the step, so a
    member's values equal its solo run's; a member that diverged or stopped
    reads NaN from there on.
    """

    def __init__(self, name: str, fn: Callable, *, every: int = 0,
                 at_end: bool = True, size: int = 256):  # fmt: skip
        if not (isinstance(name, str) and name.strip()):
            raise ValueError(f"a metric needs a name, got {name!r}")
        if not callable(fn):
            raise ValueError(f"metric {name!r}: fn must be callable, got {fn!r}")
        if not (isinstance(every, int) and every >= 0):
            raise ValueError(
                f"metric {name!r}: every must be an int >= 0, got {every!r}"
            )
        if not (isinstance(size, int) and size > 0):
            raise ValueError(f"metric {name!r}: size must be positive, got {size!r}")
        if not (every or at_end):
            raise ValueError(f"metric {name!r} never runs: give every=N or at_end=True")
        self.metric, self.fn, self.every = name, fn, every
        self.final, self.size = at_end, size

    @property
    def name(self) -> str:
        return f"metric {self.metric!r}"

    def _shape(self, plan: GroupPlan):
        """What ``fn`` returns for this group's model, as shapes."""
        n = min(self.size, plan.spec.n_train)
        batch = {
            "x": jax.ShapeDtypeStruct((n, *plan.spec.image_shape), jnp.float32),
            "y": jax.ShapeDtypeStruct((n,), jnp.int32),
            "logits": jax.ShapeDtypeStruct((n, plan.spec.num_classes), jnp.float32),
        }
        return jax.eval_shape(self.fn, plan.param_shapes, batch)

    def columns(self, plan: GroupPlan) -> Columns:
        out = self._shape(plan)
        names = tuple(out) if isinstance(out, Mapping) else (self.metric,)
        return Columns(steps=names if self.every else (),
                       members=names if self.final else ())  # fmt: skip

    def _measure(self, g: GroupRun) -> dict:
        fn = member_fn(g.spec, batch_metric, self.fn, self.size)
        out = fetch(fn(g.state, g.hp, g.sweep.device.train))
        if isinstance(self._shape(g.plan), Mapping):
            return out
        return {self.metric: out["value"]}

    def start(self, g: GroupRun) -> None:
        g.first_call(self._measure, g)

    def at_step(self, g: GroupRun) -> dict:
        gone = g.gone()
        return {k: np.where(gone, np.nan, v) for k, v in self._measure(g).items()}

    def at_end(self, g: GroupRun) -> dict | None:
        return self._measure(g) if self.final else None


def member_metric(name: str, fn: Callable, *, every: int = 0, at_end: bool = True,
                  size: int = 256) -> MemberMetric:  # fmt: skip
    """A hook measuring ``fn(params, batch)`` of every member (see
    :class:`MemberMetric`), for ``sweep.run(config, hooks=[...])``."""
    return MemberMetric(name, fn, every=every, at_end=at_end, size=size)


class Interpolation(Hook):
    """After the sweep, loss and accuracy along the line between two members'
    final parameters (``interpolation.csv``)."""

    def __init__(self, a: int, b: int):
        self.a, self.b = a, b

    def after_sweep(self, sweep: SweepRun) -> None:
        interpolation.interpolation(sweep.out, self.a, self.b, dataset=sweep.dataset)


def member_probs(spec, state, hp, batch):
    """One member's softmax probabilities on one padded evaluation batch
    (the final parameters, eval mode): ``[eval_bs, classes]``."""
    from jaxbatch.data import normalize
    from jaxbatch.engine.step import model_variables

    model = spec.build_model()
    x = normalize(batch["x"], batch["mean"], batch["std"])
    logits = model.apply(model_variables(state), x, train=False)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


class Ensembles(Hook):
    """The test accuracy of each arm's ensemble: the average of its seeds'
    predicted probabilities (final parameters, diverged seeds left out), one
    more pass over the test split per group. ``ensembles.csv``: the arm (its
    varying fields, as in ``arms.csv``), ``members``, ``seeds``,
    ``ensemble_test_acc``, ``ensemble_test_loss`` (the averaged prediction's
    cross-entropy) and the seeds' ``mean_test_acc`` and ``best_test_acc``."""

    def __init__(self):
        self.probs: dict[int, np.ndarray] = {}
        self.labels = None

    def at_end(self, g: GroupRun) -> None:
        test = g.sweep.device.evals.get("test")
        arms = [recipes.comparable(e["recipe"].replace(seed=0)) for e in g.plan.members]
        if test is None or len(set(arms)) == len(arms):  # no arm of two seeds
            return
        f = member_fn(g.spec, member_probs)
        parts = []
        for i in range(test["x"].shape[0]):
            batch = {k: test[k][i] for k in ("x", "y", "mask")}
            batch["mean"], batch["std"] = test["mean"], test["std"]
            parts.append(fetch(f(g.state, g.hp, batch)))
        probs = np.concatenate(parts, axis=1)[:, : int(test["n"])]
        for i, entry in enumerate(g.plan.members):
            self.probs[entry["member"]] = probs[i]
        self.labels = g.sweep.dataset.y_test

    def after_sweep(self, sweep: SweepRun) -> None:
        if not self.probs or self.labels is None:
            return
        m = results.read_members(sweep.out)
        y = np.asarray(self.labels)
        trained = {int(i): int(i) for i in m["member"]}
        if "shares_training_of" in m:
            for i, j in zip(m["member"], m["shares_training_of"]):
                if str(j) not in ("", "nan"):
                    trained[int(i)] = int(float(j))
        gone = stats.diverged(m)
        rows = []
        for values, idx in stats.arms(m):
            ok = [r for r in idx if not gone[r]]
            ids = [int(m["member"][r]) for r in ok]
            if len(ids) < 2 or any(trained[i] not in self.probs for i in ids):
                continue
            p = np.mean([self.probs[trained[i]] for i in ids], axis=0)
            accs = m["test_acc"][ok].astype(float)
            rows.append({
                **{k: v for k, v in values.items()},
                "members": " ".join(map(str, ids)), "seeds": len(ids),
                "ensemble_test_acc": float(np.mean(np.argmax(p, -1) == y)),
                "ensemble_test_loss": float(
                    -np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))
                ),
                "mean_test_acc": float(np.mean(accs)),
                "best_test_acc": float(np.max(accs)),
            })  # fmt: skip
        if rows:
            columns = list(dict.fromkeys(k for r in rows for k in r))
            results.write_csv(os.path.join(sweep.out, "ensembles.csv"), columns, rows)
