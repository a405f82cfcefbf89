"""Bad command lines end in one line naming the flag, the value and the fix
(no usage dump), exit 2; the suite refuses a bad preset before it creates
anything, and passes SIGTERM on to the experiment it runs."""

import os
import signal
import subprocess
import sys
import time

import pytest

from experiments.alexnet_bs_sweep import EXPERIMENT
from jaxbatch import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BAD = [
    (["--lrs", "abc"], ["--lrs", "'abc' is not a number", "e.g. --lrs 0.01,0.02"]),
    (["--lrs", "0.1,abc"], ["--lrs", "'abc'", "comma-separated numbers"]),
    (["--epochs", "2.5"], ["--epochs", "'2.5' is not a whole number"]),
    (["--preset", "huge"], ["--preset", "'huge'", "choose from paper, quick"]),
    (["--preset", "quik"], ["did you mean quick?"]),
    (["--lrss", "0.1"], ["--lrss is not a flag", "did you mean --lrs?"]),
    (["--lrss=0.1"], ["--lrss is not a flag", "did you mean --lrs?"]),
    # not taken as an abbreviation of --batch-sizes
    (["--batch-size", "32"], ["--batch-size is not a flag", "--batch-sizes?"]),
    (["--lr", "0.1"], ["--lr is not a flag", "did you mean --lrs?"]),
    (
        ["--lr-multipliers", "Dense_0:0.1"],
        [
            "--lr-multipliers",
            "'Dense_0:0.1'",
            "did you mean --lr-multipliers Dense_0=0.1?",
            "REGEX=MULTIPLIER",
        ],
    ),  # fmt: skip
    (["--model-kwargs", "width"], ["--model-kwargs", "'width'", "width=VALUE"]),
    (["--seed", "x"], ["--seed", "'x' is not a whole number"]),
    (["--gamma", "x"], ["--gamma", "'x' is not a number"]),
    (["--lrs"], ["--lrs needs a value"]),
    (["--lrs", "0.1", "0.2"], ["'0.2'", "comma-separated"]),
]


@pytest.mark.parametrize(("argv", "says"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_parser_error_is_one_line_naming_the_flag(argv, says, capsys, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        EXPERIMENT.main([*argv, "--out", str(out)])
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) <= 3, captured.err
    assert "usage:" not in captured.err
    assert lines[0].startswith("python -m experiments.alexnet_bs_sweep: error: ")
    assert lines[-1].endswith("(see --help)")
    for text in says:
        assert text in captured.err, captured.err
    assert not out.exists()


def test_help_still_prints_everything(capsys):
    with pytest.raises(SystemExit) as info:
        EXPERIMENT.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage:")
    assert "--lr-multipliers" in text and "--batch-sizes" in text
    assert len(text.splitlines()) > 60


def _suite(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.suite", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--preset", "huge", "--only", "update_ratio"], "choose from paper, quick"),
        (["--only", "update_ration"], "did you mean update_ratio?"),
        (["--skip", "nope"], "--skip: unknown experiment 'nope'"),
        (["--presett", "quick"], "did you mean --preset?"),
    ],
)
def test_suite_refuses_bad_input_before_creating_anything(args, says, tmp_path):
    out = tmp_path / "suite"
    proc = _suite(*args, "--out", str(out))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert says in stderr, stderr
    assert stdout == ""
    assert not out.exists()


FMNIST = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]  # fmt: skip


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run_and_terminate(out, started) -> tuple[str, list[int]]:
    """Start the suite on update_ratio, SIGTERM it once ``started()`` holds
    and its experiment is running; ``(its stderr, the experiment's pids)``."""
    proc = _suite("--preset", "quick", "--only", "update_ratio", "--out", str(out))
    children = []
    try:
        deadline = time.monotonic() + 180
        while not (started() and (children := _children(proc.pid))):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the experiment never started"
            time.sleep(0.2)
        time.sleep(1)  # let it reach its training loop
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)  # it saves and stops
        assert proc.returncode == 128 + signal.SIGTERM, stderr
        return stderr, children
    finally:
        for pid in [*children, proc.pid]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.skipif(
    not all(os.path.isfile(os.path.join(data.FASHION_MNIST_SYSTEM_DIR, f))
            for f in FMNIST),
    reason=f"Fashion-MNIST not in {data.FASHION_MNIST_SYSTEM_DIR}",
)  # fmt: skip
def test_suite_forwards_sigterm_and_prints_how_to_resume(tmp_path):
    out = tmp_path / "suite"
    log = out / "update_ratio.log"
    config = out / "update_ratio" / "config.json"
    stderr, children = _run_and_terminate(out, config.exists)
    assert children and not any(_alive(p) for p in children)  # no orphan trains on
    last = stderr.strip().splitlines()[-1]
    assert "resume" in last and f"--out {out}" in last, stderr
    assert "--only update_ratio" in last
    first = log.read_text()
    assert "terminated." in first  # the experiment saved and said so

    # the resume appends to the log: the killed run's lines stay
    stderr, children = _run_and_terminate(
        out, lambda: log.read_text().count("=== ") == 2
    )
    text = log.read_text()
    assert text.startswith(first)
    assert "--resume" in text[len(first) :]
    assert "resume" in stderr.strip().splitlines()[-1]
    assert not any(_alive(p) for p in children)
