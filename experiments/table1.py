"""The paper's Table 1: the seven architectures trained with SGD, next to the paper's figures.

    python -m experiments.table1 --epochs=400                          # α=150 shallow, α=15 deep
    python -m experiments.table1 --config=smoke --models=s-conv,s-fc   # a CPU-sized check

Each model trains in `<workdir>/<dataset>-<model>`; rerunning continues an interrupted table.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from blasso_jax.common import paper, text
from blasso_jax.methods import registry as methods
from blasso_jax.models.networks import MODEL_NAMES, MODELS
from blasso_jax.reporting import report
from blasso_jax.training import sweep
from experiments import flags as train_flags

train_flags.define_train_flags()
flags.adopt_module_key_flags(train_flags)  # --help lists the training flags
train_flags.define_shared_flags("seeds")
train_flags.define_once(flags.DEFINE_list, "models", list(MODEL_NAMES), "architectures to train")
train_flags.define_once(
    flags.DEFINE_integer, "deep_alpha", None, "α of the D-* models (default: α/10, as Table 1's sizes imply)"
)
FLAGS = flags.FLAGS

HEADERS = ("model", "α", "weights", "epochs", "test % (best val)", "paper 400 ep.", "paper 4000 ep.")


def model_alpha(name: str, alpha: int, deep_alpha: int | None) -> int:
    """α of model `name` in Table 1: `alpha` for the shallow models; for the others `deep_alpha`, or `alpha` scaled
    as the paper's sizes scale it (the deep models' α is a tenth of the shallow ones')."""
    entry, shallow = MODELS[name], MODELS["s-fc"].paper_alpha
    if entry.paper_alpha == shallow:
        return alpha
    return deep_alpha or max(1, alpha * entry.paper_alpha // shallow)


def body() -> None:
    config = train_flags.config_from_flags("table1")
    root = Path(FLAGS.workdir or "runs/table1")
    seeds = sweep.parse_seeds(FLAGS.seeds, config.seed)
    cells = [config.replace(model=n, alpha=model_alpha(n, config.alpha, FLAGS.deep_alpha)) for n in FLAGS.models]
    key = paper.paper_dataset(config.dataset)
    rows = []
    for cell in sweep.run_cells(cells, root, seeds):
        name = cell.config.model
        figures = paper.TABLE1.get(key, {}).get(name, (None, None))
        weights = sum(cell.run_results["dense_per_layer"].values())
        best = cell.mean_std(lambda r: r["test_accuracy"]["best"])
        rows.append([name, cell.config.alpha, weights, cell.config.epochs, best, *figures])
    label = methods.get(config.method).label(config)
    table = f"{report.dataset_label(config.dataset)}, {label}\n\n" + text.markdown_table(HEADERS, rows)
    sweep.write_table(root / "table1.md", table)


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
