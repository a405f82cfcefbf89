"""The dropout rate as each member's data: a group of rates 0, 0.5, 0.7
equals three solo runs, a rate given as data equals the model's own rate
as a program constant, and rate 0 equals the model without dropout."""

from __future__ import annotations

import numpy as np
import pytest

from jaxbatch import recipes, results, sweep
from jaxbatch.config import SweepConfig

M = recipes.Member
KW = (("hidden", (32,)),)


def _run(members, ds, out, model_kwargs=KW, model="mlp"):
    cfg = SweepConfig(model=model, model_kwargs=model_kwargs, batch_sizes=(32,),
                      recipes=members, epochs=2, eval_every=8,
                      strategy="vmap")  # fmt: skip
    sweep.run(cfg, str(out), progress=False, plots=False, dataset=ds)
    return results.read_members(str(out)), results.read_history(str(out))


def test_a_group_of_rates_equals_the_solo_runs(fmnist, tmp_path):
    rates = (0.0, 0.5, 0.7)
    m, h = _run([M(lr=0.05, dropout=r) for r in rates], fmnist, tmp_path / "g")
    assert len(set(m["group"])) == 1  # one program
    for i, r in enumerate(rates):
        solo_m, solo_h = _run([M(lr=0.05, dropout=r)], fmnist, tmp_path / f"s{i}")
        np.testing.assert_allclose(m["final_val_loss"][i], solo_m["final_val_loss"][0],
                                   rtol=1e-5)  # fmt: skip
        np.testing.assert_allclose(h["train_loss"][h["member"] == i],
                                   solo_h["train_loss"], rtol=1e-5)  # fmt: skip
    # the rates train differently
    assert len({round(float(v), 5) for v in m["final_train_loss"]}) == 3


def test_rate_zero_is_no_dropout_and_a_rate_as_data_is_the_constant(fmnist, tmp_path):
    """MLP without dropout vs dropout=0 as data; MLP with dropout_rate=0.5 in
    the model (a constant) vs dropout=0.5 as data: the same numbers."""
    none, _ = _run([M(lr=0.05)], fmnist, tmp_path / "none")
    zero, _ = _run([M(lr=0.05, dropout=0.0)], fmnist, tmp_path / "zero")
    np.testing.assert_array_equal(none["final_val_loss"], zero["final_val_loss"])
    kw = (*KW, ("dropout_rate", 0.5))
    const, _ = _run([M(lr=0.05)], fmnist, tmp_path / "const", model_kwargs=kw)
    data, _ = _run([M(lr=0.05, dropout=0.5)], fmnist, tmp_path / "data")
    np.testing.assert_allclose(const["final_val_loss"], data["final_val_loss"],
                               rtol=1e-6)  # fmt: skip
    assert const["final_val_loss"][0] != none["final_val_loss"][0]


def test_a_model_without_dropout_refuses_a_rate(fmnist):
    from jaxbatch.sweep.plan import plan_groups

    cfg = SweepConfig(model="simple_cnn", recipes=[M(lr=0.05, dropout=0.5)], epochs=1)
    with pytest.raises(ValueError, match="simple_cnn has no dropout"):
        plan_groups(cfg, fmnist)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        SweepConfig(model="mlp", recipes=[M(lr=0.05, dropout=1.0)])


def test_the_dropouts_flag_is_a_grid_axis():
    cfg = SweepConfig(model="mlp", lrs=(0.05,), batch_sizes=(32,), dropouts=(0.0, 0.5))
    assert [m.dropout for m in cfg.resolved_members()] == [0.0, 0.5]


@pytest.mark.parametrize("name", ["alexnet_small", "alexnet"])
def test_the_conv_nets_traced_rate_is_their_constant_rate(name):
    """One training-mode forward pass: a traced rate equals the model's rate
    as a constant (the same masks), and rate 0 equals no dropout."""
    import jax
    import jax.numpy as jnp

    from jaxbatch import models

    x = jax.random.normal(jax.random.PRNGKey(0), (2, 28, 28, 1))
    net = models.get_model(name, num_classes=10, small_input=True)
    variables = net.init({"params": jax.random.PRNGKey(1)}, x, train=False)
    rngs = {"dropout": jax.random.PRNGKey(2)}
    const = jax.jit(lambda: net.apply(variables, x, train=True, rngs=rngs))()
    traced = jax.jit(lambda r: net.apply(variables, x, train=True, rngs=rngs,
                                         dropout_rate=r))  # fmt: skip
    np.testing.assert_allclose(traced(jnp.float32(0.5)), const, rtol=1e-5, atol=1e-5)
    off = models.get_model(name, num_classes=10, small_input=True, dropout_rate=0.0)
    plain = jax.jit(lambda: off.apply(variables, x, train=True, rngs=rngs))()
    np.testing.assert_allclose(traced(jnp.float32(0.0)), plain, rtol=1e-5, atol=1e-5)
    # and the masks matter: another rate is another output
    assert not np.allclose(traced(jnp.float32(0.7)), const, rtol=1e-3)
