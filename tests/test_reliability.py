"""Reliability: the recorded commit, determinism, non-finite losses, and a signal that checkpoints and resumes.
Bad input is in test_bad_input.py; the run directory, its writes, checkpoints and resume in test_rundir.py and
test_resume.py."""

import io as io_module
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from entry_points import SMALL_IMAGES, SMOKE, run_table2

from blasso_jax.common import files
from blasso_jax.common.progress import Progress
from blasso_jax.config import train_config as config_lib
from blasso_jax.data import augment
from blasso_jax.training import checkpoints, rundir, train

# Its module-scoped runs are trained once: every test of this file on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_reliability")


def test_the_recorded_commit_says_when_the_code_differed_from_it(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert rundir.git_commit(tmp_path) == head
    (tmp_path / "notes.txt").write_text("untracked files do not change the code that ran\n")
    assert rundir.git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert rundir.git_commit(tmp_path) == f"{head}-dirty"


def test_same_seed_same_metrics(tmp_path):
    config = config_lib.preset("smoke", epochs=2, synthetic_shape=SMALL_IMAGES)
    train.train_and_evaluate(config, tmp_path / "a")
    train.train_and_evaluate(config, tmp_path / "b")
    train.train_and_evaluate(config.replace(seed=1), tmp_path / "c")

    def values(name):
        return [
            {k: v for k, v in r.items() if k != "epoch_seconds"}
            for r in files.read_jsonl(tmp_path / name / "metrics.jsonl")
        ]

    assert values("a") == values("b")
    assert values("a") != values("c")


def poison_bright_batches(monkeypatch):
    """Makes the loss NaN on the batches whose first pixel is bright (a deterministic few)."""
    normalize = augment.normalize

    def poisoned(images, mean, std, dtype=jnp.float32):
        out = normalize(images, mean, std, dtype)
        return jnp.where(images[0, 0, 0, 0] > 240, jnp.nan, out).astype(out.dtype)

    monkeypatch.setattr(augment, "normalize", poisoned)


@pytest.fixture
def nan_on_bright_batches(monkeypatch):
    poison_bright_batches(monkeypatch)


def test_nonfinite_loss_stops_naming_epoch_and_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    workdir = tmp_path / "run"
    argv = [*SMOKE, "--epochs=20", f"--workdir={workdir}", "--batch_size=8", "--checkpoint_every=1"]
    run_table2([*argv, "--stop_after=2"])
    good = {p.name: p.stat().st_mtime_ns for p in (workdir / "checkpoints").glob("[0-9]*")}
    assert "2" in good
    poison_bright_batches(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        run_table2([*argv, "--resume"])
    assert exit_info.value.code == 1
    message = capsys.readouterr().err
    assert "non-finite loss or gradient at epoch 3, step" in message
    assert "last good checkpoint is epoch 2" in message
    assert {p.name: p.stat().st_mtime_ns for p in (workdir / "checkpoints").glob("[0-9]*")} == good
    assert not (workdir / "results.json").exists()
    assert [r["epoch"] for r in files.read_jsonl(workdir / "metrics.jsonl")] == [1, 2]


def test_nonfinite_steps_can_be_skipped_and_counted(tmp_path, nan_on_bright_batches):
    results = train.train_and_evaluate(
        config_lib.preset("smoke", epochs=2, batch_size=8, on_nonfinite="skip", synthetic_shape=SMALL_IMAGES),
        tmp_path / "run",
    )
    records = files.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    skipped = sum(r["skipped_steps"] for r in records)
    assert 0 < skipped < 2 * (384 // 8)
    assert np.isfinite(records[-1]["train_loss"])
    assert results["test_accuracy"]["final"] is not None
    _, _, variables = rundir.load_run(tmp_path / "run")
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(variables))
    assert any(f"skipped {r['skipped_steps']} step(s)" in line for r, line in zip(records, progress_lines(records)))


def progress_lines(records):
    stream = io_module.StringIO()
    progress = Progress(len(records), stream)
    for record in records:
        progress.update(record, 0.0)
    return stream.getvalue().splitlines()


def test_an_epoch_with_every_step_skipped_stops_the_run_even_in_skip_mode(tmp_path, monkeypatch, capsys):
    normalize = augment.normalize
    monkeypatch.setattr(augment, "normalize", lambda *args, **kwargs: normalize(*args, **kwargs) * jnp.nan)
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run_table2([*SMOKE, f"--workdir={workdir}", "--on_nonfinite=skip"])
    assert exit_info.value.code == 1
    assert "every one of the 6 steps of epoch 1 had a non-finite loss or gradient" in capsys.readouterr().err
    assert not (workdir / "results.json").exists() and files.read_jsonl(workdir / "metrics.jsonl") == []


# An 8x8 epoch takes about 0.1 s, so 40 of them leave seconds for the signal to land mid-run.
SIGNAL_RUN = [*SMOKE, "--epochs=40", "--checkpoint_every=100", "--synthetic_train_size=1024"]


@pytest.fixture(scope="module")
def uninterrupted_signal_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight") / "run"
    run_table2([*SIGNAL_RUN, f"--workdir={workdir}"])
    return workdir


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_checkpoints_the_epoch_and_resume_matches_an_uninterrupted_run(
    tmp_path, signum, uninterrupted_signal_run
):
    config_flags, straight = SIGNAL_RUN, uninterrupted_signal_run

    stopped = tmp_path / "stopped"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # conftest's XLA_FLAGS: 4 devices
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.table2", *config_flags, f"--workdir={stopped}"],
        cwd=tmp_path,  # entry points run from any directory
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not files.read_jsonl(stopped / "metrics.jsonl") and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    epoch = files.read_jsonl(stopped / "metrics.jsonl")[-1]["epoch"]
    assert epoch < 40, "the run should have stopped part-way"
    name = signal.Signals(signum).name
    assert f"stopped at epoch {epoch} ({name}); continue with --resume --workdir={stopped}" in err
    assert "Traceback" not in err
    assert checkpoints.latest_epoch(stopped) == epoch  # checkpoint_every=100: written because of the signal

    run_table2([f"--workdir={stopped}", "--resume"])
    _, _, a = rundir.load_run(straight)
    _, _, b = rundir.load_run(stopped)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    drop = ("epoch_seconds",)
    strip = [{k: v for k, v in r.items() if k not in drop} for r in files.read_jsonl(straight / "metrics.jsonl")]
    assert strip == [{k: v for k, v in r.items() if k not in drop} for r in files.read_jsonl(stopped / "metrics.jsonl")]
