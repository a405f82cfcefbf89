"""Fault injection: kills at several moments, damaged checkpoints, signals, a
full disk, and bad input. Each ends in one clear line, and a resumed run ends
with the numbers of a run that was never disturbed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxbatch import results, schedules
from jaxbatch.experiment import Experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 6


def _cli(out, *extra, epochs=EPOCHS):
    return [
        sys.executable, "-m", "experiments.alexnet_bs_sweep", "--dataset", "synthetic",
        "--train-size", "320", "--val-size", "64", "--model", "mlp", "--model-kwargs",
        "hidden=(16,)", "--batch-sizes", "32", "--lrs", "0.02,0.05", "--schedule",
        "step", "--epochs", str(epochs), "--eval-every", "5", "--strategy", "vmap",
        "--seeds", "0", "--no-progress", "--no-plots", "--out", str(out), *extra,
    ]  # fmt: skip


def _same_results(a, b):
    for name in ("members.csv", "history.csv"):
        x = results.read_csv(os.path.join(a, name))
        y = results.read_csv(os.path.join(b, name))
        for col in ("final_val_loss", "test_loss", "train_eval_loss", "train_loss"):
            if col in x:
                np.testing.assert_allclose(y[col], x[col], atol=1e-6, err_msg=col)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(_cli(out), cwd=ROOT, check=True, capture_output=True)
    return out


def _wait_for(proc, predicate, timeout=120):
    deadline = time.time() + timeout
    while not predicate() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    return predicate()


def _ckpt(out):
    return out / "checkpoints" / "group_0"


def _saving(out):
    """True while orbax writes a checkpoint (its temporary directory exists)."""
    d = _ckpt(out)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return False
    return any(not re.fullmatch(r"epoch_\d+", n) for n in names)


MOMENTS = {
    "during the first compile": lambda out: (out / "config.json").exists(),
    "after epoch 2": lambda out: (_ckpt(out) / "epoch_0002").exists(),
    "while a checkpoint is written": _saving,
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_then_resume_equals_uninterrupted(moment, reference, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli(out), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    hit = _wait_for(proc, lambda: MOMENTS[moment](out))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not hit or proc.returncode != -signal.SIGKILL:
        pytest.skip(f"the run passed '{moment}' before it could be killed")
    subprocess.run(_cli(out, "--resume"), cwd=ROOT, check=True, capture_output=True)
    _same_results(reference, out)


def _truncate_data(step):
    files = [os.path.join(d, f) for d, _, fs in os.walk(step) for f in fs]
    biggest = max(files, key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.truncate(os.path.getsize(biggest) // 2)


def _delete(name):
    def damage(step):
        path = step / name
        assert path.exists(), sorted(os.listdir(step))
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return damage


def _empty(step):
    shutil.rmtree(step)
    step.mkdir()


DAMAGE = {
    "truncated data file": _truncate_data,
    "_METADATA deleted": _delete("_METADATA"),
    "ocdbt.process_0 deleted": _delete("ocdbt.process_0"),
    "empty step directory": _empty,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_newest_checkpoint_falls_back_to_the_one_before(damage, reference,
                                                                 tmp_path):  # fmt: skip
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    for name in ("members.csv", "history.csv"):
        (out / name).unlink()
    DAMAGE[damage](_ckpt(out) / f"epoch_{EPOCHS:04d}")
    done = subprocess.run(_cli(out, "--resume"), cwd=ROOT, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    said = [line for line in (done.stdout + done.stderr).splitlines()
            if "does not restore" in line]  # fmt: skip
    assert len(said) == 1, said
    assert f"resuming from the checkpoint of epoch {EPOCHS - 1}" in done.stdout
    assert "Event loop is closed" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    _same_results(reference, out)


@pytest.mark.parametrize(
    ("sig", "code", "moment"),
    [
        (signal.SIGTERM, 143, "after epoch 2"),
        (signal.SIGINT, 130, "after epoch 2"),
    ],
)
def test_sigterm_and_sigint_say_how_to_resume(sig, code, moment, reference, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli(out), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert _wait_for(proc, lambda: MOMENTS[moment](out))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    resume = [line for line in err.splitlines() if "--resume" in line]
    assert len(resume) == 1 and "experiments.alexnet_bs_sweep" in resume[0]
    subprocess.run(_cli(out, "--resume"), cwd=ROOT, check=True, capture_output=True)
    _same_results(reference, out)


def test_a_signal_during_a_checkpoint_save_waits_for_the_save(tmp_path):
    from jaxbatch import checkpoint

    tree = {"w": np.arange(1000, dtype=np.float32)}
    seen = []
    # Python's own Ctrl-C handler (a library imported earlier may have set another)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt):
        with checkpoint.deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal arrives here, and waits
            checkpoint.save(str(tmp_path), 1, tree)
            seen.append("saved")
    assert seen == ["saved"]
    assert checkpoint.verify(str(tmp_path), 1) is None  # complete and whole
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    signal.signal(signal.SIGINT, previous)


def test_disk_full_is_one_line_and_resumable(reference, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs",
                           str(mnt)], capture_output=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot make a small filesystem here: {made.stderr!r}")
    try:
        out = mnt / "run"
        start = time.time()
        done = subprocess.run(_cli(out), cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "need" in lines[0] and "free" in lines[0], lines
        # refused before anything compiled or was written: --out stays new
        assert not out.exists() and time.time() - start < 60
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        subprocess.run(_cli(out), cwd=ROOT, check=True, capture_output=True)
        _same_results(reference, out)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def _leftovers(out):
    return [os.path.join(d, f) for d, ds, fs in os.walk(out) for f in fs + ds
            if f.endswith(".tmp") or "orbax-checkpoint-tmp" in f]  # fmt: skip


SITES = ["config.json", "checkpoint", "members.csv", "history.csv", "params",
         "plots", "report.html"]  # fmt: skip


@pytest.mark.parametrize("site", SITES)
def test_disk_full_at_each_write_site(site, tmp_path, capsys, monkeypatch):
    """A full disk while writing any results file: one line naming the file,
    exit 2, no temporary file left, and ``--resume`` (or, before any training,
    the same command) ends with the numbers of an undisturbed run."""
    import orbax.checkpoint as ocp

    from jaxbatch import results as res

    argv = [a for a in BASE if a != "--no-plots"] + [
        "--dataset", "synthetic", "--train-size", "64", "--val-size", "32",
        "--batch-sizes", "32", "--epochs", "2"]  # fmt: skip
    exp = Experiment(name="alexnet_bs_sweep", doc="", claim="a test",
                     presets={"quick": {}})  # fmt: skip
    ref = tmp_path / "ref"
    exp.main([*argv, "--out", str(ref)])
    out = tmp_path / "run"
    full = OSError(28, "No space left on device")
    if site == "checkpoint":
        real_save = ocp.StandardCheckpointer.save

        def save(self, path, *a, **k):
            if str(path).endswith("epoch_0002"):
                raise full
            return real_save(self, path, *a, **k)

        monkeypatch.setattr(ocp.StandardCheckpointer, "save", save)
    else:
        real_replace = res.os.replace

        hit = {"params": f"{os.sep}params{os.sep}",
               "plots": f"{os.sep}plots{os.sep}"}.get(site, os.sep + site)  # fmt: skip

        def replace(src, dst):
            if hit in str(dst) and str(dst).startswith(str(out)):
                raise full
            return real_replace(src, dst)

        monkeypatch.setattr(res.os, "replace", replace)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        exp.main([*argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2, err
    assert len(err.splitlines()) == 1 and "disk full while writing" in err, err
    where = {"checkpoint": "epoch_0002", "params": "member_0.msgpack",
             "plots": ".png"}.get(site, site)  # fmt: skip
    assert where in err, err
    assert _leftovers(out) == []
    monkeypatch.undo()
    again = [*argv, "--out", str(out)] + ([] if site == "config.json" else ["--resume"])
    exp.main(again)
    _same_results(ref, out)
    assert (out / "report.html").exists() and _leftovers(out) == []


def test_a_second_writer_is_refused_and_a_killed_ones_lock_is_not(tmp_path):
    from jaxbatch.sweep import rundir

    out = tmp_path / "run"
    long = 400  # epochs: the first run is still training when the others start
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    first = subprocess.Popen(_cli(out, epochs=long), cwd=ROOT, **quiet)
    try:
        assert _wait_for(first, lambda: (_ckpt(out) / "epoch_0001").exists())
        config = (out / "config.json").read_text()
        for extra in ([], ["--resume"]):  # another sweep, or the same one resumed
            other = [*_cli(out, epochs=long), *extra]
            other[other.index("--lrs") + 1] = "0.5,0.7" if not extra else "0.02,0.05"
            done = subprocess.run(other, cwd=ROOT, capture_output=True, text=True)
            lines = done.stderr.strip().splitlines()
            assert first.poll() is None, "the first run ended too soon for the test"
            assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
            if extra:
                assert f"pid {first.pid}" in lines[0], lines
        assert (out / "config.json").read_text() == config  # untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the kernel dropped the killed run's lock: a resume may take it
    rundir.RunLock(str(out)).release()


def test_resume_refuses_checkpoints_of_other_members(tmp_path, capsys):
    from jaxbatch import checkpoint

    argv = [*BASE, "--dataset", "synthetic", "--train-size", "64", "--val-size",
            "32", "--batch-sizes", "32", "--epochs", "2"]  # fmt: skip
    exp = Experiment(name="alexnet_bs_sweep", doc="", claim="a test",
                     presets={"quick": {}})  # fmt: skip
    out = tmp_path / "run"
    exp.main([*argv, "--lrs", "0.01,0.02", "--out", str(out)])
    capsys.readouterr()
    # the checkpoint's recorded members no longer match config.json's
    directory = _ckpt(out)
    manifest = directory / "epoch_0002" / checkpoint.MANIFEST
    saved = results.read_json(str(manifest))
    saved["meta"]["members"][0]["lr"] = 0.05
    results.write_json(str(manifest), saved)
    (out / "members.csv").unlink()
    err = _fail([*argv, "--lrs", "0.01,0.02", "--out", str(out), "--resume"], capsys)
    assert "hold other members" in err, err
    assert "lr (--lrs) 0.05 there, 0.01 here" in err, err


def test_a_signal_while_figures_are_written_stops_with_the_resume_hint(tmp_path):
    out = tmp_path / "run"
    argv = [a for a in _cli(out, epochs=2) if a != "--no-plots"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert _wait_for(proc, lambda: (out / "plots").is_dir(), timeout=300)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the figures were done before the signal arrived")
    assert proc.returncode == 143, err[-2000:]
    assert "Exception ignored" not in err and "Traceback" not in err, err[-2000:]
    assert "--resume" in err.strip().splitlines()[-1]
    assert not (out / "report.html").exists()
    subprocess.run([*argv, "--resume"], cwd=ROOT, check=True, capture_output=True)
    assert (out / "report.html").exists()


# --- bad input: one line, exit 2, nothing that blocks a new run ------------------


def _fail(argv, capsys):
    with pytest.raises(SystemExit) as info:
        Experiment(
            name="alexnet_bs_sweep", doc="", claim="a test", presets={"quick": {}}
        ).main(argv)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2, err
    assert len(err.splitlines()) == 1, err
    return err


BASE = ["--model", "mlp", "--model-kwargs", "hidden=(8,)", "--epochs", "1",
        "--strategy", "vmap", "--no-progress", "--no-plots"]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--dataset", "fashion_mnist", "--data-dir", "/nonexistent"],
            "Fashion-MNIST not found in /nonexistent",
        ),
        (["--dataset", "imagefolder", "--data-dir", "/nonexistent"], "does not exist"),
        (
            ["--seed", "-3"],
            "seed \\(--(data-seed|seeds)\\) must be an integer in \\[0, 2",
        ),
        (
            ["--seeds", "99999999999999999999"],
            "seed \\(--seeds\\) must be an integer in",
        ),
        (
            ["--seeds", "-1,-2"],
            "seed \\(--seeds\\) must be an integer in \\[0, 2\\*\\*31\\), got -1",
        ),
        (
            ["--warmup-epochs", "nan"],
            "warmup_epochs \\(--warmup-epochs\\) must be >= 0, got nan",
        ),
        (
            ["--data-seed", "-1"],
            "data_seed \\(--data-seed\\) must be an integer in \\[0, 2",
        ),
        (
            ["--freeze", "Conv_9"],
            "freeze \\(--freeze\\) pattern 'Conv_9' matches no parameter",
        ),
        (
            ["--plateau-min-scale", "2"],
            "plateau_min_scale \\(--plateau-min-scale\\) must be a number in \\[0, 1",
        ),
        (["--plateau-threshold", "inf"], "got inf \\(not a finite number\\)"),
        (
            ["--lrs", "0.01", "--weight-decays", "nan"],
            "weight_decay \\(--weight-decays\\) must be",
        ),
    ],
)
def test_bad_flags_are_one_line(flags, message, tmp_path, capsys):
    err = _fail([*BASE, "--dataset", "synthetic", "--out", str(tmp_path / "o"),
                 *flags], capsys)  # fmt: skip
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_resume_keeps_the_measured_throughput_and_allows_another_cache_setting(
    tmp_path, capsys
):
    argv = [*BASE, "--dataset", "synthetic", "--train-size", "64", "--val-size",
            "32", "--batch-sizes", "32", "--epochs", "2"]  # fmt: skip
    exp = Experiment(name="alexnet_bs_sweep", doc="", claim="a test",
                     presets={"quick": {}})  # fmt: skip
    out = tmp_path / "run"
    exp.main([*argv, "--out", str(out)])
    measured = results.read_json(str(out / "config.json"))["cost"]["groups"][0]
    assert measured["achieved_flops"] > 0
    (out / "members.csv").unlink()
    # a compile-cache setting changes no number: the resume is allowed
    exp.main([*argv, "--out", str(out), "--resume", "--no-compile-cache"])
    again = results.read_json(str(out / "config.json"))["cost"]["groups"][0]
    assert again["achieved_flops"] == measured["achieved_flops"]
    assert (out / "members.csv").exists()


def test_empty_data_dir_and_bad_image_folders_are_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _fail([*BASE, "--data-dir", str(empty), "--out", str(tmp_path / "a")], capsys)
    assert "not found" in err
    err = _fail([*BASE, "--dataset", "imagefolder", "--data-dir", str(empty),
                 "--out", str(tmp_path / "b")], capsys)  # fmt: skip
    assert "no class folders" in err
    one = tmp_path / "one" / "cats"
    one.mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (8, 8), (i, i, i)).save(one / f"{i}.png")
    argv = [*BASE, "--dataset", "imagefolder", "--data-dir", str(one.parent),
            "--image-size", "8", "--out", str(tmp_path / "c")]  # fmt: skip
    err = _fail(argv, capsys)
    assert "needs at least two" in err


def test_sixteen_bit_images_keep_their_contrast(tmp_path):
    from PIL import Image

    from jaxbatch import data

    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    path = tmp_path / "x.png"
    Image.fromarray(ramp).save(path)  # uint16: mode I;16
    with Image.open(path) as img:
        assert img.mode.startswith("I")
    x = data._decode_image(path, 8)
    np.testing.assert_allclose(x[..., 0], np.round(ramp / 65535 * 255), atol=1)
    assert x.mean() < 200  # not clipped to white


def test_float_tiff_images_keep_their_values(tmp_path):
    from PIL import Image

    from jaxbatch import data

    ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    path = tmp_path / "x.tif"
    Image.fromarray(ramp).save(path)  # float32: mode F
    with Image.open(path) as img:
        assert img.mode == "F"
    x = data._decode_image(path, 8)
    np.testing.assert_allclose(x[..., 0], np.round(ramp * 255), atol=1)
    assert x.max() == 255  # not black


def test_out_that_is_a_file_or_a_foreign_directory_is_refused(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    err = _fail([*BASE, "--dataset", "synthetic", "--out", str(f)], capsys)
    assert "is a file" in err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "members.csv").write_text("mine")
    err = _fail([*BASE, "--dataset", "synthetic", "--out", str(foreign)], capsys)
    assert "holds no jaxbatch run" in err
    assert (foreign / "members.csv").read_text() == "mine"


def test_corrupt_config_json_names_the_file(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*BASE, "--dataset", "synthetic", "--train-size", "64", "--val-size",
            "32", "--batch-sizes", "32", "--out", str(out)]  # fmt: skip
    Experiment(
        name="alexnet_bs_sweep", doc="", claim="a test", presets={"quick": {}}
    ).main(argv)
    capsys.readouterr()
    (out / "config.json").write_text("{ not json")
    err = _fail([*argv, "--resume"], capsys)
    assert "config.json is damaged" in err and "start a new --out" in err


def test_lr_grid_with_infinite_end_is_a_clear_error():
    with pytest.raises(ValueError, match="finite 0 < low <= high"):
        schedules.lr_grid(1e-3, float("inf"))


def test_init_from_another_architecture_is_refused(tmp_path, capsys):
    argv = [*BASE, "--dataset", "synthetic", "--train-size", "64", "--val-size",
            "32", "--batch-sizes", "32", "--lrs", "0.01"]  # fmt: skip
    exp = Experiment(name="alexnet_bs_sweep", doc="", claim="a test",
                     presets={"quick": {}})  # fmt: skip
    mlp = tmp_path / "mlp"
    exp.main([*argv, "--out", str(mlp)])
    capsys.readouterr()
    other = [a if a != "hidden=(8,)" else "hidden=(16,)" for a in argv]
    err = _fail([*other, "--init-from", f"{mlp}:0", "--out", str(tmp_path / "b")],
                capsys)  # fmt: skip
    assert "do not fit mlp" in err and "params/Dense_0/kernel" in err, err
    assert not (tmp_path / "b").exists()
    # the same model loads every array, and says so
    exp.main([*argv, "--init-from", f"{mlp}:0", "--out", str(tmp_path / "c")])
    assert "4 of 4 arrays loaded" in capsys.readouterr().out


def test_a_new_head_starts_fresh_and_nothing_else_may_differ():
    from jaxbatch.engine.step import base_fit

    def net(head, hidden=64):
        z = np.zeros
        return {"params": {"Dense_0": {"kernel": z((784, hidden)), "bias": z(hidden)},
                           "Dense_1": {"kernel": z((hidden, head)), "bias": z(head)}},
                "batch_stats": {}}  # fmt: skip

    loaded, head, problems = base_fit(net(5), net(10), num_classes=5)
    assert sorted(loaded) == ["params/Dense_0/bias", "params/Dense_0/kernel"]
    assert sorted(head) == ["params/Dense_1/bias", "params/Dense_1/kernel"]
    assert problems == []
    # a narrower trunk: differences in two modules are not a new head
    loaded, head, problems = base_fit(net(5, hidden=32), net(10), num_classes=5)
    assert head == [] and len(problems) == 4 and loaded == []
    # a trunk that differs in its last axis is not a head (that is num_classes)
    loaded, head, problems = base_fit(net(10, hidden=32), net(10), num_classes=10)
    assert head == [] and len(problems) == 3 and len(loaded) == 1


def test_a_failed_saves_late_writes_are_cleared_and_its_closed_loop_is_quiet(
    tmp_path, monkeypatch
):
    """A save that failed on a full disk: its storage threads keep writing for
    a moment (here a thread recreating the temporary folder twice) and report
    "Event loop is closed" as unraisable; neither reaches the user."""
    import sys
    import threading
    import time

    from jaxbatch import checkpoint

    directory = tmp_path / "group_0"
    directory.mkdir()
    (directory / "epoch_0001").mkdir()  # a complete earlier checkpoint stays
    tmp = directory / "epoch_0002.orbax-checkpoint-tmp"

    def late_writer():
        for _ in range(2):
            time.sleep(0.3)
            tmp.mkdir(exist_ok=True)
            (tmp / "chunk").write_bytes(b"x")

    t = threading.Thread(target=late_writer)
    t.start()
    checkpoint._clear_failed_save(str(directory), str(directory / "epoch_0002"),
                                  settle_s=0.5)  # fmt: skip
    t.join()
    assert sorted(p.name for p in directory.iterdir()) == ["epoch_0001"]

    import types

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    checkpoint._hush_closed_loops()
    for message in ("Event loop is closed", "something else"):
        sys.unraisablehook(types.SimpleNamespace(exc_value=RuntimeError(message)))
    assert [str(u.exc_value) for u in seen] == ["something else"]
