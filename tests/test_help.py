"""Every entry point's --help lists its own flags and the training flags it uses (absl shows only the main
module's key flags, so flags defined through experiments/flags.py must be credited to the entry point)."""

import os
import re
import subprocess
import sys

import pytest

TRAINING = ("--alpha", "--beta", "--seed", "--method")
SPARSE = ("--sparse", "--crossover", "--densities", "--sparse_alphas", "--batch_sizes", "--runs")
EXPECTED = {
    "table2": ("--sweep", "--grid", "--datasets", "--seeds", *TRAINING),
    "table1": ("--models", "--deep_alpha", "--seeds", *TRAINING),
    "fig1": ("--alphas", "--image_sides", "--out"),
    "fig2": ("--models", "--alphas", "--fit_accuracy", "--datasets", "--seeds", "--out", *TRAINING),
    "fig3": ("--launch", "--labels", "--runs", "--out", "--datasets", "--seeds", *TRAINING),
    "fig4": ("--sgd_fc", "--blasso_fc", "--sgd_local", "--k", "--draw_seed", "--best", "--out"),
    "fig5": ("--kernel_sizes", "--datasets", "--seeds", "--out", *TRAINING),
    "locality_table": ("--runs", "--out"),
    "benchmark": ("--fit_table", "--examples", "--timed_epochs", "--device_gb", "--out", *TRAINING, *SPARSE),
}
pytestmark = pytest.mark.xdist_group("test_help")  # its tests share one run of the entry points (help_texts)


@pytest.fixture(scope="module")
def help_texts(tmp_path_factory) -> dict[str, str]:
    """Each entry point's `--help` output (stdout and stderr), run once for the file's tests, all at once, from
    outside the repository as an installed entry point is."""
    cwd = tmp_path_factory.mktemp("help")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"experiments.{name}", "--help"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in EXPECTED
    }
    return {name: process.communicate(timeout=600)[0] for name, process in processes.items()}


def test_every_entry_point_lists_its_own_flags_in_help(help_texts):
    missing = {}
    for name, out in help_texts.items():
        lines = [line.strip().replace("--[no]", "--") for line in out.splitlines()]
        listed = {line.split(":")[0] for line in lines if line.startswith("--")}
        missing[name] = [flag for flag in EXPECTED[name] if flag not in listed]
    assert not any(missing.values()), f"flags missing from --help: { {k: v for k, v in missing.items() if v} }"


def test_table2_help_says_which_momentum_default_applies_to_which_method(help_texts):
    text = " ".join(help_texts["table2"].split())  # absl wraps help lines
    assert "blasso 0, sgd 0.9" in text and "imp 0.9" in text


def test_help_lists_the_training_flags_with_the_presets_values(help_texts):
    for name in ("table2", "fig5", "table1"):
        text = " ".join(help_texts[name].split())  # absl wraps help lines at its terminal width
        assert "--beta: β of β-LASSO (threshold β·λ) [table2: 50.0, cpu_locality: 1.0," in text, name
        assert re.search(r"--epochs: [^[]*epochs[^[]* \[table2: 4000, cpu_locality: 300,", text), name
        assert "--workdir" in text
