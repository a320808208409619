"""The run directory: an existing or locked workdir, atomic and failed writes, torn metrics lines, which
checkpoints are kept and what they store, and what a resume continues from or refuses."""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from entry_points import SMALL_IMAGES, SMOKE, run_table2

from blasso_jax.common import files
from blasso_jax.config import train_config as config_lib
from blasso_jax.methods import registry as methods
from blasso_jax.models import networks as models
from blasso_jax.training import checkpoints, step, train


def test_existing_workdir_needs_resume_or_overwrite(tmp_path, capsys):
    workdir = tmp_path / "run"
    run_table2([*SMOKE, "--epochs=1", f"--workdir={workdir}"])
    before = (workdir / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit):
        run_table2([*SMOKE, "--epochs=1", f"--workdir={workdir}"])
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (workdir / "metrics.jsonl").read_text() == before
    run_table2([*SMOKE, "--epochs=1", f"--workdir={workdir}", "--overwrite"])
    assert len(files.read_jsonl(workdir / "metrics.jsonl")) == 1


def test_atomic_writes_leave_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    files.atomic_write_json(path, {"a": 1})

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "free space there"), (errno.EACCES, "make it writable")])
def test_a_failed_write_is_one_line_naming_the_path_the_bytes_and_the_fix(tmp_path, monkeypatch, code, fix):
    def failing(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing)
    record = {"epoch": 1, "val_accuracy": 0.5}
    writes = {
        "metrics.jsonl": (files.append_jsonl, len(json.dumps(record, sort_keys=True)) + 1),
        "results.json": (files.atomic_write_json, len(json.dumps(record, indent=2, sort_keys=True)) + 1),
    }
    for name, (write, size) in writes.items():
        with pytest.raises(files.WriteError) as error:
            write(tmp_path / name, record)
        assert re.fullmatch(
            rf"could not write {re.escape(str(tmp_path / name))} \({os.strerror(code)}\): {size:,} bytes needed, "
            rf"[\d,]+ free there; {fix} or choose another --workdir, then continue with --resume",
            str(error.value),
        )
    assert not (tmp_path / "results.json").exists() and not list(tmp_path.glob(".results.json.*"))


def test_torn_metrics_line_is_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    files.append_jsonl(path, {"epoch": 1})
    with open(path, "a") as f:
        f.write('{"epoch": 2, "train_lo')
    assert files.read_jsonl(path) == [{"epoch": 1}]


def test_checkpoint_retention_keeps_last_k_and_best(tmp_path):
    config = config_lib.preset("smoke", epochs=5, checkpoint_every=1, keep_checkpoints=2, synthetic_shape=SMALL_IMAGES)
    train.train_and_evaluate(config, tmp_path / "run")
    records = files.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    best_epoch = max(records, key=lambda r: (r["val_accuracy"], -r["epoch"]))["epoch"]  # the first best
    kept = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == sorted({4, 5, best_epoch})  # one directory: the last two and the best, each once
    assert not (tmp_path / "run" / "best").exists()
    assert json.loads((tmp_path / "run" / "results.json").read_text())["best_epoch"] == best_epoch


def test_resuming_keeps_the_best_checkpoint(tmp_path):
    # Validation accuracies peak early, then a resumed run keeps saving with only one latest checkpoint
    # kept: the best survives every later save, including those of a new manager after the resume.
    params = {"w": np.arange(3, dtype=np.float32)}
    state = flax_state(params)
    saved = checkpoints.Checkpoints(tmp_path, keep=1)
    for epoch, val in ((1, 0.5), (2, 0.9), (3, 0.6)):
        saved.save(epoch, state.replace(step=epoch), val)
    saved.close()
    resumed = checkpoints.Checkpoints(tmp_path, keep=1)  # what --resume opens
    epoch, restored = resumed.restore(state)
    assert epoch == 3 and int(restored.step) == 3
    for epoch, val in ((4, 0.7), (5, 0.1)):
        resumed.save(epoch, state.replace(step=epoch), val)
    resumed.close()
    kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == [2, 5]


def flax_state(params):
    """A minimal object with the fields a checkpoint stores."""
    import flax.struct

    @flax.struct.dataclass
    class State:
        step: int
        params: dict
        batch_stats: dict
        opt_state: tuple

    return State(step=0, params=params, batch_stats={}, opt_state=())


