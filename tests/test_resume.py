"""Resume at every instant a run can die: between an epoch's metrics line and its checkpoint, after a checkpoint
whose line an older version never wrote, from a damaged checkpoint; the lock held to the last file; a finished
run left as it is."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from entry_points import run_table2
from orbax.checkpoint._src.serialization import serialization

from blasso_jax.common import files
from blasso_jax.config import train_config as config_lib
from blasso_jax.training import checkpoints, rundir, summary, train

# Its module-scoped runs are trained once: every test of this file on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_resume")
REPO = Path(__file__).resolve().parents[1]
# 8x8 images: these tests check what a run keeps and resumes, not CIFAR's shape.
CONFIG = ["--config=smoke", "--synthetic_shape=8,8,3", "--epochs=6", "--checkpoint_every=1", "--keep_checkpoints=2"]
CONFIG += ["--locality_every=0"]

# Runs table2 with CONFIG in a subprocess that dies (os._exit, as a SIGKILL would) at the N-th call of one write.
_DIE_AT = """
import os, sys
from blasso_jax.training import checkpoints
from blasso_jax.common import files
write, n = sys.argv[1], int(sys.argv[2])
calls = []
def dying(original):
    def wrapped(*args, **kwargs):
        if len(calls) == n - 1 and write == "before":
            os._exit(9)
        result = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == n and write == "after":
            os._exit(9)
        return result
    return wrapped
