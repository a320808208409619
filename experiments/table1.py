"""The paper's Table 1: the seven architectures trained with SGD, next to the paper's figures.

    python -m experiments.table1 --epochs=400                          # α=150 shallow, α=15 deep
    python -m experiments.table1 --config=smoke --models=s-conv,s-fc   # a CPU-sized check

Each model trains in `<workdir>/<dataset>-<model>`; rerunning continues an interrupted table.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from blasso_jax import config as config_lib
from blasso_jax import files, methods, paper, report, train
from blasso_jax.models import MODEL_NAMES
from experiments import flags as train_flags

train_flags.define_train_flags()
flags.adopt_module_key_flags(train_flags)  # --help lists the training flags
train_flags.define_once(flags.DEFINE_list, "models", list(MODEL_NAMES), "architectures to train")
train_flags.define_once(
    flags.DEFINE_integer, "deep_alpha", None, "α of the D-* models (default: α/10, as Table 1's sizes imply)"
)
FLAGS = flags.FLAGS

HEADERS = ("model", "α", "weights", "epochs", "test % (best val)", "paper 400 ep.", "paper 4000 ep.")


def body() -> None:
    config = train_flags.config_from_flags("table1")
    deep_alpha = FLAGS.deep_alpha or max(1, config.alpha // 10)
    root = Path(FLAGS.workdir or "runs/table1")
    key = paper.paper_dataset(config.dataset)
    rows = []
    for name in FLAGS.models:
        cell = config.replace(model=name, alpha=deep_alpha if name.startswith("d-") else config.alpha)
        results = train.run_once(cell, root / config_lib.run_name(cell))
        figures = paper.TABLE1.get(key, {}).get(name, (None, None))
        weights = sum(results["dense_per_layer"].values())
        best = report.percent(results["test_accuracy"]["best"])
        rows.append([name, cell.alpha, weights, results["epochs"], best, *figures])
    label = methods.get(config.method).label(config)
    table = f"{report.dataset_label(config.dataset)}, {label}\n\n" + report.markdown_table(HEADERS, rows)
    files.atomic_write_bytes(root / "table1.md", (table + "\n").encode())
    print(f"\n{table}\n\ntable: {root / 'table1.md'}")


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
