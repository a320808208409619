"""Seeds: `--seeds` parsed with one-line errors, every seed trained in its own run directory, and the
mean ± std of a cell equal to numpy's over the per-seed results.json files."""

import json

import numpy as np
import pytest
from entry_points import run_table2

from blasso_jax.common import text
from blasso_jax.config import train_config as config_lib
from blasso_jax.training import sweep


@pytest.mark.parametrize(
    "values, message",
    [
        ([], "--seeds is empty"),
        (["0", "1", "0"], r"--seeds repeats \[0\]"),
        (["0", "x"], "--seeds must be integers"),
    ],
)
def test_bad_seeds_are_refused_with_a_message_that_names_them(values, message):
    with pytest.raises(ValueError, match=message):
        sweep.parse_seeds(values, default=0)


def test_mean_std_is_the_sample_mean_and_standard_deviation():
    values = [53.25, 54.11, 53.8, 52.9]
    mean, std = np.mean(values), np.std(values, ddof=1)  # the reference: numpy, n - 1 in the denominator
    assert text.mean_std(values) == f"{mean:.2f} ± {std:.2f} (n=4)"


def test_each_seed_trains_its_own_run_and_the_cell_reports_their_mean(tmp_path):
    cell = config_lib.preset("smoke", epochs=1)
    (runs,) = sweep.run_cells([cell], tmp_path, seeds=(3, 5))
    assert [w.name for w in runs.workdirs] == [f"synthetic-s-fc-blasso-beta50-seed{s}" for s in (3, 5)]
    saved = [json.loads((w / "results.json").read_text()) for w in runs.workdirs]
    assert [s["config"]["seed"] for s in saved] == [3, 5]
    accuracies = [100 * s["test_accuracy"]["best"] for s in saved]
    expected = f"{np.mean(accuracies):.2f} ± {np.std(accuracies, ddof=1):.2f} (n=2)"
    assert runs.mean_std(lambda r: r["test_accuracy"]["best"]) == expected


def test_the_table2_entry_point_refuses_repeated_seeds_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_table2(["--config=smoke", "--seeds=1,1", f"--workdir={tmp_path}"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: --seeds repeats [1]; give each seed once"
    assert not any(tmp_path.iterdir())  # refused before anything was written