# 'before' dies as the N-th checkpoint is about to be written (its epoch's metrics line is already there);
# 'after' dies right after the N-th checkpoint is written, before the next epoch's line.
checkpoints.Checkpoints.save = dying(checkpoints.Checkpoints.save)
from absl import app
from experiments import table2
sys.argv = ["table2", *sys.argv[3:]]
app.run(table2.main)
"""


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight") / "run"
    run_table2([*CONFIG, f"--workdir={workdir}"])
    return workdir


def _same_run(a, b):
    jax.tree.map(np.testing.assert_array_equal, rundir.load_run(a)[2], rundir.load_run(b)[2])
    records = files.read_jsonl(b / "metrics.jsonl")
    assert [r["epoch"] for r in records] == list(range(1, 7))
    return records


@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_run_killed_around_a_checkpoint_resumes_to_the_same_result(tmp_path, straight, moment):
    workdir = tmp_path / "killed"
    env = {**os.environ}  # conftest's XLA_FLAGS: 4 devices
    command = [sys.executable, "-c", _DIE_AT, moment, "3", *CONFIG, f"--workdir={workdir}"]
    assert subprocess.run(command, cwd=REPO, env=env, capture_output=True).returncode == 9
    lines = [r["epoch"] for r in files.read_jsonl(workdir / "metrics.jsonl")]
    assert lines == [1, 2, 3]  # epoch 3's line is written before its checkpoint, whenever the run died
    run_table2([*CONFIG, f"--workdir={workdir}", "--resume"])
    _same_run(straight, workdir)


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path, straight):
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # conftest's XLA_FLAGS: 4 devices
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.table2", *CONFIG, f"--workdir={killed}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600  # a guard against a hung subprocess, not a timing
    # Killed once two epochs are logged: four epochs, each with its checkpoint, are left to land the kill in.
    while len(files.read_jsonl(killed / "metrics.jsonl")) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(files.read_jsonl(killed / "metrics.jsonl"))
    assert 2 <= done < 6, "the run should have been killed part-way"
    # A checkpoint half-written at the kill: orbax's temporary directory for a later epoch.
    torn = killed / "checkpoints" / f"{done + 1}.orbax-checkpoint-tmp-1234567890"
    torn.mkdir()
    (torn / "garbage").write_bytes(b"\0" * 100)
    run_table2([*CONFIG, f"--workdir={killed}", "--resume"])
    _same_run(straight, killed)


def test_a_checkpoint_without_its_metrics_line_is_resumed_after_and_the_line_rebuilt(tmp_path, straight):
    # Runs written before the metrics-first order could die between the checkpoint and the line.
    workdir = tmp_path / "gap"
    run_table2([*CONFIG, f"--workdir={workdir}", "--stop_after=3"])
    files.write_jsonl(workdir / "metrics.jsonl", files.read_jsonl(workdir / "metrics.jsonl")[:2])
    run_table2([*CONFIG, f"--workdir={workdir}", "--resume"])
    records = _same_run(straight, workdir)
    assert records[2]["rebuilt"] is True and records[2]["train_loss"] is None
    expected = files.read_jsonl(straight / "metrics.jsonl")[2]
    assert records[2]["val_accuracy"] == expected["val_accuracy"]
    assert records[2]["nonzero_per_layer"] == expected["nonzero_per_layer"]


def _damage(checkpoint: Path) -> None:
    largest = max((p for p in checkpoint.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])


def test_a_damaged_checkpoint_is_set_aside_and_the_previous_one_resumed(tmp_path, straight, capsys):
    workdir = tmp_path / "damaged"
    run_table2([*CONFIG, f"--workdir={workdir}", "--stop_after=4"])
    _damage(workdir / "checkpoints" / "4")
    capsys.readouterr()
    run_table2([*CONFIG, f"--workdir={workdir}", "--resume"])
    out = capsys.readouterr().out
    assert "checkpoint of epoch 4 is damaged" in out and "resumed from the checkpoint of epoch 3" in out
    assert sum(line.count("checkpoint of epoch 4 is damaged") for line in out.splitlines()) == 1
    (aside,) = (workdir / "damaged_checkpoints").iterdir()  # kept, never deleted
    assert aside.name.startswith("4-")
    _same_run(straight, workdir)


def test_no_intact_checkpoint_fails_in_one_line(tmp_path, capsys):
    workdir = tmp_path / "all_damaged"
    run_table2([*CONFIG, "--keep_checkpoints=1", f"--workdir={workdir}", "--stop_after=2"])
    for checkpoint in (workdir / "checkpoints").glob("[0-9]*"):
        _damage(checkpoint)
    with pytest.raises(SystemExit) as exit_info:
        run_table2([*CONFIG, f"--workdir={workdir}", "--resume"])
    assert exit_info.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: no intact checkpoint in") and "--overwrite" in last


def test_the_workdir_lock_is_held_until_results_json_is_written(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    held = []
    write = files.atomic_write_json

    def probing(path, obj):
        if Path(path).name == "results.json":
            with pytest.raises(rundir.WorkdirError, match="in use by another run"):
                rundir.lock_workdir(workdir)
            held.append(True)
        write(path, obj)

    monkeypatch.setattr(summary.files, "atomic_write_json", probing)
    train.train_and_evaluate(config_lib.preset("smoke", epochs=1, synthetic_shape=(8, 8, 3)), workdir)
    assert held == [True]
    rundir.lock_workdir(workdir).close()  # released once the run returned


def test_resume_of_a_finished_run_leaves_its_results_as_they_are(tmp_path, capsys):
    workdir = tmp_path / "finished"
    run_table2([*CONFIG, "--epochs=2", f"--workdir={workdir}"])
    before = (workdir / "results.json").read_bytes()
    run_table2([*CONFIG, "--epochs=2", f"--workdir={workdir}", "--resume"])
    assert (workdir / "results.json").read_bytes() == before
    assert "is finished; its results are left as they are" in capsys.readouterr().out
    assert json.loads(before)["epochs"] == 2


def test_a_run_written_before_momentum_was_a_blasso_setting_resumes_as_before(tmp_path, straight):
    """Such a run's config.jsonl holds SGD's old default momentum 0.9 and no nesterov / decoupled_l1 field; its
    β-LASSO trained without momentum, and so must the rest of it, with or without the preset's flags."""
    for flags_given in (CONFIG, []):
        workdir = tmp_path / f"old{len(flags_given)}"
        run_table2([*CONFIG, f"--workdir={workdir}", "--stop_after=3"])
        old = [
            {**{k: v for k, v in c.items() if k not in ("nesterov", "decoupled_l1")}, "momentum": 0.9}
            for c in files.read_jsonl(workdir / "config.jsonl")
        ]
        files.write_jsonl(workdir / "config.jsonl", old)
        run_table2([*flags_given, f"--workdir={workdir}", "--resume"])
        _same_run(straight, workdir)


