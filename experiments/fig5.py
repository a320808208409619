"""The paper's Figure 5: ResNet18 with larger kernels, trained with β-LASSO and with SGD.

    python -m experiments.fig5 --datasets=cifar10,cifar100,svhn_cropped --epochs=400     # the paper's figure
    python -m experiments.fig5 --config=fig5_cpu --dataset=D --datasets=D --kernel_sizes=3,7,11   # CPU scale

Each (dataset, kernel size, method) cell trains in `<workdir>/<run name>` (default runs/fig5); finished
cells are read back and interrupted ones resumed, so rerunning continues the figure. The figure puts
test accuracy (at the best validation epoch) against the kernel size, one panel per dataset, and
`<workdir>/fig5.md` holds the table.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from absl import app, flags

from blasso_jax.common import text
from blasso_jax.config import train_config as config_lib
from blasso_jax.methods import registry as methods
from blasso_jax.models.networks import MODELS, layer_weights
from blasso_jax.reporting import report, scaling_figures, style
from blasso_jax.training import sweep
from experiments import flags as train_flags

train_flags.define_train_flags()
flags.adopt_module_key_flags(train_flags)  # --help lists the training flags
train_flags.define_shared_flags("seeds", "datasets", "out")
train_flags.define_once(flags.DEFINE_list, "kernel_sizes", ["3", "5", "7", "9", "11", "13", "15"], "block kernel sizes")
FLAGS = flags.FLAGS

METHODS = ("blasso", "sgd")


def cells(config: config_lib.TrainConfig) -> list[config_lib.TrainConfig]:
    """Every (dataset, kernel size, method) run of the figure: ResNet18 over the base config, at the standard width
    α=64 (`models.MODELS`) unless --alpha or the --config preset sets α."""
    alpha = config.alpha if train_flags.set_explicitly("alpha") else MODELS["resnet18"].paper_alpha
    return [
        config.replace(model="resnet18", alpha=alpha, dataset=dataset, kernel_size=int(k), method=method)
        for dataset in FLAGS.datasets
        for k in FLAGS.kernel_sizes
        for method in METHODS
    ]


def weights(cell: config_lib.TrainConfig) -> str:
    """The plan's description of a cell: its weight count (10 classes: a CIFAR-10-sized head)."""
    count = sum(layer_weights("resnet18", cell.alpha, 10, (32, 32, 3), kernel_size=cell.kernel_size).values())
    return f"ResNet18 α={cell.alpha}, k={cell.kernel_size}: {count:,} weights"


def body() -> None:
    config = train_flags.config_from_flags()
    root = Path(FLAGS.workdir or "runs/fig5")
    seeds = sweep.parse_seeds(FLAGS.seeds, config.seed)
    accuracy: dict[str, dict[str, dict[int, float]]] = {}
    rows = []
    for cell in sweep.run_cells(cells(config), root, seeds, describe=weights):
        label = methods.get(cell.config.method).label(cell.config)
        dataset = report.dataset_label(cell.config.dataset)
        tests = cell.values(lambda r: r["test_accuracy"]["best"])
        accuracy.setdefault(dataset, {}).setdefault(label, {})[cell.config.kernel_size] = 100 * statistics.mean(tests)
        best = cell.mean_std(lambda r: r["test_accuracy"]["best"])
        rows.append([dataset, cell.config.kernel_size, label, cell.config.epochs, best])
    table = text.markdown_table(("dataset", "kernel", "method", "epochs", "test % (best val)"), rows)
    paths = style.save_figure(scaling_figures.plot_kernel_sizes(accuracy), FLAGS.out or str(root / "fig5"))
    sweep.write_table(root / "fig5.md", table, *paths)


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
