"""Ingrosso & Goldt's figure on their own setting, and the β-LASSO question asked of it: its training streams.

`python -m experiments.nlgp --setting=ingrosso_goldt` calls `reporting.nlgp_online_runs.run_plan`, which calls
`train_plan`. For each dataset (NLGP and its Gaussian control) and seed, one input stream trains every arm at once
(`training.online.advance`): SGD, and SGD + L1 (β=0), β-LASSO β=1 and β=50 at every λ of the grid, from the same
initialisation on the same inputs. λ of each L1 arm is chosen per dataset and seed by accuracy on a held-out
fresh sample (`validation` inputs drawn from their own key; the smaller λ among equals), as the paper chooses λ;
a second fresh sample gives the test numbers. Each chosen run is one JSON in `results_dir`
(`<dataset>-<arm>-seed<s>.json`), written as soon as its stream finishes; a stream whose JSONs exist
with the same options is read back, not trained again. `reporting.nlgp_online_report` draws the table and figures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from blasso_jax.analysis.locality import unit_locality
from blasso_jax.common import files, rng
from blasso_jax.data import nlgp_online as online
from blasso_jax.training import online as loop
from blasso_jax.training import summary
from blasso_jax.training.selection import best_by_validation

# key -> (label, β, whether λ is chosen from the grid); SGD is λ = β = 0 of the same transform.
ARMS = {
    "sgd": ("SGD", 0.0, False),
    "l1": ("SGD + L1 (β=0)", 0.0, True),
    "beta1": ("β-LASSO β=1", 1.0, True),
    "beta50": ("β-LASSO β=50", 50.0, True),
}
COMMAND = "python -m experiments.nlgp --setting=ingrosso_goldt"
SELECTION = (
    "validation accuracy (sign of ϕ against y) on held-out fresh inputs, final weights; the smaller λ among equals"
)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one invocation trains: the setting, datasets, seeds, arms, λ grid and held-out sample sizes."""

    setting: online.OnlineSetting = online.OnlineSetting()
    kinds: tuple[str, ...] = online.KINDS
    seeds: tuple[int, ...] = (0, 1, 2)
    arms: tuple[str, ...] = tuple(ARMS)
    lambdas: tuple[float, ...] = (1e-6, 1e-5, 1e-4)
    validation: int = 20_000  # their NUM_TESTSAMPLES
    test: int = 20_000
    quick: bool = False

    def __post_init__(self):
        unknown = sorted(set(self.arms) - set(ARMS))
        if unknown or not self.arms:
            raise ValueError(f"unknown arms {unknown or '(none)'}; valid: {', '.join(ARMS)}")
        if not self.kinds or set(self.kinds) - set(online.KINDS):
            raise ValueError(f"unknown datasets {list(self.kinds)}; valid: {', '.join(online.KINDS)}")
        if not self.lambdas or min(self.lambdas) <= 0:
            raise ValueError(f"lambdas must be one or more values > 0, got {self.lambdas}")
        if not self.seeds or min(self.validation, self.test) < 2:
            raise ValueError(f"need a seed and >= 2 held-out inputs, got seeds {self.seeds}, {self.validation}")

    def runs(self, chosen: dict[str, float] | None = None) -> list[tuple[str, float]]:
        """(arm, λ) of every run of one stream: SGD once (λ = 0), each L1 arm at every λ of the grid, or only at
        its `chosen` λ."""
        grid = {arm: (chosen[arm],) if chosen else self.lambdas for arm in self.arms if ARMS[arm][2]}
        return [(arm, lam) for arm in self.arms for lam in grid.get(arm, (0.0,))]


QUICK = Plan(
    setting=online.OnlineSetting(time=20.0, points=8),
    seeds=(0,),
    lambdas=(1e-5,),
    validation=2000,
    test=2000,
    quick=True,
)


def _unit_iprs(kernels: np.ndarray, geometry, seed: int) -> list[dict[str, Any]]:
    """`locality.unit_locality` of each run's kernel [runs, D, K] (its per-unit IPR and ratio, and summary)."""
    key = rng.child(jax.random.key(seed), "locality")
    return [unit_locality(kernel, geometry, key) for kernel in kernels]


