"""The NLGP benchmark (`python -m experiments.nlgp`): does a local first layer emerge from data, and does β-LASSO
make it emerge sooner or more? Its arms, cells and λ selection, one run per cell through the trainer, and each run's
record (the JSON `reporting.nlgp_tables` reads).

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
SGD and `SWEEP_ARM` at each gain asked for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from blasso_jax.analysis import measures as analysis
from blasso_jax.common import files, rng
from blasso_jax.config import train_config as config_lib
from blasso_jax.data import nlgp
from blasso_jax.data.geometry import Geometry
from blasso_jax.models.counting import FIRST_LAYER
from blasso_jax.reporting import report
from blasso_jax.sparse import export
from blasso_jax.training import train
from blasso_jax.training.selection import best_by_validation

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
KINDS = nlgp.KINDS  # ("nlgp", "nlgp_gaussian")


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


def base_config(
    quick: bool, train_size: int | None, given: dict[str, Any]
) -> tuple[config_lib.TrainConfig, dict[str, Any]]:
    """The training settings and NLGP parameters: `SETTING`, shortened by `quick`, then every training field
    `given` (those not None; an entry point's training flags)."""
    setting, data = dict(SETTING), dict(DATA)
    if quick:
        setting.update(QUICK["setting"])
        data["train"] = QUICK["train"]
    if train_size is not None:
        data["train"] = train_size
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


def point(epoch: int, summary: dict[str, Any], nonzeros: int, val: float | None) -> dict[str, Any]:
    """One point of a run's locality curve: the summary's headline numbers, layer-1 non-zeros, validation accuracy."""
    keys = ("ratio_median", "ratio_ge2_fraction", "ipr_median", "share_median", "null_median", "units")
    return {"epoch": epoch, **{k: summary.get(k) for k in keys}, "nonzeros_layer1": nonzeros, "val_accuracy": val}


def initial_point(config: config_lib.TrainConfig) -> dict[str, Any]:
    """Locality at initialisation (epoch 0): the trainer's first layer before any step, measured as it measures."""
    spec = nlgp.parse_spec(config.dataset)
    model = config_lib.model_from_config(config, 2, spec.image_shape)
    params = model.init(rng.init_key(config.seed), jnp.zeros((1, *spec.image_shape)), train=False)["params"]
    kernel = params[FIRST_LAYER]["kernel"]
    key = rng.child(jax.random.key(config.seed), "locality")
    summary = analysis.first_layer_locality(kernel, spec.image_shape, spec.geometry, key)
    return point(0, summary, int(np.count_nonzero(kernel)), None)


def seed_record(cell: Cell, config, run_dir: Path, results: dict[str, Any]) -> dict[str, Any]:
    """What the tables and figures read of one run: final numbers, the locality curve and the first layer."""
    metrics = files.read_jsonl(run_dir / "metrics.jsonl")
    curve = [initial_point(config)] + [
        point(r["epoch"], r["locality"], r["nonzero_per_layer"][FIRST_LAYER], r["val_accuracy"])
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
        chosen[arm.key] = best_by_validation(sorted(lambdas), scores.get)  # the smaller λ among equals
    return chosen


def arms_named(keys: Sequence[str] | None) -> list[Arm]:
    """The arms of `keys` (all when None or empty), in `ARMS` order; a ValueError names the valid keys."""
    known = [a.key for a in ARMS]
    unknown = sorted(set(keys or known) - set(known))
    if unknown:
        raise ValueError(f"unknown --arms {unknown}; valid: {', '.join(known)}")
    return [a for a in ARMS if a.key in (keys or known)]


def grid_cells(
    arms: Sequence[Arm], chosen: dict[str, float], seeds: Sequence[int], gains: Sequence[float]
) -> list[Cell]:
    """Every cell: each arm on both datasets at `MAIN_GAIN`, then SGD and `SWEEP_ARM` at the other `gains`, each
    per seed, the L1 arms at their `chosen` λ."""
    cells = [Cell(kind, MAIN_GAIN, arm, chosen.get(arm.key, 0.0), s) for kind in KINDS for arm in arms for s in seeds]
    sweep_arms = [a for a in arms if a.key in ("sgd", SWEEP_ARM)]
    return cells + [
        Cell(kind, gain, arm, chosen.get(arm.key, 0.0), s)
        for gain in sorted(set(gains) | {MAIN_GAIN})
        if gain != MAIN_GAIN
        for kind in KINDS
        for arm in sweep_arms
        for s in seeds
    ]


def run_grid(
    base: config_lib.TrainConfig,
    data: dict[str, Any],
    arms: Sequence[Arm],
    lambdas: Sequence[float],
    seeds: Sequence[int],
    gains: Sequence[float],
    root: Path,
    results_dir: Path,
) -> list[list[dict[str, Any]]]:
    """λ per L1 arm (`select_lambdas`), then every cell of `grid_cells`, trained or read back, each record written
    to `results_dir`; returns the records grouped by cell (one per seed)."""
    chosen = select_lambdas(base, data, arms, lambdas, root, results_dir)
    groups: dict[Cell, list[dict[str, Any]]] = {}
    for cell in grid_cells(arms, chosen, seeds, gains):
        key = dataclasses.replace(cell, seed=0)
        groups.setdefault(key, []).append(run_cell(base, data, cell, root, results_dir))
    return list(groups.values())


def geometry(data: dict[str, Any]) -> Geometry:
    """Where the benchmark's inputs sit (the NLGP spec's ring)."""
    return nlgp.parse_spec(KINDS[0] + ":" + ",".join(f"{k}={v}" for k, v in data.items())).geometry
