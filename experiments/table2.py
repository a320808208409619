"""The paper's Table 2: S-FC trained with β-LASSO or SGD, next to the paper's figures.

    python -m experiments.table2 --beta=1                  # β-LASSO β=1 on CIFAR-10, Table 2 settings
    python -m experiments.table2 --method=sgd --dataset=svhn_cropped
    python -m experiments.table2 --sweep --datasets=cifar10,cifar100,svhn_cropped   # the whole table
    python -m experiments.table2 --config=smoke            # a CPU-sized run end to end

A sweep runs β ∈ {0, 1, 50} and SGD per dataset in `<workdir>/<dataset>-<method>`; finished cells
are read back and interrupted ones resumed, so rerunning the command continues the sweep.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from blasso_jax import io, report, train
from experiments import flags as train_flags

train_flags.define_train_flags()
train_flags.define_once(
    flags.DEFINE_bool, "sweep", False, "run β ∈ {0, 1, 50} and SGD over --datasets and print one table"
)
train_flags.define_once(flags.DEFINE_list, "datasets", ["cifar10"], "datasets of a --sweep (tfds names or local paths)")
FLAGS = flags.FLAGS

SWEEP = (("blasso", 0.0), ("blasso", 1.0), ("blasso", 50.0), ("sgd", 50.0))


def run_name(config) -> str:
    method = "sgd" if config.method == "sgd" else f"blasso-beta{config.beta:g}"
    return (
        f"{report.paper_dataset(config.dataset) or Path(config.dataset).stem}-{config.model}-{method}-seed{config.seed}"
    )


def main(argv):
    train_flags.quiet_library_logs()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.distributed:
        import jax

        jax.distributed.initialize()
    try:
        config = train_flags.config_from_flags()
        if FLAGS.sweep:
            root = Path(FLAGS.workdir or "runs/table2")
            cells = [config.replace(dataset=d, method=m, beta=b) for d in FLAGS.datasets for m, b in SWEEP]
            rows = [report.table2_row(train.run_once(cell, root / run_name(cell))) for cell in cells]
            table = report.markdown_table(report.TABLE2_HEADERS, rows)
            io.atomic_write_bytes(root / "table2.md", (table + "\n").encode())
            print(f"\n{table}\n\ntable: {root / 'table2.md'}")
            return
        workdir = FLAGS.workdir or f"runs/table2/{run_name(config)}"
        results = train.train_and_evaluate(
            config, workdir, resume=FLAGS.resume, overwrite=FLAGS.overwrite, stop_after=FLAGS.stop_after
        )
    except (ValueError, OSError, train.WorkdirError, train.NonFiniteLossError) as error:
        train_flags.fail(error)
    if results is None:
        return
    print()
    print(report.markdown_table(report.TABLE2_HEADERS, [report.table2_row(results)]))
    print(f"\nresults: {workdir}/results.json")


if __name__ == "__main__":
    app.run(main)