def train_stream(plan: Plan, kind: str, seed: int, runs: list[tuple[str, float]]) -> dict[str, Any]:
    """Every (arm, λ) of `runs` on one (dataset, seed) stream: per-unit IPR at each recording time, the final
    parameters, validation and test MSE and accuracy per run, and the stream's wall seconds."""
    s = plan.setting
    load, start = os.getloadavg(), time.perf_counter()
    chol = jnp.asarray(online.factors(s, kind))
    one = loop.init_params(s, rng.init_key(seed))
    params = jax.tree.map(lambda a: jnp.stack([a] * len(runs)), one)
    hyper = (jnp.array([lam for _, lam in runs]), jnp.array([ARMS[arm][1] for arm, _ in runs]))
    opt_state = jax.vmap(lambda p, lam, beta: loop.optimizer(s, lam, beta).init(p))(params, *hyper)
    state, done = (params, opt_state), 0
    data_key = rng.child(jax.random.key(seed), "online_data")
    curve = [_unit_iprs(np.asarray(params["kernel"]), s.geometry, seed)]
    for step in s.record_steps[1:]:
        chunks = step // s.chunk
        state = loop.advance(state, hyper, chol, data_key, done, chunks - done, kind == "nlgp", setting=s)
        done = chunks
        curve.append(_unit_iprs(np.asarray(state[0]["kernel"]), s.geometry, seed))
    held = {}
    for name, count in (("validation", plan.validation), ("test", plan.test)):
        key = rng.child(jax.random.key(seed), f"online_{name}")
        x, y = online.draw(chol, key, 0, count, 1, s.gain, kind == "nlgp")
        mse, accuracy = loop.evaluate(state[0], x[:, 0], y[:, 0])
        held[name] = {"mse": np.asarray(mse).tolist(), "accuracy": np.asarray(accuracy).tolist(), "count": count}
    return {
        "runs": runs,
        "curve": curve,
        "params": jax.tree.map(np.asarray, state[0]),
        "held_out": held,
        "wall_seconds": time.perf_counter() - start,
        "host": summary.host(load),
    }


def choose(plan: Plan, result: dict[str, Any]) -> dict[str, int]:
    """arm -> index of its run in the stream: the best validation accuracy over its λ (`best_by_validation` over
    ascending λ: the smaller λ among equals; `_chosen_l1` applies the same rule to a stored `selection`)."""
    accuracy = result["held_out"]["validation"]["accuracy"]
    chosen = {}
    for arm in plan.arms:
        indices = sorted((i for i, (a, _) in enumerate(result["runs"]) if a == arm), key=lambda i: result["runs"][i][1])
        chosen[arm] = best_by_validation(indices, lambda i: accuracy[i])
    return chosen


def _rounded(values: Any, digits: int = 5) -> Any:
    """Nested lists of floats at `digits` significant digits (NaN as None), for compact JSON."""
    array = np.asarray(values, np.float64)
    return (
        [None if not np.isfinite(v) else float(f"{v:.{digits}g}") for v in array.ravel()]
        if array.ndim <= 1
        else [_rounded(row, digits) for row in array]
    )


def options(plan: Plan) -> dict[str, Any]:
    """The setting and its derived values, as stored with every record (a read-back compares them)."""
    s = plan.setting
    derived = {"sites": s.sites, "xi_sites": list(s.xi_sites), "kernel_lr": s.kernel_lr, "bias_lr": s.bias_lr}
    return {**dataclasses.asdict(s), "xis": list(s.xis), **derived, "total_steps": s.total_steps}


def selection(result: dict[str, Any], arm: str, seed: int) -> dict[str, Any]:
    """How an L1 arm's λ was chosen: the criterion, the seed whose held-out inputs chose it, and every λ's
    validation accuracy and MSE on them, with its final locality (what the λ not chosen would have given)."""
    validation, final = result["held_out"]["validation"], result["curve"][-1]
    keys = ("ipr_top_half_mean", "ipr_ge4x_fraction", "ratio_median")
    grid = [
        {
            "l1": lam,
            "val_accuracy": validation["accuracy"][i],
            "val_mse": validation["mse"][i],
            **{k: final[i]["summary"][k] for k in keys},
            "nonzeros_layer1": int(np.count_nonzero(result["params"]["kernel"][i])),
        }
        for i, (a, lam) in enumerate(result["runs"])
        if a == arm
    ]
    return {"criterion": SELECTION, "chosen_on_seed": seed, "grid": grid}


