"""The XLA:CPU flags a run chooses from its models (jaxbatch.xla_flags)."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

from jaxbatch import xla_flags

OFF = f"--{xla_flags.YNN_FLAG}="


def test_conv_nets_and_mlps_turn_ynnpack_off_mobilenets_keep_it():
    assert xla_flags.wanted(["simple_cnn"]) == {xla_flags.YNN_FLAG: ""}
    assert xla_flags.wanted(["mlp", "alexnet_small", "squeezenet1_1"]) == {
        xla_flags.YNN_FLAG: ""
    }
    # one model that is faster with the fusions keeps them for the whole process
    assert xla_flags.wanted(["alexnet_small", "mobilenet_v2"]) == {}
    assert xla_flags.wanted([]) == {}


@pytest.fixture
def fresh(monkeypatch):
    """As if JAX had not started yet and this jaxlib knew every flag."""
    monkeypatch.setattr(xla_flags, "backend_started", lambda: False)
    monkeypatch.setattr(xla_flags, "flag_known", lambda name: True)


def test_configure_appends_the_flag_and_respects_the_users_choice(fresh):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert xla_flags.configure(["simple_cnn"], env)
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=8 {OFF}"
    assert not xla_flags.configure(["simple_cnn"], env)  # already there: once
    assert env["XLA_FLAGS"].count(xla_flags.YNN_FLAG) == 1

    mine = {"XLA_FLAGS": f"--{xla_flags.YNN_FLAG}=dot"}
    assert not xla_flags.configure(["simple_cnn"], mine)
    assert mine["XLA_FLAGS"] == f"--{xla_flags.YNN_FLAG}=dot"

    off = {"JAXBATCH_XLA_DEFAULTS": "0"}
    assert not xla_flags.configure(["simple_cnn"], off)
    assert "XLA_FLAGS" not in off


def test_configure_never_adds_a_flag_this_jaxlib_does_not_know(monkeypatch):
    # an unknown flag in XLA_FLAGS aborts the process when JAX starts
    monkeypatch.setattr(xla_flags, "backend_started", lambda: False)
    monkeypatch.setattr(xla_flags, "flag_known", lambda name: False)
    env: dict = {}
    assert not xla_flags.configure(["simple_cnn"], env)
    assert env == {}


def test_flag_known_reads_the_installed_jaxlib():
    assert not xla_flags.flag_known("xla_cpu_no_such_flag_anywhere")
    assert xla_flags.flag_known("xla_force_host_platform_device_count")


def test_configure_does_nothing_once_jax_has_started():
    jax.numpy.zeros(1).block_until_ready()
    assert xla_flags.backend_started()
    env: dict = {}
    assert not xla_flags.configure(["simple_cnn"], env)
    assert env == {}


_COMPILED = textwrap.dedent(
    """
    import sys
    from jaxbatch import xla_flags
    changed = xla_flags.configure(sys.argv[1].split(","))
    import jax, jax.numpy as jnp
    from jax import lax
    x, w = jnp.ones((8, 14, 14, 32)), jnp.ones((3, 3, 32, 64))
    f = lambda x, w: lax.conv_general_dilated(
        x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    text = jax.jit(jax.grad(lambda w: f(x, w).sum())).lower(w).compile().as_text()
    print(changed, "__ynn_fusion" in text)
    """
)


@pytest.mark.skipif(
    not xla_flags.flag_known(xla_flags.YNN_FLAG), reason="jaxlib has no YNNPACK flag"
)
def test_the_flag_reaches_the_compiler_before_jax_starts():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)

    def compiled(models):
        out = subprocess.run(
            [sys.executable, "-c", _COMPILED, models],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return out.stdout.split()

    changed, ynn = compiled("simple_cnn")
    assert (changed, ynn) == ("True", "False")  # the convolution is XLA's own
    changed, ynn_default = compiled("mobilenet_v1")
    assert changed == "False"  # the MobileNets compile as jaxlib's default does
    if jax.__version__.startswith("0.10."):  # whose default is YNNPACK's
        assert ynn_default == "True"


def test_devices_make_the_cpu_that_many_devices_even_without_the_speed_flags(fresh):
    env = {"JAXBATCH_XLA_DEFAULTS": "0"}
    assert xla_flags.configure(["simple_cnn"], env, devices=2)
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    assert xla_flags.wanted(["mobilenet_v1"], devices=1) == {}


_CLI = textwrap.dedent(
    """
    import json, sys
    from experiments import alexnet_bs_sweep
    out = alexnet_bs_sweep.EXPERIMENT.main(sys.argv[1:])
    print(json.dumps(json.load(open(out + "/config.json"))["environment"]))
    """
)


def test_a_cli_run_on_two_cpu_devices_records_the_flags_it_ran_with(tmp_path):
    # `--devices 2` works on a CPU-only machine: the flags are set before the
    # configuration's placement check starts JAX.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    args = [
        "--model", "mlp", "--model-kwargs", "hidden=(8,)", "--dataset", "synthetic",
        "--train-size", "128", "--val-size", "32", "--no-test",
        "--batch-sizes", "32", "--lrs", "0.01,0.02", "--epochs", "1",
        "--devices", "2", "--no-plots", "--no-progress", "--out", str(tmp_path / "r"),
    ]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", _CLI, *args], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    recorded = json.loads(out.stdout.strip().splitlines()[-1])
    assert recorded["device_count"] == 2
    assert "--xla_force_host_platform_device_count=2" in recorded["xla_flags"]
    if xla_flags.flag_known(xla_flags.YNN_FLAG):
        assert OFF in recorded["xla_flags"]
