"""Reliability: crash and resume, determinism, non-finite losses, bad input, nothing lost."""

import errno
import io as io_module
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from PIL import Image

from blasso_jax.common import files
from blasso_jax.common.progress import Progress
from blasso_jax.config import train_config as config_lib
from blasso_jax.data import augment
from blasso_jax.methods import registry as methods
from blasso_jax.models import networks as models
from blasso_jax.training import checkpoints, rundir, step, train
from experiments import table2

# Its module-scoped runs are trained once: every test of this file on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_reliability")
REPO = Path(__file__).resolve().parents[1]
# The smoke preset on 8x8 images, for tests of the run's bookkeeping rather than of CIFAR's shape: a compile and an
# epoch cost about half of the 32x32 preset's.
SMALL_IMAGES = (8, 8, 3)
SMOKE = ["--config=smoke", f"--synthetic_shape={','.join(map(str, SMALL_IMAGES))}"]


def run_cli(argv):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["table2", *argv])
    table2.main(["table2"])


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
    run_cli([*argv, "--stop_after=2"])
    good = {p.name: p.stat().st_mtime_ns for p in (workdir / "checkpoints").glob("[0-9]*")}
    assert "2" in good
    poison_bright_batches(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        run_cli([*argv, "--resume"])
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
        run_cli([*SMOKE, f"--workdir={workdir}", "--on_nonfinite=skip"])
    assert exit_info.value.code == 1
    assert "every one of the 6 steps of epoch 1 had a non-finite loss or gradient" in capsys.readouterr().err
    assert not (workdir / "results.json").exists() and files.read_jsonl(workdir / "metrics.jsonl") == []


# An 8x8 epoch takes about 0.1 s, so 40 of them leave seconds for the signal to land mid-run.
SIGNAL_RUN = [*SMOKE, "--epochs=40", "--checkpoint_every=100", "--synthetic_train_size=1024"]


@pytest.fixture(scope="module")
def uninterrupted_signal_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight") / "run"
    run_cli([*SIGNAL_RUN, f"--workdir={workdir}"])
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

    run_cli([f"--workdir={stopped}", "--resume"])
    _, _, a = rundir.load_run(straight)
    _, _, b = rundir.load_run(stopped)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    drop = ("epoch_seconds",)
    strip = [{k: v for k, v in r.items() if k not in drop} for r in files.read_jsonl(straight / "metrics.jsonl")]
    assert strip == [{k: v for k, v in r.items() if k not in drop} for r in files.read_jsonl(stopped / "metrics.jsonl")]


def write_folder(root, sizes=None, classes=("a", "b"), test_classes=None):
    for split, names in (("train", classes), ("test", test_classes or classes)):
        for name in names:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                size = (sizes or {}).get((split, name, i), 8)
                Image.fromarray(np.full((size, size, 3), 10 * i, np.uint8)).save(folder / f"{i}.png")


def bad_folder_corrupt(tmp_path):
    write_folder(tmp_path / "d")
    (tmp_path / "d" / "train" / "a" / "1.png").write_bytes(b"not a png")
    return tmp_path / "d", "1.png"


def bad_folder_classes(tmp_path):
    write_folder(tmp_path / "d", test_classes=("a", "c"))
    return tmp_path / "d", "c"


def bad_folder_sizes(tmp_path):
    write_folder(tmp_path / "d", sizes={("train", "b", 2): 6})
    return tmp_path / "d", "2.png"


def bad_npz(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        x_train=np.zeros((4, 8, 8, 3), np.uint8),
        y_train=np.zeros(4),
        x_test=np.zeros((2, 8, 8, 3), np.uint8),
    )
    return tmp_path / "d.npz", "y_test"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model=s-cnn"], "valid: s-conv, d-conv"),
        (["--dataset=no_such_dataset_xyz"], "no_such_dataset_xyz"),
        (["--method=adam"], "valid: blasso, sgd"),
        (["--alpha=0"], "alpha must be >= 1, got 0"),
        (["--beta=-1"], "beta must be >= 0, got -1"),
        (["--l1_first=-1e-5"], "l1_first must be >= 0"),
        (["--l1_rest=-1e-5"], "l1_rest must be >= 0"),
        (["--learning_rate=0"], "learning_rate must be > 0, got 0"),
        (["--batch_size=10"], "batch_size 10 is not divisible by the 4 devices"),
        (["--beta=inf"], "beta must be a finite number, got inf"),
        (["--learning_rate=nan"], "learning_rate must be a finite number, got nan"),
        (["--l1_first=-inf"], "l1_first must be a finite number, got -inf"),
        (["--momentum=inf"], "momentum must be a finite number"),
        (["--momentum=-0.5"], "momentum must be >= 0, got -0.5"),
        (["--momentum=1"], "momentum must be in [0, 1) (0: none, as the paper's Algorithm 1), got 1.0"),
        (["--nesterov"], "nesterov needs a momentum above 0; it changes nothing without one"),
        (["--method=sgd", "--momentum=0", "--nesterov"], "nesterov needs a momentum above 0"),
        (["--decoupled_l1"], "decoupled L1 needs a momentum above 0"),
        (["--weight_decay=nan"], "weight_decay must be a finite number"),
        (["--l1_rest=inf"], "l1_rest must be a finite number"),
        (["--model=3-fc", "--width=0"], "width must be >= 1, got 0"),
        (["--train_size=0"], "train_size must be >= 1, got 0"),
        (["--dropout=1"], "dropout must be a rate in [0, 1), got 1.0"),
        (["--svhn_extra"], "svhn_extra adds the 'extra' split of the tfds dataset svhn_cropped"),
        (["--seed=-1"], "seed must be an integer from 0 to 2**32 - 1, got -1"),
        (["--stop_after=0"], "stop_after 0 is outside the run's epochs 1 to 2"),
        (["--stop_after=3"], "stop_after 3 is outside the run's epochs 1 to 2"),
    ],
)
def test_bad_flags_fail_with_a_message_and_write_nothing(tmp_path, capsys, argv, message):
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["--config=smoke", f"--workdir={workdir}", f"--cache_dir={tmp_path / 'cache'}", *argv])
    assert exit_info.value.code == 1
    assert message in capsys.readouterr().err
    assert not workdir.exists()


