"""The NLGP benchmark: does a local first layer emerge from data, and does β-LASSO make it emerge sooner or more?

    python -m experiments.nlgp             # 5 seeds of everything: 116 runs, about 8 minutes of recorded run time
    python -m experiments.nlgp --quick     # one short seed of everything: under 2 minutes (reported, not recorded)
    python -m experiments.nlgp --setting=ingrosso_goldt [--quick]  # their online setting (reporting.nlgp_runs)

The committed grid's times are in its JSONs (`wall_seconds`; docs/results.md, "Recorded times"), measured on
2 CPU cores shared with one training run.

A two-layer network (2-FC: K=8 hidden units, BatchNorm, ReLU) learns to tell two correlation lengths
apart on a ring of 40 sites, on NLGP inputs (`blasso_jax.data.nlgp`: non-Gaussian, where a local field
should emerge) and on their Gaussian control (the same covariance, no higher-order structure).
Methods: plain SGD (no momentum, no weight decay, so the methods differ only in the L1 term and the
threshold), SGD + L1 (β-LASSO β=0), β-LASSO β=1 and β=50, each through the real trainer
(`train.run_once`, as experiments.table2), with the per-unit locality of `blasso_jax.analysis.locality`
recorded every few epochs.

λ of each L1 method is chosen as the paper chooses it, by validation accuracy: every λ of
`LAMBDAS` is trained on NLGP seed 0 at the main gain, and the best is used for every seed and both
datasets (L1 on the first layer only; the classifier trains with plain SGD). The gain sweep repeats
SGD and `SWEEP_ARM` at each gain of --gains.

Outputs (`experiments.nlgp_outputs`): run directories under --workdir; one JSON per run (with the
reproducing `experiments.table2` command, the locality curve from initialisation and the first-layer
weights) and `table.md` in --results_dir; `nlgp_receptive_fields`, `nlgp_locality_curves` and
`nlgp_gain_sweep` in --figures_dir. Rerunning reads finished runs back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import app, flags

from blasso_jax.common import files
from blasso_jax.config import train_config as config_lib
from blasso_jax.data import nlgp
from blasso_jax.models.counting import FIRST_LAYER
from blasso_jax.reporting import nlgp_runs, report
from blasso_jax.sparse import export
from blasso_jax.training import sweep, train
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

MAIN_GAIN = 10.0
DATA = {"dim": 40, "xi": "1:3", "ndim": 1, "train": 40_000, "test": 5_000}
SETTING: dict[str, Any] = dict(
    model="2-fc",
    alpha=1,  # 2-FC does not read α; 1 keeps the logs honest
    width=8,
    batch_size=256,
    learning_rate=1.0,  # BatchNorm makes the first layer scale-free; 0.1 barely moves it in 30 epochs
    epochs=30,
    validation_size=5_000,
    precision="fp32",
    augment="none",
    l1_rest=0.0,
    locality_every=3,
    test_every=3,
    checkpoint_every=1_000,
    keep_checkpoints=1,
)
QUICK = {"setting": dict(epochs=6, validation_size=1_000, locality_every=2, test_every=2), "train": 6_000}
LAMBDAS = (1e-4, 1e-3, 1e-2)
KINDS = ("nlgp", "nlgp_gaussian")


@dataclasses.dataclass(frozen=True)
class Arm:
    """A method of the comparison: its key, table label, config fields, and whether λ is chosen from `LAMBDAS`."""

    key: str
    label: str
    fields: tuple[tuple[str, Any], ...]
    tuned: bool = True


ARMS = (
    Arm("sgd", "SGD", (("method", "sgd"), ("momentum", 0.0), ("weight_decay", 0.0)), tuned=False),
    Arm("l1", "SGD + L1 (β=0)", (("method", "blasso"), ("beta", 0.0))),
    Arm("beta1", "β-LASSO β=1", (("method", "blasso"), ("beta", 1.0))),
    Arm("beta50", "β-LASSO β=50", (("method", "blasso"), ("beta", 50.0))),
    # Iterative magnitude pruning (Frankle et al.) to the density β-LASSO β=1 leaves in the first layer (252 of 320
    # weights on average over its 5 seeds at g=10): 20 % of the survivors per round, two rounds, each 10 epochs
    # retrained from the weights of epoch 1, so it trains as many epochs as the others.
    Arm(
        "imp",
        "IMP (rewind to epoch 1)",
        (
            ("method", "imp"),
            ("momentum", 0.0),
            ("weight_decay", 0.0),
            ("density_first", 0.79),
            ("density_rest", 1.0),
            ("imp_rate", 0.2),
            ("rewind_epoch", 1),
        ),
        tuned=False,
    ),
)
# Swept against SGD. Not the paper's β=50: with its λ chosen by validation accuracy (1e-4) it prunes a few percent
# of the first layer and trains as SGD does; β=1 at its chosen λ (1e-3) is the β-LASSO arm that acts.
SWEEP_ARM = "beta1"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run of the benchmark."""

    kind: str
    gain: float
    arm: Arm
    l1: float
    seed: int

    @property
    def method_part(self) -> str:
        return self.arm.key + (f"-l{self.l1:g}" if self.arm.tuned else "")

    @property
    def name(self) -> str:
        return f"{self.kind}-g{self.gain:g}-{self.method_part}"


def base_config() -> tuple[config_lib.TrainConfig, dict[str, Any]]:
    """The training settings and NLGP parameters: `SETTING`, shortened by --quick, then any training flag given."""
    setting, data = dict(SETTING), dict(DATA)
    if FLAGS.quick:
        setting.update(QUICK["setting"])
        data["train"] = QUICK["train"]
    if FLAGS.train is not None:
        data["train"] = FLAGS.train
    given = {f.name: FLAGS[f.name].value for f in dataclasses.fields(config_lib.TrainConfig)}
    setting.update({k: v for k, v in given.items() if v is not None and k != "synthetic_shape"})
    return config_lib.TrainConfig().replace(**setting), data


