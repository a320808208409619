"""The NLGP benchmark: does a local first layer emerge from data, and does β-LASSO make it emerge sooner or more?

    python -m experiments.nlgp             # 5 seeds of everything: 116 runs, about 8 minutes of recorded run time
    python -m experiments.nlgp --quick     # one short seed of everything: under 2 minutes (reported, not recorded)
    python -m experiments.nlgp --setting=ingrosso_goldt [--quick]  # their online setting (reporting.nlgp_online_runs)

The committed grid's times are in its JSONs (`wall_seconds`; docs/results.md, "Recorded times"), measured on
2 CPU cores shared with one training run.

What trains, how λ is chosen and what a run's record holds: `blasso_jax.reporting.nlgp_grid` (2-FC on NLGP and
its Gaussian control, SGD, SGD + L1, β-LASSO β=1 and β=50, IMP; λ by validation accuracy on NLGP seed 0 at the
main gain; the gain sweep repeats SGD and β-LASSO β=1 at each gain of --gains).

Outputs (`experiments.nlgp_outputs`): run directories under --workdir; one JSON per run (with the
reproducing `experiments.table2` command, the locality curve from initialisation and the first-layer
weights) and `table.md` in --results_dir; `nlgp_receptive_fields`, `nlgp_locality_curves` and
`nlgp_gain_sweep` in --figures_dir. Rerunning reads finished runs back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
from absl import app, flags

from blasso_jax.config import train_config as config_lib
from blasso_jax.reporting import nlgp_grid as grid
from blasso_jax.reporting import nlgp_online_runs
from blasso_jax.training import sweep
from experiments import flags as train_flags
from experiments import nlgp_outputs as outputs

train_flags.define_train_flags()
train_flags.define_once(flags.DEFINE_bool, "quick", False, "one short seed of everything (6 epochs, 6,000 examples)")
train_flags.define_shared_flags("seeds")  # default here: 0-4, or 0 with --quick
train_flags.define_once(flags.DEFINE_list, "gains", ["0.5", "1", "3", "10"], "gains g of the sweep")
train_flags.define_once(flags.DEFINE_integer, "train", None, "NLGP training examples drawn (validation included)")
train_flags.define_once(flags.DEFINE_list, "arms", None, "methods to run (default all): sgd, l1, beta1, beta50, imp")
train_flags.define_once(flags.DEFINE_list, "lambdas", None, "the λ grid of the L1 methods (default 1e-4,1e-3,1e-2)")
train_flags.define_once(flags.DEFINE_string, "setting", "default", "default, or ingrosso_goldt: their online setting")
train_flags.define_once(flags.DEFINE_list, "kinds", None, "ingrosso_goldt datasets (default both): nlgp, nlgp_gaussian")
train_flags.define_once(flags.DEFINE_string, "results_dir", None, "per-run JSON and table.md (default: see --help)")
train_flags.define_once(flags.DEFINE_string, "figures_dir", None, "the three figures (default: see --help)")
train_flags.define_once(
    flags.DEFINE_bool,
    "compilation_cache",
    True,
    "keep compiled programs in <workdir>/jax_cache: runs that differ only in seed or data compile once",
)
FLAGS = flags.FLAGS


def body() -> None:
    if FLAGS.setting != "default":  # Ingrosso & Goldt's online loop lives in the library
        seeds = sweep.parse_seeds(FLAGS.seeds, 0) if FLAGS.seeds else None
        paths = (FLAGS.workdir, FLAGS.results_dir, FLAGS.figures_dir)
        grid_options = (FLAGS.kinds, FLAGS.arms, FLAGS.lambdas)
        return nlgp_online_runs.run_options(FLAGS.setting, FLAGS.quick, seeds, *grid_options, *paths)
    given = {f.name: FLAGS[f.name].value for f in dataclasses.fields(config_lib.TrainConfig)}
    base, data = grid.base_config(FLAGS.quick, FLAGS.train, given)
    root = Path(FLAGS.workdir or "runs/nlgp")
    if FLAGS.compilation_cache:
        # Each run builds fresh jitted closures, so JAX's in-memory cache misses; XLA's persistent cache keys
        # on the program, which seeds and the two datasets share. Compiling is most of a short CPU run.
        jax.config.update("jax_compilation_cache_dir", str(root / "jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    results_dir = Path(FLAGS.results_dir or (root / "results" if FLAGS.quick else "docs/results/nlgp"))
    figures_dir = Path(FLAGS.figures_dir or (root / "figures" if FLAGS.quick else "docs/figures"))
    seeds = sweep.parse_seeds(FLAGS.seeds, 0) if FLAGS.seeds else range(1 if FLAGS.quick else 5)
    lambdas = tuple(float(v) for v in FLAGS.lambdas) if FLAGS.lambdas else grid.LAMBDAS
    gains = [float(g) for g in FLAGS.gains]
    groups = grid.run_grid(base, data, grid.arms_named(FLAGS.arms), lambdas, seeds, gains, root, results_dir)
    outputs.write_tables(results_dir, grid.MAIN_GAIN)
    outputs.draw_figures(groups, grid.MAIN_GAIN, {"sgd", grid.SWEEP_ARM}, grid.geometry(data), figures_dir)
    print(f"\nresults: {results_dir}; figures: {figures_dir}")


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
