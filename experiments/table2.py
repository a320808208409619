"""The paper's Table 2: S-FC trained with β-LASSO or SGD, next to the paper's figures.

    python -m experiments.table2 --beta=1                  # β-LASSO β=1 on CIFAR-10, Table 2 settings
    python -m experiments.table2 --method=sgd --dataset=svhn_cropped
    python -m experiments.table2 --sweep --datasets=cifar10,cifar100,svhn_cropped   # the whole table
    python -m experiments.table2 --grid=paper --datasets=cifar10,cifar100,svhn_cropped  # tuned as the paper
    python -m experiments.table2 --config=smoke            # a CPU-sized run end to end

A sweep runs β ∈ {0, 1, 50} and SGD per dataset in `<workdir>/<run name>`; finished cells are
read back and interrupted ones resumed, so rerunning the command continues the sweep. `--grid`
sweeps too, but trains each cell over its method's grid (`blasso_jax.methods`: for β-LASSO λ_first
× λ_rest, for SGD momentum × weight decay, each × dropout {0, rate}) in `<workdir>/<run name>/<grid
point>`, and reports the configuration of best validation accuracy with its test accuracy.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from blasso_jax import config as config_lib
from blasso_jax import files, methods, parallel, report, train
from experiments import flags as train_flags

train_flags.define_train_flags()
flags.adopt_module_key_flags(train_flags)  # --help lists the training flags
train_flags.define_shared_flags()
train_flags.define_once(
    flags.DEFINE_bool, "sweep", False, "run β ∈ {0, 1, 50} and SGD over --datasets and print one table"
)
train_flags.define_once(
    lambda name, default, help_text, **kwargs: flags.DEFINE_enum(
        name, default, list(methods.GRID_NAMES), help_text, **kwargs
    ),
    "grid",
    None,
    "tune each cell of the sweep over its method's grid ('paper': the paper's; 'small': a CPU-sized subset) "
    "and report the configuration of best validation accuracy",
)
FLAGS = flags.FLAGS

# The cells of a sweep: a method and the config fields it sets (SGD has no β).
SWEEP = (("blasso", {"beta": 0.0}), ("blasso", {"beta": 1.0}), ("blasso", {"beta": 50.0}), ("sgd", {}))


def sweep(config: config_lib.TrainConfig) -> None:
    """Trains or reads back every cell of the sweep over --datasets and writes `<workdir>/table2.md`."""
    root = Path(FLAGS.workdir or "runs/table2")
    cells = [config.replace(dataset=d, method=m, **fields) for d in FLAGS.datasets for m, fields in SWEEP]
    rows = [report.table2_row(train.run_once(cell, root / config_lib.run_name(cell))) for cell in cells]
    table = report.markdown_table(report.TABLE2_HEADERS, rows)
    files.atomic_write_bytes(root / "table2.md", (table + "\n").encode())
    print(f"\n{table}\n\ntable: {root / 'table2.md'}")


def grid_sweep(config: config_lib.TrainConfig, grid: str) -> None:
    """Trains or reads back every grid point of every sweep cell, selects each cell's point by validation
    accuracy and writes the selected configurations with their accuracies to `<workdir>/table2.md`."""
    if config.validation_size == 0:
        raise ValueError("--grid selects by validation accuracy; set --validation_size above 0")
    root = Path(FLAGS.workdir or "runs/table2")
    cells = [config.replace(dataset=d, method=m, **fields) for d in FLAGS.datasets for m, fields in SWEEP]
    points = {config_lib.run_name(cell): methods.grid_configs(cell, grid) for cell in cells}
    total = sum(map(len, points.values()))
    print(f"{total} runs of {config.epochs} epochs ({total * config.epochs} epochs in all) in {root}, grid {grid!r}")
    rows = []
    for name, candidates in points.items():
        results = [train.run_once(point, root / name / grid_point_name(point, grid)) for point in candidates]
        selected = train.best_by_validation(results)
        chosen = config_lib.TrainConfig.from_dict(selected["config"])
        rows.append(
            [
                *report.table2_row(selected),
                report.percent(selected["val_accuracy"]["best"]),
                grid_point_name(chosen, grid),
            ]
        )
    table = report.markdown_table((*report.TABLE2_HEADERS, "val % (best)", f"selected of grid {grid!r}"), rows)
    files.atomic_write_bytes(root / "table2.md", (table + "\n").encode())
    print(f"\n{table}\n\ntable: {root / 'table2.md'}")


def grid_point_name(config: config_lib.TrainConfig, grid: str) -> str:
    """A grid point's directory name: its values of the grid's fields, e.g. l1_first2e-06-l1_rest5e-06-dropout0."""
    fields = (*methods.get(config.method).grids[grid], "dropout")
    return "-".join(f"{field}{getattr(config, field):g}" for field in fields)


def train_one(config: config_lib.TrainConfig) -> None:
    """Trains (or resumes, or stops after --stop_after) one run and prints its Table 2 row."""
    workdir = FLAGS.workdir or f"runs/table2/{config_lib.run_name(config)}"
    results = train.train_and_evaluate(
        config, workdir, resume=FLAGS.resume, overwrite=FLAGS.overwrite, stop_after=FLAGS.stop_after
    )
    if results is not None and parallel.is_writer():
        print()
        print(report.markdown_table(report.TABLE2_HEADERS, [report.table2_row(results)]))
        print(f"\nresults: {workdir}/results.json")


def body() -> None:
    config = train_flags.config_from_flags()
    if FLAGS.grid:
        grid_sweep(config, FLAGS.grid)
    else:
        sweep(config) if FLAGS.sweep else train_one(config)


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
