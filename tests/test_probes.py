"""Probes against cases with known answers, jitted and vmapped; probes in a sweep
equal those of a solo run; probes that are off leave the train step as it was."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbatch import data, engine, probes, results, sweep
from jaxbatch.sweep import runner

MLP = (("hidden", (16,)),)


@pytest.fixture(scope="module")
def ds():
    return data.load("synthetic", train_size=256, val_size=128, seed=0)


def _quadratic(eigs, seed=0):
    """0.5 wᵀAw over a two-leaf tree, A = Q diag(eigs) Qᵀ."""
    n = len(eigs)
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    a = jnp.asarray(q @ np.diag(eigs) @ q.T, jnp.float32)

    def loss(params):
        w = jnp.concatenate([params["x"], params["y"].ravel()])
        return 0.5 * w @ a @ w

    params = {"x": jnp.ones(2), "y": jnp.ones((n - 2,)).reshape(-1, 1) * 0.5}
    return loss, params


def test_top_eigenvalue_of_a_quadratic_jitted_and_vmapped():
    eigs = np.array([7.0, 3.0, 2.5, 1.0, 0.5, 0.1])
    loss, params = _quadratic(eigs)
    top = jax.jit(lambda p: probes.hessian_top_eigenvalue(loss, p, jax.random.key(0)))
    assert float(top(params)) == pytest.approx(7.0, rel=1e-3)

    # two members whose losses are the same quadratic scaled by 1 and by 3
    def member(scale, p):
        return probes.hessian_top_eigenvalue(
            lambda q: scale * loss(q), p, jax.random.key(1), iters=40
        )

    stacked = jax.tree.map(lambda x: jnp.stack([x, 2 * x]), params)
    got = jax.jit(jax.vmap(member))(jnp.array([1.0, 3.0]), stacked)
    np.testing.assert_allclose(got, [7.0, 21.0], rtol=1e-3)


def test_eps_sharpness_of_a_quadratic_is_the_corner_of_the_box():
    a = np.array([4.0, 1.0, 0.25])
    c = np.array([0.5, -2.0, 0.0])

    def loss(p):
        return 0.5 * jnp.sum(jnp.asarray(a) * (p["w"] - jnp.asarray(c)) ** 2)

    params = {"w": jnp.asarray(c, jnp.float32)}
    for eps in (1e-3, 5e-4):
        expected = 100 * 0.5 * np.sum(a * (eps * (np.abs(c) + 1)) ** 2)
        got = jax.jit(
            lambda p, e=eps: probes.eps_sharpness(loss, p, e, jax.random.key(2))
        )(params)
        assert float(got) == pytest.approx(expected, rel=1e-4)


def test_noise_scale_of_linear_regression_equals_its_gradient_covariance():
    """B_simple = tr(Σ) / |G|² of the per-example gradients (w·x - y) x, from
    squared norms at batch sizes 64 and 1024 averaged over 400 batches."""
    rng = np.random.default_rng(0)
    n, d = 50_000, 5
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ rng.normal(size=d) + rng.normal(size=n)).astype(np.float32)
    w = jnp.asarray(rng.normal(size=d), jnp.float32)
    per_example = (x @ np.asarray(w) - y)[:, None] * x
    x, y = jnp.asarray(x), jnp.asarray(y)
    g = per_example.mean(0)
    trace = per_example.var(0).sum()

    def grad_fn(w, xb, yb):
        return jax.grad(lambda w: 0.5 * jnp.mean((xb @ w - yb) ** 2))(w)

    @jax.jit
    def estimate(key):
        idx = jax.random.choice(key, n, (1024,), replace=True)
        small, big, part = probes.gradient_sq_norms(grad_fn, w, x[idx], y[idx])
        return probes.noise_scale_estimates(small, big, part, 1024)

    g2, tr = jax.vmap(estimate)(jax.random.split(jax.random.key(0), 400))
    assert float(jnp.mean(g2)) == pytest.approx(float(g @ g), rel=0.05)
    assert float(jnp.mean(tr)) == pytest.approx(float(trace), rel=0.05)
    # the smoothed ratio of constant estimates is their ratio
    ratio = probes.smooth_noise_scale(np.full((1, 3), 2.0), np.full((1, 3), 8.0))
    np.testing.assert_allclose(ratio, 4.0)


def _cfg(**kw):
    base = dict(
        model="mlp", model_kwargs=MLP, batch_sizes=(32,), lrs=(0.05,), epochs=2,
        eval_every=4, strategy="vmap", probe_size=128, noise_every=1,
    )  # fmt: skip
    return sweep.SweepConfig(**{**base, **kw})


def _run(cfg, ds, out):
    sweep.run(cfg, str(out), progress=False, plots=False, dataset=ds)
    return (
        results.read_csv(os.path.join(out, "members.csv")),
        results.read_csv(os.path.join(out, "history.csv")),
    )


def test_update_ratio_of_plain_sgd_is_lr_times_grad_over_weight_norm(ds, tmp_path):
    cfg = _cfg(
        momentums=(0.0,), schedule="constant",
        probes=("update_ratio", "grad_norm", "param_norm"), probe_every=1,
    )  # fmt: skip
    members, h = _run(cfg, ds, tmp_path / "r")
    assert np.all(np.isfinite(h["update_ratio"]))  # every step probed
    for layer in ("", "/Dense_0", "/Dense_1"):
        np.testing.assert_allclose(
            h["update_ratio" + layer],
            0.05 * h["grad_norm" + layer] / h["param_norm" + layer],
            rtol=1e-4,
        )
    last = h["epoch"] == 2
    assert members["update_ratio"][0] == pytest.approx(
        np.median(h["update_ratio"][last]), rel=1e-6
    )


def test_probes_of_a_member_equal_its_solo_run(ds, tmp_path):
    every = ("update_ratio", "noise_scale", "sharpness")
    sweep_cfg = _cfg(lrs=(0.02, 0.05), seeds=(0, 1), probes=every)
    solo_cfg = _cfg(lrs=(0.05,), seeds=(1,), probes=every)
    members, history = _run(sweep_cfg, ds, tmp_path / "sweep")
    solo, solo_h = _run(solo_cfg, ds, tmp_path / "solo")
    i = int(np.flatnonzero((members["lr"] == 0.05) & (members["seed"] == 1))[0])
    for col in ("update_ratio", "noise_scale", "sharpness_eig", "sharpness_eps",
                "sharpness_eps_0.0005"):  # fmt: skip
        assert members[col][i] == pytest.approx(solo[col][0], rel=1e-4), col
    rows = history["member"] == i
    for col in ("update_ratio", "noise_g2", "noise_tr"):
        np.testing.assert_allclose(history[col][rows], solo_h[col], rtol=1e-4)
    # the estimates are of their quantities: a positive squared gradient norm
    # and a positive noise scale
    assert np.all(members["noise_scale"] > 0) and np.all(members["sharpness_eig"] > 0)


def test_probes_off_leave_the_train_step_unchanged(ds):
    def plan(probes_):
        return sweep.plan_groups(_cfg(probes=probes_), ds)[0]

    plain = plan(())
    fns = engine.group_fns(plain.spec)
    state = fns.init(plain.hp)
    train = engine.device_train_data(ds.x_train, ds.y_train, ds.mean, ds.std)

    def text(fn):
        return fn.lower(state, plain.hp, train).as_text()

    eval_only = engine.group_fns(plan(("noise_scale", "sharpness")).spec)
    stepped = engine.group_fns(plan(("update_ratio",)).spec)
    assert text(fns.train_one) == text(eval_only.train_one)
    # with step probes on, the steps between probed ones are the same program
    # too; the probed step is a program of its own
    assert text(fns.train_one) == text(stepped.train_one)
    assert text(fns.train_one) != text(stepped.train_probe)
    assert fns.train_probe is None and eval_only.train_probe is None
    # the other probes are hooks of the sweep, absent when off
    kinds = lambda probes_: {type(h).__name__ for h in runner.sweep_hooks(  # noqa: E731
        _cfg(probes=probes_), tensorboard=False)}  # fmt: skip
    assert "NoiseScale" not in kinds(()) and "Sharpness" not in kinds(())
    assert {"NoiseScale", "Sharpness"} <= kinds(("noise_scale", "sharpness"))


def test_interpolation_ends_are_the_members_own_numbers(ds, tmp_path):
    cfg = _cfg(batch_sizes=(32, 64), interpolate=(0, 1))
    members, _ = _run(cfg, ds, tmp_path / "i")
    table = results.read_csv(os.path.join(tmp_path / "i", "interpolation.csv"))
    for alpha, m in ((0.0, 0), (1.0, 1)):
        j = int(np.flatnonzero(np.isclose(table["alpha"], alpha))[0])
        assert table["test_acc"][j] == pytest.approx(members["test_acc"][m], abs=1e-6)
        assert table["test_loss"][j] == pytest.approx(members["test_loss"][m], rel=1e-4)


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(probes=("sharpnes",)), "unknown probe 'sharpnes'"),
        (dict(interpolate=(0,)), "interpolate takes two"),
        (dict(interpolate=(0, 5)), "interpolate names members [5]"),
        (dict(probes=("noise_scale",), probe_size=16), "probe_size >= 32"),
    ],
)
def test_bad_probe_settings_are_one_line_errors(kw, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        _cfg(**kw)


def test_step_probes_at_a_cadence_change_nothing_else(ds, tmp_path):
    """Probed every 3rd step, the run is the run without probes (the probed
    step is a separate program computing the same update), and the probe
    values sit at steps 3, 6, 9, ..."""
    _, plain = _run(_cfg(), ds, tmp_path / "plain")
    _, probed = _run(_cfg(probes=("update_ratio",), probe_every=3), ds, tmp_path / "p")
    np.testing.assert_array_equal(plain["train_loss"], probed["train_loss"])
    np.testing.assert_array_equal(plain["val_loss"], probed["val_loss"])
    has = np.isfinite(probed["update_ratio"])
    np.testing.assert_array_equal(np.flatnonzero(has), np.flatnonzero(
        probed["step"] % 3 == 0))  # fmt: skip
    # the epoch's smaller last batch (256 = 8 x 32: none here) is never probed


def test_probes_skip_the_smaller_last_batch_of_an_epoch(ds, tmp_path):
    """Batch 48 of 256 images: five full steps and a last one of 16 per epoch;
    probed every 2nd step, the last batches (steps 6 and 12) carry NaN."""
    cfg = _cfg(batch_sizes=(48,), probes=("update_ratio",), probe_every=2)
    _, h = _run(cfg, ds, tmp_path / "last")
    probed = h["step"][np.isfinite(h["update_ratio"])].astype(int).tolist()
    assert probed == [2, 4, 8, 10]
    assert h["batch_size"][h["step"] == 6][0] == 16