def test_checkpoint_stores_each_tensor_once(tmp_path):
    config = config_lib.preset("smoke", epochs=1)
    dataset_shape = (32, 32, 3)
    model = models.create_model("s-fc", 1, 10, dataset_shape)
    state = step.create_train_state(model, dataset_shape, methods.optimizer(config, 4), jax.random.key(0))
    params_bytes = checkpoints.tree_bytes(state.params) + checkpoints.tree_bytes(state.batch_stats)
    # β-LASSO keeps no per-parameter optimizer state (only the schedule's step count).
    assert checkpoints.tree_bytes(state.opt_state) < 64
    assert checkpoints.tree_bytes(checkpoints.checkpointed_tree(state)) < params_bytes + 64
    train.train_and_evaluate(config, tmp_path / "run")
    on_disk = sum(p.stat().st_size for p in (tmp_path / "run" / "checkpoints").rglob("*") if p.is_file())
    assert on_disk < 1.5 * params_bytes + 200_000


HOLD_LOCK = """
import fcntl, os, sys
lock = open(sys.argv[1], "a+")
fcntl.flock(lock, fcntl.LOCK_EX)
lock.truncate(0); lock.write(str(os.getpid())); lock.flush()
print("locked", flush=True)
sys.stdin.read()
"""


def test_locked_workdir_is_refused_naming_the_holder_and_a_killed_holder_does_not_block(tmp_path, capsys):
    workdir = tmp_path / "run"
    run_table2([*SMOKE, "--epochs=1", f"--workdir={workdir}"])
    before = (workdir / "metrics.jsonl").read_text()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(workdir / ".lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout.readline().strip() == b"locked"
    with pytest.raises(SystemExit):
        run_table2([*SMOKE, "--epochs=1", f"--workdir={workdir}", "--overwrite"])
    assert f"in use by another run (pid {holder.pid})" in capsys.readouterr().err
    assert (workdir / "metrics.jsonl").read_text() == before  # nothing deleted, nothing written
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # The killed holder's .lock file is left behind; the OS released its lock, so the run proceeds.
    run_table2([*SMOKE, "--epochs=1", f"--workdir={workdir}", "--overwrite"])
    assert (workdir / ".lock").read_text() == str(os.getpid())
    assert len(files.read_jsonl(workdir / "metrics.jsonl")) == 1


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_epoch_0(tmp_path, capsys):
    workdir = tmp_path / "run"
    run_table2([*SMOKE, "--epochs=1", f"--workdir={workdir}"])
    straight = (workdir / "metrics.jsonl").read_text()
    shutil.rmtree(workdir / "checkpoints")  # as a Ctrl-C or non-finite stop before epoch 1's checkpoint leaves it
    run_table2([*SMOKE, "--epochs=1", f"--workdir={workdir}", "--resume"])
    assert [r["epoch"] for r in files.read_jsonl(workdir / "metrics.jsonl")] == [1]
    assert json.loads(straight)["train_loss"] == files.read_jsonl(workdir / "metrics.jsonl")[0]["train_loss"]
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("not a run")
    with pytest.raises(SystemExit):
        run_table2([*SMOKE, "--epochs=1", f"--workdir={stray}", "--resume"])
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "--overwrite" in err


def test_resume_refuses_settings_that_change_the_run_and_writes_nothing(tmp_path, capsys):
    workdir = tmp_path / "run"
    base = [*SMOKE, "--epochs=2", f"--workdir={workdir}"]
    run_table2([*base, "--stop_after=1"])
    before = {name: (workdir / name).read_text() for name in ("config.jsonl", "metrics.jsonl")}
    for changed, message in [("--beta=0.5", "beta: saved"), ("--epochs=3", "epochs: saved 2, requested 3")]:
        with pytest.raises(SystemExit):
            run_table2([*base, "--resume", changed])  # the later --epochs wins
        err = capsys.readouterr().err
        assert message in err and "new workdir" in err and "--overwrite" in err
        assert {name: (workdir / name).read_text() for name in before} == before
    run_table2([*base, "--resume", "--test_every=2"])  # a logging interval may change
    assert [r["epoch"] for r in files.read_jsonl(workdir / "metrics.jsonl")] == [1, 2]


def test_resume_with_only_the_workdir_continues_from_the_saved_config(tmp_path, capsys):
    workdir = tmp_path / "run"
    # Not the table2 preset's values: a resume that fell back to the preset would train S-FC α=150 on tfds CIFAR-10.
    run_table2([*SMOKE, "--epochs=3", "--alpha=2", f"--workdir={workdir}", "--stop_after=1"])
    run_table2([f"--workdir={workdir}", "--resume"])
    assert [r["epoch"] for r in files.read_jsonl(workdir / "metrics.jsonl")] == [1, 2, 3]
    configs = files.read_jsonl(workdir / "config.jsonl")
    assert len(configs) == 2 and configs[0] == configs[1]
    # A changing flag is still refused against the saved config, naming both values.
    with pytest.raises(SystemExit):
        run_table2([f"--workdir={workdir}", "--resume", "--alpha=3"])
    assert "alpha: saved 2, requested 3" in capsys.readouterr().err
