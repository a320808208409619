"""Every entry point's --help lists its own flags and the training flags it uses (absl shows only the main
module's key flags, so flags defined through experiments/flags.py must be credited to the entry point)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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


def test_every_entry_point_lists_its_own_flags_in_help(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"experiments.{name}", "--help"],
            cwd=tmp_path,  # from anywhere, as an installed entry point
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in EXPECTED
    }
    missing = {}
    for name, process in processes.items():
        out = process.communicate(timeout=600)[0]
        lines = [line.strip().replace("--[no]", "--") for line in out.splitlines()]
        listed = {line.split(":")[0] for line in lines if line.startswith("--")}
        missing[name] = [flag for flag in EXPECTED[name] if flag not in listed]
    assert not any(missing.values()), f"flags missing from --help: { {k: v for k, v in missing.items() if v} }"


def test_table2_help_says_which_momentum_default_applies_to_which_method(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "experiments.table2", "--help"],
        cwd=tmp_path,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    text = " ".join(out.split())  # absl wraps help lines
    assert "blasso 0, sgd 0.9" in text and "imp 0.9" in text