OLD_RUNS = Path(__file__).parent / "data" / "old_runs"


@pytest.mark.parametrize("name", ["blasso", "imp"])
def test_a_run_written_before_the_subpackages_loads_and_resumes_to_todays_weights(tmp_path, name):
    """Run directories written at commit 8b807fc (one flat package; IMP pruned by a between-epoch hook, its mask and
    rewind weights in another optimizer-state layout), stopped after epoch 1 of 2: they load, and resume to the
    weights a run trained straight by today's code ends with, to float32 rounding."""
    workdir = tmp_path / name
    shutil.copytree(OLD_RUNS / name, workdir)
    config, model, variables = rundir.load_run(workdir)
    assert config.method == name and config.epochs == 2
    assert model.apply(variables, np.zeros((1, *config.synthetic_shape)), train=False).shape == (1, 10)
    resumed = train.train_and_evaluate(config, workdir, resume=True)
    straight = train.train_and_evaluate(config, tmp_path / "straight")
    assert resumed["epochs"] == straight["epochs"] == 2
    assert resumed["nonzero_per_layer"] == straight["nonzero_per_layer"]
    # Epoch 1 was computed by the code of 8b807fc, compiled then; the straight run's by today's compilation, which
    # may sum in another order. Each of epoch 2's 4 steps sums at most 192 inputs (8x8x3) in float32: a reordering
    # moves a weight by at most 192 * 1.2e-7 = 2.3e-5 of it a step, under 1e-4 over the 4 steps, while a state read
    # wrongly (a lost step, another mask, momentum or rewind point) moves weights by a step of learning rate 0.1.
    for a, b in zip(
        jax.tree.leaves(rundir.load_run(workdir)[2]), jax.tree.leaves(rundir.load_run(tmp_path / "straight")[2])
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_a_full_disk_fails_in_one_line_leaves_no_partial_checkpoint_and_resumes(
    tmp_path, straight, monkeypatch, capsys, caplog
):
    workdir = tmp_path / "full"
    size = sum(np.asarray(a).nbytes for a in jax.tree.leaves(checkpoints.read_checkpoint(straight / "checkpoints")[1]))
    free = int(2.5 * size)  # short of the 4 checkpoints held at once (the last 2, the best, one being written)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=free))
    write = serialization.async_serialize_from_host

    async def full_at_epoch_3(rslices, spec, **kwargs):  # orbax's writer thread, as TensorStore on a full disk
        if "/3.orbax-checkpoint-tmp" in json.dumps(spec):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(workdir / "checkpoints" / "3"))
        return await write(rslices, spec, **kwargs)

    monkeypatch.setattr(serialization, "async_serialize_from_host", full_at_epoch_3)
    with pytest.raises(SystemExit):
        run_table2([*CONFIG, f"--workdir={workdir}"])
    out, err = capsys.readouterr()
    assert [line for line in out.splitlines() if line.startswith("warning:")] == [
        f"warning: {free / 2**20:,.1f} MiB free in {workdir}, short of the {4 * size / 2**20:,.1f} MiB that 4 more "
        f"checkpoints of {size / 2**20:,.1f} MiB need (the last 2, the best and the one being written); "
        "free space or choose another --workdir"
    ]
    assert err.splitlines() == [
        f"error: could not write {workdir / 'checkpoints' / '3'} (No space left on device): {size:,} bytes "
        f"needed, {free:,} free there; free space there or choose another --workdir, then continue with --resume"
    ]
    assert not [r for r in caplog.records if r.exc_info]  # orbax's threads logged no traceback
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["1", "2"]  # no partial checkpoint
    monkeypatch.setattr(serialization, "async_serialize_from_host", write)
    run_table2([*CONFIG, f"--workdir={workdir}", "--resume"])  # 2 checkpoints there: 2 more fit, no warning
    assert "warning:" not in capsys.readouterr().out
    _same_run(straight, workdir)
