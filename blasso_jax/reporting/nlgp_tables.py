"""Tables of the NLGP benchmark from its per-run records (`experiments.nlgp` writes one JSON per run): the grid at
the main gain, the gain sweep, each method's locality against SGD's of the same seed, and the λ selection.

A record holds `dataset` ('nlgp' or 'nlgp_gaussian'), `gain`, `arm` (method key), `method` (label), `l1_first`
(None for untuned methods), `seed`, `command`, `test_accuracy`, `val_accuracy`, `locality` (the final
`blasso_jax.analysis.locality` summary), `nonzeros_layer1`, `weights_layer1` and `first_layer_kernel`. A cell is one
dataset, gain, method and λ; its group holds one record per seed. The ± rule is `evidence_tables`'.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from blasso_jax.analysis.locality import unit_locality
from blasso_jax.common import rng, text
from blasso_jax.data import nlgp
from blasso_jax.reporting.evidence_tables import Folders, paired_difference

KIND_LABELS = {"nlgp": "NLGP", "nlgp_gaussian": "Gaussian control"}
ARM_ORDER = ("sgd", "l1", "beta1", "beta50", "imp")  # table order; an arm not listed comes after, by key
SENSITIVITY_WINDOW = 5  # the main window is the dataset's, 2·round(ξ₀)+1 = 3 sites; the learned fields are wider
Record = dict[str, Any]
Group = list[Record]

TABLE_HEADERS = (
    "data",
    "g",
    "method",
    "λ (first layer)",
    "seeds",
    "test %",
    "ratio (median)",
    "fraction ratio ≥ 2",
    "IPR (median)",
    "layer-1 non-zeros",
    f"ratio, window {SENSITIVITY_WINDOW} (median)",
)


def _stat(values: list[float | None], scale: float = 1.0, digits: int = 2) -> str:
    return text.mean_std([scale * v for v in values if v is not None], digits, count=False)


def ratio_at_window(record: Record, window: int) -> float | None:
    """A run's final median ratio with another window, from its saved first layer: how much the window matters."""
    spec = nlgp.parse_spec(record["command"].split("--dataset=")[1].split()[0])
    geometry = dataclasses.replace(spec.geometry, window=window)
    key = rng.child(jax.random.key(record["seed"]), "locality")
    return unit_locality(np.array(record["first_layer_kernel"], np.float32), geometry, key)["summary"]["ratio_median"]


def table_row(records: Group) -> list[Any]:
    """Mean ± std over the seeds of one cell (final epoch)."""
    first = records[0]
    final = [r["locality"] for r in records]
    return [
        KIND_LABELS[first["dataset"]],
        f"{first['gain']:g}",
        first["method"],
        "-" if first["l1_first"] is None else f"{first['l1_first']:g}",
        len(records),
        _stat([r["test_accuracy"] for r in records], 100, 1),
        _stat([s["ratio_median"] for s in final]),
        _stat([s["ratio_ge2_fraction"] for s in final]),
        _stat([s["ipr_median"] for s in final], digits=3),
        f"{_stat([r['nonzeros_layer1'] for r in records], digits=0)} / {first['weights_layer1']}",
        _stat([ratio_at_window(r, SENSITIVITY_WINDOW) for r in records]),
    ]


def _order(record: Record) -> tuple:
    arm = record["arm"]
    rank = ARM_ORDER.index(arm) if arm in ARM_ORDER else len(ARM_ORDER)
    return (list(KIND_LABELS).index(record["dataset"]), rank, arm, record["gain"], record["l1_first"] or 0.0)


def chosen_groups(folders: Folders) -> list[Group]:
    """The cells trained over every seed: each method at the λ chosen for it (the λ its Gaussian-control runs
    use; the λ-selection runs on NLGP seed 0 at other λ are left out), ordered by dataset, method, gain."""
    ((_, records),) = folders
    chosen = {(r["arm"], r["l1_first"]) for r in records if r["dataset"] == "nlgp_gaussian"}
    groups: dict[tuple, Group] = {}
    for record in sorted(records, key=lambda r: (_order(r), r["seed"])):
        if (record["arm"], record["l1_first"]) in chosen:
            groups.setdefault(_order(record), []).append(record)
    return list(groups.values())


def main_grid(folders: Folders, gain: float) -> str:
    """Every method on both datasets at the main `gain`."""
    rows = [table_row(g) for g in chosen_groups(folders) if g[0]["gain"] == gain]
    return text.markdown_table(TABLE_HEADERS, rows)


def gain_sweep(folders: Folders) -> str:
    """The methods that ran at more than one gain, at each gain."""
    groups = chosen_groups(folders)
    gains: dict[str, set[float]] = {}
    for group in groups:
        gains.setdefault(group[0]["arm"], set()).add(group[0]["gain"])
    swept = {arm for arm, seen in gains.items() if len(seen) > 1}
    return text.markdown_table(TABLE_HEADERS, [table_row(g) for g in groups if g[0]["arm"] in swept])


def differences(folders: Folders, reference: str = "sgd") -> str:
    """Each method against the `reference` arm on the same data, gain and seed (paired per seed): how much of its
    locality the L1 pull and the threshold add, on NLGP and on the Gaussian control side by side."""
    groups = chosen_groups(folders)
    of_cell = {(g[0]["dataset"], g[0]["gain"]): g for g in groups if g[0]["arm"] == reference}
    reads = (
        lambda r: r["locality"]["ratio_median"],
        lambda r: r["locality"]["ratio_ge2_fraction"],
        lambda r: r["locality"]["ipr_median"],
        lambda r: 100 * r["test_accuracy"],
    )
    rows = []
    for group in sorted(groups, key=lambda g: (_order(g[0])[1:4], _order(g[0])[0])):
        first, ref = group[0], of_cell.get((group[0]["dataset"], group[0]["gain"]))
        if first["arm"] != reference and ref:
            cells = [paired_difference(group, ref, read, 3 if i == 2 else 2) for i, read in enumerate(reads)]
            seeds = sorted({r["seed"] for r in group} & {r["seed"] for r in ref})
            rows.append([KIND_LABELS[first["dataset"]], f"{first['gain']:g}", first["method"], len(seeds), *cells])
    headers = ("data", "g", "method", "seeds", "ratio − SGD's", "fraction ≥ 2 − SGD's", "IPR − SGD's")
    return text.markdown_table((*headers, "test % − SGD's"), rows)


def lambda_selection(folders: Folders, gain: float) -> str:
    """Validation accuracy (final epoch) of every λ tried on NLGP seed 0 at `gain`, and the λ chosen."""
    ((_, records),) = folders
    chosen = {(g[0]["arm"], g[0]["l1_first"]) for g in chosen_groups(folders)}
    tried = [
        r
        for r in records
        if r["dataset"] == "nlgp" and r["gain"] == gain and r["seed"] == 0 and r["l1_first"] is not None
    ]
    rows = [
        [
            r["method"],
            f"{r['l1_first']:g}",
            text.percent(r["val_accuracy"]),
            "yes" * ((r["arm"], r["l1_first"]) in chosen),
        ]
        for r in sorted(tried, key=_order)
    ]
    return text.markdown_table(("method", "λ", "val %", "chosen"), rows)
