"""The paper's Table 2: S-FC trained with β-LASSO or SGD, next to the paper's figures.

    python -m experiments.table2 --beta=1                  # β-LASSO β=1 on CIFAR-10, Table 2 settings
    python -m experiments.table2 --method=sgd --dataset=svhn_cropped
    python -m experiments.table2 --sweep --datasets=cifar10,cifar100,svhn_cropped   # the whole table
    python -m experiments.table2 --sweep --grid=paper --datasets=cifar10,cifar100,svhn_cropped  # tuned as the paper
    python -m experiments.table2 --config=cpu_augment --method=sgd --grid=cpu_augment   # one run's grid
    python -m experiments.table2 --config=smoke            # a CPU-sized run end to end

A sweep runs β ∈ {0, 1, 50} and SGD per dataset in `<workdir>/<run name>`; finished cells are
read back and interrupted ones resumed, so rerunning the command continues the sweep. `--grid`
trains the run (with `--sweep`, each cell of the sweep) over its method's named grid
(`blasso_jax.methods`: for β-LASSO λ_first × λ_rest, for SGD momentum × weight decay, the paper's
grids each × dropout {0, rate}) in `<workdir>/<run name>/<grid point>`, and reports the configuration
of best validation accuracy with its test accuracy.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from blasso_jax.common import parallel, text
from blasso_jax.config import train_config as config_lib
from blasso_jax.methods import registry as methods
from blasso_jax.methods.runs import run_name
from blasso_jax.reporting import report
from blasso_jax.training import sweep as sweep_lib
from blasso_jax.training import train
from experiments import flags as train_flags

train_flags.define_train_flags()
flags.adopt_module_key_flags(train_flags)  # --help lists the training flags
train_flags.define_shared_flags("seeds", "datasets")
train_flags.define_once(
    flags.DEFINE_bool, "sweep", False, "run β ∈ {0, 1, 50} and SGD over --datasets and print one table"
)
train_flags.define_once(
    lambda name, default, help_text, **kwargs: flags.DEFINE_enum(
        name, default, list(methods.grid_names()), help_text, **kwargs
    ),
    "grid",
    None,
    "tune the run (with --sweep: each cell of the sweep) over its method's grid of this name ('paper': the paper's; "
    "'small': a CPU-sized subset; 'cpu_augment' (SGD) and 'cpu_augment_momentum' (β-LASSO): the cpu_augment "
    "preset's) and report the configuration of best validation accuracy",
)
FLAGS = flags.FLAGS

# The cells of a sweep: a method and the config fields it sets (SGD has no β).
SWEEP = (("blasso", {"beta": 0.0}), ("blasso", {"beta": 1.0}), ("blasso", {"beta": 50.0}), ("sgd", {}))


def sweep_cells(config: config_lib.TrainConfig) -> list[config_lib.TrainConfig]:
    return [config.replace(dataset=d, method=m, **fields) for d in FLAGS.datasets for m, fields in SWEEP]


def sweep(config: config_lib.TrainConfig, seeds: tuple[int, ...]) -> None:
    """Trains or reads back every cell of the sweep over --datasets and --seeds and writes `<workdir>/table2.md`."""
    root = Path(FLAGS.workdir or "runs/table2")
    done = sweep_lib.run_cells(sweep_cells(config), root, seeds)
    rows = [report.table2_row(cell.results) for cell in done]
    sweep_lib.write_table(root / "table2.md", text.markdown_table(report.TABLE2_HEADERS, rows))


def grid_sweep(cells: list[config_lib.TrainConfig], grid: str, seeds: tuple[int, ...]) -> None:
    """Trains or reads back every grid point of every cell (over --seeds), selects each cell's point by its mean
    validation accuracy and writes the selected configurations with their accuracies to `<workdir>/table2.md`."""
    root = Path(FLAGS.workdir or "runs/table2")
    rows = [
        [
            *report.table2_row(selected.results),
            selected.mean_std(lambda r: r["val_accuracy"]["best"]),
            sweep_lib.grid_point_name(selected.config, grid),
        ]
        for selected in sweep_lib.run_grid(cells, grid, root, seeds)
    ]
    headers = (*report.TABLE2_HEADERS, "val % (best)", f"selected of grid {grid!r}")
    sweep_lib.write_table(root / "table2.md", text.markdown_table(headers, rows))


def train_one(config: config_lib.TrainConfig, seeds: tuple[int, ...]) -> None:
    """Trains (or resumes, or stops after --stop_after) one run per seed and prints its Table 2 row (mean ± std)."""
    results = []
    for seed in seeds:
        run = config.replace(seed=seed)
        workdir = Path(FLAGS.workdir or f"runs/table2/{run_name(run)}")
        workdir = workdir / f"seed{seed}" if FLAGS.workdir and len(seeds) > 1 else workdir
        results.append(
            train.train_and_evaluate(
                run, workdir, resume=FLAGS.resume, overwrite=FLAGS.overwrite, stop_after=FLAGS.stop_after
            )
        )
        if results[-1] is not None and parallel.is_writer():
            print(f"\nresults: {workdir}/results.json")
    finished = [r for r in results if r is not None]
    if finished and parallel.is_writer():
        print()
        print(text.markdown_table(report.TABLE2_HEADERS, [report.table2_row(finished)]))
        print("\n" + report.first_layer_summary(finished))


def body() -> None:
    config = train_flags.config_from_flags()
    seeds = sweep_lib.parse_seeds(FLAGS.seeds, config.seed)
    if FLAGS.grid:
        grid_sweep(sweep_cells(config) if FLAGS.sweep else [config], FLAGS.grid, seeds)
    else:
        sweep(config, seeds) if FLAGS.sweep else train_one(config, seeds)


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
