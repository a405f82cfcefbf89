"""A run directory holds everything needed to use its weights: restored with
plain flax and the normalisation statistics of ``config.json``, a member
gives its ``test_acc`` in ``members.csv`` exactly (the README's example,
executed as written)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbatch import data, results, sweep
from jaxbatch.models import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run(fmnist, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("weights") / "run")
    config = sweep.SweepConfig(
        experiment="test", model="mlp", model_kwargs=(("hidden", (32,)),),
        batch_sizes=(64,), lrs=(0.01, 0.1), epochs=1, eval_every=4,
        strategy="vmap",
    )  # fmt: skip
    sweep.run(config, out, progress=False, plots=False, dataset=fmnist)
    return out


def _correct(logits, y) -> int:
    return int(np.sum(np.argmax(np.asarray(logits), -1) == y))


def _same_accuracy(acc: float, test_acc: float, n: int) -> None:
    """The same count of correctly classified images; the float32 quotient
    may differ in its last bit (XLA divides by n its own way)."""
    assert round(acc * n) == round(test_acc * n)
    assert acc == pytest.approx(test_acc, rel=1e-6)


def test_config_json_records_the_statistics_the_members_were_trained_with(fmnist, run):
    info = results.data_info(run)
    # the same float32 values, bit for bit, that normalised every input
    assert info["mean"].dtype == np.float32 and info["std"].dtype == np.float32
    np.testing.assert_array_equal(info["mean"], fmnist.mean)
    np.testing.assert_array_equal(info["std"], fmnist.std)
    assert info["class_names"] == fmnist.class_names
    assert info["class_names"][9] == "Ankle boot"
    assert info["image_shape"] == fmnist.image_shape == (28, 28, 1)
    assert info["num_classes"] == 10


def test_load_member_evaluates_to_the_members_test_acc_exactly(fmnist, run):
    members = results.read_members(run)
    accs = []
    for i in (0, 1):
        m = results.load_member(run, i)
        assert (m["model"], m["model_kwargs"]) == ("mlp", {"hidden": (32,)})
        model = get_model(m["model"], num_classes=m["num_classes"], **m["model_kwargs"])
        mean, std = m["data"]["mean"], m["data"]["std"]
        x = (jnp.asarray(fmnist.x_test, jnp.float32) / 255.0 - mean) / std
        logits = model.apply(m["variables"], x, train=False)
        n, correct = len(fmnist.y_test), _correct(logits, fmnist.y_test)
        test_acc = members["test_acc"][list(members["member"]).index(i)]
        assert correct == round(test_acc * n)
        _same_accuracy(correct / n, test_acc, n)
        accs.append(correct)
    assert accs[0] != accs[1]  # two members that learnt differently


def _readme_example() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    found = [b for b in blocks if "msgpack_restore" in b]
    assert len(found) == 1, "the README shows restoring a member once"
    return found[0]


def test_the_readme_example_restores_a_member_with_plain_flax(run):
    if not os.path.isdir(data.FASHION_MNIST_SYSTEM_DIR):
        pytest.skip("the example reads Fashion-MNIST from the system directory")
    code = _readme_example()
    assert "jaxbatch" not in code.replace("from jaxbatch.models import", "")
    members = results.read_members(run)
    for i in (0, 1):
        example, n = re.subn(
            r"^run, member = .*$", f"run, member = {run!r}, {i}", code, flags=re.M
        )
        assert n == 1
        scope, printed = {}, io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(example, "README.md", "exec"), scope)  # noqa: S102
        test_acc = members["test_acc"][list(members["member"]).index(i)]
        _same_accuracy(scope["accuracy"], test_acc, len(scope["y"]))
        assert printed.getvalue().startswith(f"test accuracy {scope['accuracy']:.4f}")


def test_a_run_without_recorded_statistics_says_how_to_get_them(run, tmp_path):
    old = shutil.copytree(run, tmp_path / "old")
    path = old / "config.json"
    saved = json.loads(path.read_text())
    for key in ("mean", "std", "class_names"):
        del saved["data"][key]
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="records no mean, std, class_names"):
        results.load_member(str(old), 0)
    assert set(results.load_params(str(old), 0)) == {"params", "batch_stats"}