@pytest.mark.parametrize("make", [bad_folder_corrupt, bad_folder_classes, bad_folder_sizes, bad_npz])
def test_bad_data_fails_naming_the_problem_and_writes_nothing(tmp_path, capsys, make):
    dataset, named = make(tmp_path)
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            [
                "--config=smoke",
                f"--dataset={dataset}",
                f"--workdir={workdir}",
                f"--cache_dir={tmp_path / 'cache'}",
                "--batch_size=8",
            ]
        )
    assert exit_info.value.code == 1
    assert named in capsys.readouterr().err
    assert not workdir.exists()


def test_unwritable_workdir(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        run_cli(["--config=smoke", f"--workdir={tmp_path / 'file' / 'run'}"])
    assert "is not writable" in capsys.readouterr().err


def test_existing_workdir_needs_resume_or_overwrite(tmp_path, capsys):
    workdir = tmp_path / "run"
    run_cli([*SMOKE, "--epochs=1", f"--workdir={workdir}"])
    before = (workdir / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit):
        run_cli([*SMOKE, "--epochs=1", f"--workdir={workdir}"])
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (workdir / "metrics.jsonl").read_text() == before
    run_cli([*SMOKE, "--epochs=1", f"--workdir={workdir}", "--overwrite"])
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
    run_cli([*SMOKE, "--epochs=1", f"--workdir={workdir}"])
    before = (workdir / "metrics.jsonl").read_text()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(workdir / ".lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout.readline().strip() == b"locked"
    with pytest.raises(SystemExit):
        run_cli([*SMOKE, "--epochs=1", f"--workdir={workdir}", "--overwrite"])
    assert f"in use by another run (pid {holder.pid})" in capsys.readouterr().err
    assert (workdir / "metrics.jsonl").read_text() == before  # nothing deleted, nothing written
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # The killed holder's .lock file is left behind; the OS released its lock, so the run proceeds.
    run_cli([*SMOKE, "--epochs=1", f"--workdir={workdir}", "--overwrite"])
    assert (workdir / ".lock").read_text() == str(os.getpid())
    assert len(files.read_jsonl(workdir / "metrics.jsonl")) == 1


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_epoch_0(tmp_path, capsys):
    workdir = tmp_path / "run"
    run_cli([*SMOKE, "--epochs=1", f"--workdir={workdir}"])
    straight = (workdir / "metrics.jsonl").read_text()
    shutil.rmtree(workdir / "checkpoints")  # as a Ctrl-C or non-finite stop before epoch 1's checkpoint leaves it
    run_cli([*SMOKE, "--epochs=1", f"--workdir={workdir}", "--resume"])
    assert [r["epoch"] for r in files.read_jsonl(workdir / "metrics.jsonl")] == [1]
    assert json.loads(straight)["train_loss"] == files.read_jsonl(workdir / "metrics.jsonl")[0]["train_loss"]
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("not a run")
    with pytest.raises(SystemExit):
        run_cli([*SMOKE, "--epochs=1", f"--workdir={stray}", "--resume"])
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "--overwrite" in err


def test_resume_refuses_settings_that_change_the_run_and_writes_nothing(tmp_path, capsys):
    workdir = tmp_path / "run"
    base = [*SMOKE, "--epochs=2", f"--workdir={workdir}"]
    run_cli([*base, "--stop_after=1"])
    before = {name: (workdir / name).read_text() for name in ("config.jsonl", "metrics.jsonl")}
    for changed, message in [("--beta=0.5", "beta: saved"), ("--epochs=3", "epochs: saved 2, requested 3")]:
        with pytest.raises(SystemExit):
            run_cli([*base, "--resume", changed])  # the later --epochs wins
        err = capsys.readouterr().err
        assert message in err and "new workdir" in err and "--overwrite" in err
        assert {name: (workdir / name).read_text() for name in before} == before
    run_cli([*base, "--resume", "--test_every=2"])  # a logging interval may change
    assert [r["epoch"] for r in files.read_jsonl(workdir / "metrics.jsonl")] == [1, 2]


def test_resume_with_only_the_workdir_continues_from_the_saved_config(tmp_path, capsys):
    workdir = tmp_path / "run"
    # Not the table2 preset's values: a resume that fell back to the preset would train S-FC α=150 on tfds CIFAR-10.
    run_cli([*SMOKE, "--epochs=3", "--alpha=2", f"--workdir={workdir}", "--stop_after=1"])
    run_cli([f"--workdir={workdir}", "--resume"])
    assert [r["epoch"] for r in files.read_jsonl(workdir / "metrics.jsonl")] == [1, 2, 3]
    configs = files.read_jsonl(workdir / "config.jsonl")
    assert len(configs) == 2 and configs[0] == configs[1]
    # A changing flag is still refused against the saved config, naming both values.
    with pytest.raises(SystemExit):
        run_cli([f"--workdir={workdir}", "--resume", "--alpha=3"])
    assert "alpha: saved 2, requested 3" in capsys.readouterr().err


def test_distributed_without_a_coordinator_names_the_flags_and_environment(tmp_path):
    env_free = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COORDINATOR", "JAX_NUM", "JAX_PROCESS"))}
    out = subprocess.run(
        [sys.executable, "-m", "experiments.table2", "--distributed", "--config=smoke", f"--workdir={tmp_path / 'r'}"],
        cwd=tmp_path,
        env=env_free,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "error: --distributed could not join a multi-process run" in out.stderr
    assert "--coordinator_address" in out.stderr and "JAX_COORDINATOR_ADDRESS" in out.stderr
    assert not (tmp_path / "r").exists()
