"""One Markdown row per finished run: its command, density per layer, first-layer locality and accuracy.

    python -m experiments.locality_table --runs=runs/search/a,runs/search/b --out=runs/search/table.md

Locality (`blasso_jax.analysis.measures.locality`) is computed from each run's final weights
(`sparse_params.npz`), so runs trained with any `--locality_every` are measured the same way. The
command column is the `experiments.table2` command that reproduces the run.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags

from blasso_jax.analysis import measures as analysis
from blasso_jax.common import files, text
from blasso_jax.models.counting import FIRST_LAYER
from blasso_jax.reporting import report
from blasso_jax.sparse import export
from blasso_jax.training import rundir
from experiments import flags as train_flags

train_flags.define_shared_flags("runs", "out")
FLAGS = flags.FLAGS


def row(run_dir: Path) -> list:
    """The table row of one finished S-FC (dense first layer) run."""
    if not (run_dir / "results.json").is_file() or not (run_dir / "sparse_params.npz").is_file():
        raise ValueError(f"{run_dir} holds no finished run (results.json and sparse_params.npz)")
    results = json.loads((run_dir / "results.json").read_text())
    _, dataset = rundir.read_run_info(run_dir)
    kernel = export.load(run_dir / "sparse_params.npz").params[FIRST_LAYER]["kernel"]
    if kernel.ndim != 2:
        raise ValueError(f"{run_dir} is a {results['config']['model']} run; locality is measured on dense first layers")
    return report.locality_row(results, analysis.locality(kernel, dataset["image_shape"])["summary"])


def body() -> None:
    if not FLAGS.runs:
        raise app.UsageError("--runs (finished run directories, comma-separated) is required")
    table = text.markdown_table(report.LOCALITY_HEADERS, [row(Path(d)) for d in FLAGS.runs])
    if FLAGS.out:
        files.atomic_write_bytes(FLAGS.out, (table + "\n").encode())
    print(table)


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
