"""The README's example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_example_takes_a_training_step(capsys):
    example = [block for block in python_blocks() if "train_step(" in block]
    assert len(example) == 1
    namespace = {}
    exec(compile(example[0], str(README), "exec"), namespace)
    assert namespace["loss"] > 0
    assert "non-zero weights per layer" in capsys.readouterr().out
    # One step of β-LASSO moved the parameters and kept them finite.
    assert all(bool(abs(leaf).sum() > 0) for leaf in namespace["jax"].tree.leaves(namespace["params"]))


def test_readme_quick_start_names_the_ci_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python -m pytest -q" in ci
    assert "python -m pytest -q" in README.read_text()
    assert "python -m experiments.table2 --beta=1" in README.read_text()