def record(plan: Plan, kind: str, seed: int, result: dict[str, Any], index: int, chosen_by: Any) -> dict[str, Any]:
    """The JSON of one run of a stream (`index`): its curve, final locality, first layer, held-out numbers, how its
    λ was chosen (`chosen_by`, a `selection`, None for SGD) and provenance."""
    s = plan.setting
    arm, lam = result["runs"][index]
    label, beta, tuned = ARMS[arm]
    final, params = result["curve"][-1][index], result["params"]
    held = {
        name: {k: v[index] if isinstance(v, list) else v for k, v in d.items()}
        for name, d in result["held_out"].items()
    }
    return {
        "setting": "ingrosso_goldt",
        "dataset": kind,
        "arm": arm,
        "method": label,
        "seed": seed,
        "l1": lam if tuned else None,
        "beta": beta if tuned else None,
        "lambda_selection": chosen_by,
        "options": options(plan),
        "t": [step / s.sites for step in s.record_steps],
        "unit_ipr": [_rounded(point[index]["ipr"], 4) for point in result["curve"]],
        "ipr_top_half_mean": [point[index]["summary"]["ipr_top_half_mean"] for point in result["curve"]],
        "ratio_median": [point[index]["summary"]["ratio_median"] for point in result["curve"]],
        "locality": {**final["summary"], "geometry": s.geometry.to_dict()},
        "unit_iprs": _rounded(final["ipr"], 4),
        "unit_ratios": _rounded(final["ratio"], 4),
        "bias": _rounded(params["bias"][index]),
        "first_layer_kernel": _rounded(params["kernel"][index]),
        "nonzeros_layer1": int(np.count_nonzero(params["kernel"][index])),
        "validation": held["validation"],
        "test": held["test"],
        "command": f"{COMMAND}{' --quick' if plan.quick else ''} --seeds={seed}",
        "wall_seconds": result["wall_seconds"],
        "wall_seconds_covers": f"the whole {kind} stream of seed {seed}: {len(result['runs'])} runs trained together",
        "host": result["host"],
        "device": jax.devices()[0].device_kind,
    }


def run_path(results_dir: Path, kind: str, arm: str, seed: int) -> Path:
    return Path(results_dir) / f"{kind}-{arm}-seed{seed}.json"


def stream_records(
    plan: Plan, kind: str, seed: int, results_dir: Path, chosen: dict[str, dict] | None = None
) -> list[dict[str, Any]]:
    """The records of one stream, one per arm. Without `chosen` every λ of the grid trains and each L1 arm keeps
    the λ its validation accuracy picks (`choose`); with `chosen` (arm -> that `selection`, from the first seed)
    each L1 arm trains at its chosen λ only. Read back when every arm's JSON exists with these options and λ,
    else trained now and written (each JSON atomically, as soon as the stream is done)."""
    paths = [run_path(results_dir, kind, arm, seed) for arm in plan.arms]
    if all(p.exists() for p in paths):
        found = [json.loads(p.read_text()) for p in paths]
        same = all(r["options"] == json.loads(json.dumps(options(plan))) for r in found)
        if same and all(chosen is None or _same_choice(r["lambda_selection"], chosen.get(r["arm"])) for r in found):
            for path, r in zip(paths, found):  # a choice recorded with fewer details takes the chooser's record
                if chosen and r["lambda_selection"] != chosen.get(r["arm"]):
                    files.atomic_write_json(path, {**r, "lambda_selection": chosen.get(r["arm"])})
            return [json.loads(p.read_text()) for p in paths]
    lambdas = {arm: _chosen_l1(c) for arm, c in chosen.items() if c} if chosen else None
    result = train_stream(plan, kind, seed, plan.runs(lambdas))
    picks = choose(plan, result)
    records = [
        record(plan, kind, seed, result, picks[arm], (chosen or {}).get(arm) or _own(result, arm, seed))
        for arm in plan.arms
    ]
    for path, rec in zip(paths, records):
        files.atomic_write_json(path, rec)
    return records


def _own(result: dict[str, Any], arm: str, seed: int) -> dict[str, Any] | None:
    return selection(result, arm, seed) if ARMS[arm][2] else None


def _same_choice(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two `selection`s chose the same λ on the same seed (or are both None: SGD)."""
    if a is None or b is None:
        return a is b
    return a["chosen_on_seed"] == b["chosen_on_seed"] and _chosen_l1(a) == _chosen_l1(b)


def _chosen_l1(chosen_by: dict[str, Any]) -> float:
    """The λ a `selection` picked: the best validation accuracy, the smaller λ among equals."""
    return best_by_validation(sorted(chosen_by["grid"], key=lambda g: g["l1"]), lambda g: g["val_accuracy"])["l1"]


def train_plan(plan: Plan, results_dir: Path) -> list[dict[str, Any]]:
    """The records of every stream of `plan`, trained or read back: per dataset the first seed chooses λ over the
    grid, the other seeds train at it."""
    records = []
    for kind in plan.kinds:
        first = stream_records(plan, kind, plan.seeds[0], results_dir)
        chosen = {r["arm"]: r["lambda_selection"] for r in first}
        records += first
        for seed in plan.seeds[1:]:
            records += stream_records(plan, kind, seed, results_dir, chosen)
    for r in records:
        print(f"{r['dataset']} {r['arm']} seed {r['seed']}: stream {r['wall_seconds']:.0f} s", flush=True)
    return records
