"""Committed evidence of finished FC runs: one JSON per run (accuracy, per-unit locality against each unit's own
permutation null, window-cropped accuracy, the command), a table of mean ± std per method, a histogram of the
per-unit ratios, and the first layer of one run as `layer1.npz`.

    python -m experiments.evidence --runs=runs/a/blasso-s0,runs/a/sgd-s0 --out=docs/results/cpu_augment
    python -m experiments.evidence --out=docs/results/cpu_augment --table        # the table and histogram only
    python -m experiments.evidence --runs=runs/a/blasso-s1 --out=docs/results/cpu_augment --kernel_from=runs/a/blasso-s1
    python -m experiments.evidence --frontier=docs/results/cpu_augment,docs/results/cpu_augment_grids \
        --frontier_out=docs/figures/frontier_cpu_augment     # accuracy against locality, every cell
    python -m experiments.evidence --render_docs     # every evidence table of README.md and docs/ from the JSONs

Each run's dataset is loaded as the run loaded it (its config), for the test images and the normalisation.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from blasso_jax.reporting import evidence, evidence_tables, frontier, rendered_docs
from blasso_jax.training import sweep
from experiments import evidence_outputs
from experiments import flags as train_flags

train_flags.define_shared_flags("runs", "out")
train_flags.define_once(flags.DEFINE_bool, "table", False, "write the table and histogram of every JSON in --out")
train_flags.define_once(
    flags.DEFINE_bool, "render_docs", False, "rewrite the evidence tables in README.md and docs/ (from the repo root)"
)
train_flags.define_once(flags.DEFINE_string, "kernel_from", None, "a run whose first layer goes to <out>/layer1.npz")
train_flags.define_once(flags.DEFINE_integer, "window", 9, "side of the window of the locality and the cropping")
train_flags.define_once(
    flags.DEFINE_list, "figure4", None, "run directories whose 64 most local first-layer units are drawn side by side"
)
train_flags.define_once(flags.DEFINE_string, "figure4_out", None, "the Figure 4 path without suffix (.png and .pdf)")
train_flags.define_once(
    flags.DEFINE_list, "frontier", None, "evidence directories whose JSONs the accuracy-locality frontier plots"
)
train_flags.define_once(flags.DEFINE_string, "frontier_out", None, "the frontier path without suffix (.png and .pdf)")
FLAGS = flags.FLAGS


def body() -> None:
    if FLAGS.render_docs:
        changed = rendered_docs.render_docs(Path.cwd())
        print(f"rendered: {', '.join(map(str, changed)) or 'every document was up to date'}")
        return
    if FLAGS.frontier:
        records = frontier.first_seen([evidence_tables.read_folder(Path(folder)) for folder in FLAGS.frontier])
        paths = frontier.plot_frontier(records, FLAGS.frontier_out or "frontier")
        print(f"frontier: {', '.join(map(str, paths))}")
        if not FLAGS.out:
            return
    if not FLAGS.out:
        raise app.UsageError("--out (the evidence directory, e.g. docs/results/<preset>) is required")
    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    for run_dir in FLAGS.runs or ():
        evidence.write_run(Path(run_dir), out, FLAGS.window)
    if FLAGS.kernel_from:
        evidence.write_kernel(Path(FLAGS.kernel_from), out)
    if FLAGS.figure4:
        runs, path = [Path(d) for d in FLAGS.figure4], FLAGS.figure4_out or str(out / "fig4_most_local")
        evidence.write_figure4(runs, path, FLAGS.window)
    if FLAGS.table:
        table = rendered_docs.render(f"<!-- evidence:{out.name}/methods -->\n{rendered_docs.CLOSE}", out.parent)
        figure = evidence_outputs.save_ratio_histogram(evidence_tables.read_folder(out), out / "ratio_histogram")
        sweep.write_table(out / "table.md", table, *figure)


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
