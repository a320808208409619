"""Bad input fails at once, in one line that names the bad value, and writes nothing: flags, datasets,
workdirs, and a distributed run without its coordinator."""

import os
import subprocess
import sys

import numpy as np
import pytest
from entry_points import run_table2
from PIL import Image


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
        run_table2(["--config=smoke", f"--workdir={workdir}", f"--cache_dir={tmp_path / 'cache'}", *argv])
    assert exit_info.value.code == 1
    assert message in capsys.readouterr().err
    assert not workdir.exists()


@pytest.mark.parametrize("make", [bad_folder_corrupt, bad_folder_classes, bad_folder_sizes, bad_npz])
def test_bad_data_fails_naming_the_problem_and_writes_nothing(tmp_path, capsys, make):
    dataset, named = make(tmp_path)
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run_table2(
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
        run_table2(["--config=smoke", f"--workdir={tmp_path / 'file' / 'run'}"])
    assert "is not writable" in capsys.readouterr().err


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
