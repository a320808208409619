"""The paper's Figure 5: ResNet18 with larger kernels, trained with β-LASSO and with SGD.

    python -m experiments.fig5 --datasets=cifar10,cifar100,svhn_cropped --epochs=400     # the paper's figure
    python -m experiments.fig5 --config=fig5_cpu --dataset=D --datasets=D --kernel_sizes=3,7,11   # CPU scale

Each (dataset, kernel size, method) cell trains in `<workdir>/<run name>` (default runs/fig5); finished
cells are read back and interrupted ones resumed, so rerunning continues the figure. The figure puts
test accuracy (at the best validation epoch) against the kernel size, one panel per dataset, and
`<workdir>/fig5.md` holds the table.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from blasso_jax import config as config_lib
from blasso_jax import figures, files, methods, report, train
from experiments import flags as train_flags

train_flags.define_train_flags()
flags.adopt_module_key_flags(train_flags)  # --help lists the training flags
train_flags.define_shared_flags()
train_flags.define_once(flags.DEFINE_list, "kernel_sizes", ["3", "5", "7", "9", "11", "13", "15"], "block kernel sizes")
FLAGS = flags.FLAGS

METHODS = ("blasso", "sgd")


def cells(config: config_lib.TrainConfig) -> list[config_lib.TrainConfig]:
    """Every (dataset, kernel size, method) run of the figure, ResNet18 over the base config."""
    return [
        config.replace(model="resnet18", dataset=dataset, kernel_size=int(k), method=method)
        for dataset in FLAGS.datasets
        for k in FLAGS.kernel_sizes
        for method in METHODS
    ]


def body() -> None:
    runs = cells(train_flags.config_from_flags())
    for cell in runs:
        cell.validate()
    root = Path(FLAGS.workdir or "runs/fig5")
    print(f"{len(runs)} runs of {runs[0].epochs} epochs ({len(runs) * runs[0].epochs} epochs in all) in {root}")
    accuracy: dict[str, dict[str, dict[int, float]]] = {}
    rows = []
    for cell in runs:
        results = train.run_once(cell, root / config_lib.run_name(cell))
        label = methods.get(cell.method).label(cell)
        dataset = report.dataset_label(cell.dataset)
        best = report.percent(results["test_accuracy"]["best"])
        accuracy.setdefault(dataset, {}).setdefault(label, {})[cell.kernel_size] = best
        rows.append([dataset, cell.kernel_size, label, results["epochs"], best])
    table = report.markdown_table(("dataset", "kernel", "method", "epochs", "test % (best val)"), rows)
    files.atomic_write_bytes(root / "fig5.md", (table + "\n").encode())
    paths = figures.save_figure(figures.plot_kernel_sizes(accuracy), FLAGS.out or str(root / "fig5"))
    print(f"\n{table}\n\ntable: {root / 'fig5.md'}\nfigure: {', '.join(map(str, paths))}")


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
