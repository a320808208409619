"""The paper's Figure 3: non-zero weights per layer over training, against S-CONV, S-LOCAL and dense levels.

    python -m experiments.fig3 --runs=runs/table2/cifar10-s-fc-blasso-beta50-seed0 --out=figures/fig3
    python -m experiments.fig3 --launch --datasets=cifar10,cifar100,svhn_cropped --epochs=400   # train, then plot

Each run directory needs `metrics.jsonl`, `config.jsonl` and `dataset.json` (as the trainer writes
them). The reference levels are the kernel sizes of S-CONV, S-LOCAL and S-FC at the runs' α. Runs
must agree in α and image shape; 10- and 100-class runs plot together, as in the paper, each class
count with its own classifier-layer reference.
With `--launch`, S-FC runs (the training flags, e.g. `--epochs`, `--beta`) are trained or
resumed first in `<workdir>/<run name>` and plotted. Where the runs logged first-layer locality,
`<out>_locality` plots it too.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from blasso_jax.common import files
from blasso_jax.reporting import figures, style
from blasso_jax.training import rundir, sweep
from experiments import flags as train_flags

train_flags.define_train_flags()
flags.adopt_module_key_flags(train_flags)  # --help lists the training flags
train_flags.define_shared_flags("runs", "seeds", "datasets", "out")
train_flags.define_once(flags.DEFINE_list, "labels", None, "one legend label per run (default: the directory names)")
train_flags.define_once(flags.DEFINE_bool, "launch", False, "train (or resume) the S-FC runs of --datasets first")
FLAGS = flags.FLAGS


def launch_runs() -> list[Path]:
    """Trains or resumes one S-FC run per --datasets entry (and --seeds) in --workdir (default runs/fig3); returns
    their directories."""
    config = train_flags.config_from_flags()
    if config.model != "s-fc":
        raise ValueError(f"Figure 3 follows S-FC's layers; --model is {config.model!r}, use s-fc")
    seeds = sweep.parse_seeds(FLAGS.seeds, config.seed)
    done = sweep.run_cells(
        [config.replace(dataset=d) for d in FLAGS.datasets], Path(FLAGS.workdir or "runs/fig3"), seeds
    )
    return [workdir for cell in done for workdir in cell.workdirs]


def read_run(run_dir: Path) -> tuple[list[dict], tuple[int, tuple[int, ...]], int]:
    """A run's metrics records, its (alpha, image_shape) and its class count, with errors naming the missing file."""
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    records = files.read_jsonl(run_dir / "metrics.jsonl")
    if not records:
        raise ValueError(f"{run_dir / 'metrics.jsonl'} is missing or holds no epoch")
    config, dataset = rundir.read_run_info(run_dir)
    return records, (config.alpha, tuple(dataset["image_shape"])), dataset["num_classes"]


def body() -> None:
    if not FLAGS.runs and not FLAGS.launch:
        raise app.UsageError("--runs (run directories, comma-separated) or --launch is required")
    run_dirs = launch_runs() if FLAGS.launch else [Path(d) for d in FLAGS.runs]
    labels = FLAGS.labels or [d.name for d in run_dirs]
    if len(labels) != len(run_dirs) or len(set(labels)) != len(labels):
        raise ValueError(f"--labels {labels} must name each of the {len(run_dirs)} runs once, distinctly")
    runs, settings, class_counts = {}, {}, set()
    for label, run_dir in zip(labels, run_dirs):
        runs[label], settings[run_dir], classes = read_run(run_dir)
        class_counts.add(classes)
    if len(set(settings.values())) > 1:
        listed = "; ".join(f"{d}: α={a}, image {s}" for d, (a, s) in settings.items())
        raise ValueError(f"the runs differ in α or image shape, so no references fit all: {listed}")
    alpha, image_shape = next(iter(settings.values()))
    fig = figures.plot_nonzeros(runs, figures.reference_counts(alpha, image_shape, sorted(class_counts)))
    out = FLAGS.out or "figures/fig3"
    paths = style.save_figure(fig, out)
    if any("locality" in r for records in runs.values() for r in records):
        paths += style.save_figure(figures.plot_locality(runs, image_shape), f"{out}_locality")
    print(f"figure: {', '.join(map(str, paths))}")


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