def cell_config(base: config_lib.TrainConfig, data: dict[str, Any], cell: Cell) -> config_lib.TrainConfig:
    spec = f"{cell.kind}:" + ",".join(f"{k}={v}" for k, v in {**data, "gain": f"{cell.gain:g}"}.items())
    return base.replace(dataset=spec, seed=cell.seed, l1_first=cell.l1, **dict(cell.arm.fields))


def run_cell(base, data, cell: Cell, root: Path, results_dir: Path) -> dict[str, Any]:
    """Trains (or reads back) one cell and writes its per-run JSON; returns that record."""
    config = cell_config(base, data, cell)
    run_dir = root / f"{cell.kind}-g{cell.gain:g}" / f"{cell.method_part}-seed{cell.seed}"
    results = train.run_once(config, run_dir)
    record = seed_record(cell, config, run_dir, results)
    files.atomic_write_json(results_dir / f"{cell.name}-seed{cell.seed}.json", record)
    return record


def seed_record(cell: Cell, config, run_dir: Path, results: dict[str, Any]) -> dict[str, Any]:
    """What the tables and figures read of one run: final numbers, the locality curve and the first layer."""
    metrics = files.read_jsonl(run_dir / "metrics.jsonl")
    curve = [outputs.initial_point(config)] + [
        outputs.point(r["epoch"], r["locality"], r["nonzero_per_layer"][FIRST_LAYER], r["val_accuracy"])
        for r in metrics
        if r.get("locality")
    ]
    kernel = export.load(run_dir / "sparse_params.npz").params[FIRST_LAYER]["kernel"]
    return {
        "dataset": cell.kind,
        "gain": cell.gain,
        "method": cell.arm.label,
        "arm": cell.arm.key,
        "l1_first": cell.l1 if cell.arm.tuned else None,
        "seed": cell.seed,
        "command": report.command_line(results["config"]),
        "test_accuracy": results["test_accuracy"]["final"],
        "val_accuracy": results["val_accuracy"]["final"],
        "locality": results["locality"],
        "nonzeros_layer1": results["nonzero_per_layer"][FIRST_LAYER],
        "weights_layer1": results["dense_per_layer"][FIRST_LAYER],
        "curve": curve,
        "first_layer_kernel": [[float(f"{v:.5g}") for v in row] for row in np.asarray(kernel)],
        "wall_seconds": results["wall_seconds"],
    }


def select_lambdas(base, data, arms, lambdas, root: Path, results_dir: Path) -> dict[str, float]:
    """λ per tuned arm: the best validation accuracy (final epoch) over `lambdas` on NLGP seed 0 at the main gain
    (the smaller λ among equals)."""
    chosen = {}
    for arm in (a for a in arms if a.tuned):
        scores = {}
        for l1 in lambdas:
            record = run_cell(base, data, Cell("nlgp", MAIN_GAIN, arm, l1, 0), root, results_dir)
            scores[l1] = record["val_accuracy"]
        chosen[arm.key] = max(lambdas, key=lambda l1: (scores[l1], -l1))
    return chosen


def chosen_arms() -> list[Arm]:
    """The arms of --arms (all by default), in `ARMS` order; a ValueError names the valid keys."""
    keys = [a.key for a in ARMS]
    unknown = sorted(set(FLAGS.arms or keys) - set(keys))
    if unknown:
        raise ValueError(f"unknown --arms {unknown}; valid: {', '.join(keys)}")
    return [a for a in ARMS if a.key in (FLAGS.arms or keys)]


def body() -> None:
    if FLAGS.setting != "default":  # Ingrosso & Goldt's online loop lives in the library
        seeds = sweep.parse_seeds(FLAGS.seeds, 0) if FLAGS.seeds else None
        paths = (FLAGS.workdir, FLAGS.results_dir, FLAGS.figures_dir)
        grid = (FLAGS.kinds, FLAGS.arms, FLAGS.lambdas)
        return nlgp_runs.run_options(FLAGS.setting, FLAGS.quick, seeds, *grid, *paths)
    base, data = base_config()
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
    gains = sorted({float(g) for g in FLAGS.gains} | {MAIN_GAIN})
    arms = chosen_arms()
    lambdas = tuple(float(v) for v in FLAGS.lambdas) if FLAGS.lambdas else LAMBDAS
    chosen = select_lambdas(base, data, arms, lambdas, root, results_dir)
    cells = [Cell(kind, MAIN_GAIN, arm, chosen.get(arm.key, 0.0), s) for kind in KINDS for arm in arms for s in seeds]
    sweep_arms = [a for a in arms if a.key in ("sgd", SWEEP_ARM)]
    cells += [
        Cell(kind, gain, arm, chosen.get(arm.key, 0.0), s)
        for gain in gains
        if gain != MAIN_GAIN
        for kind in KINDS
        for arm in sweep_arms
        for s in seeds
    ]
    groups: dict[Cell, list[dict]] = {}
    for cell in cells:
        key = dataclasses.replace(cell, seed=0)
        groups.setdefault(key, []).append(run_cell(base, data, cell, root, results_dir))
    geometry = nlgp.parse_spec(cells[0].kind + ":" + ",".join(f"{k}={v}" for k, v in data.items())).geometry
    gain_arms = {"sgd", SWEEP_ARM}
    outputs.write_tables(results_dir, MAIN_GAIN)
    outputs.draw_figures(list(groups.values()), MAIN_GAIN, gain_arms, geometry, figures_dir)
    print(f"\nresults: {results_dir}; figures: {figures_dir}")


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
