"""Tables and figures of experiments.nlgp, from its per-run records (the JSON it writes per seed).

A record holds `dataset` ('nlgp' or 'nlgp_gaussian'), `gain`, `arm` (method key), `method` (label),
`l1_first`, `seed`, `command`, `test_accuracy`, `locality` (the final `blasso_jax.locality` summary),
`nonzeros_layer1`, `weights_layer1`, `curve` (locality from epoch 0) and `first_layer_kernel`. A group
is the records of one cell (one dataset, gain and method), one per seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from blasso_jax import figures as figures_lib
from blasso_jax import files, nlgp, nlgp_figures, report, rng
from blasso_jax.locality import Geometry, unit_locality

KIND_LABELS = {"nlgp": "NLGP", "nlgp_gaussian": "Gaussian control"}
COLORS = {"sgd": "tab:gray", "l1": "tab:blue", "beta1": "tab:green", "beta50": "tab:red", "imp": "tab:purple"}
SENSITIVITY_WINDOW = 5  # the main window is the dataset's, 2·round(ξ₀)+1 = 3 sites; the learned fields are wider
Group = list[dict[str, Any]]


def _mean_std(values: list[float | None], scale: float = 1.0, digits: int = 2) -> str:
    return report.mean_std([scale * v for v in values if v is not None], digits)


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


def ratio_at_window(record: dict[str, Any], window: int) -> float | None:
    """A run's final median ratio with another window, from its saved first layer: how much the window matters."""
    spec = nlgp.parse_spec(record["command"].split("--dataset=")[1].split()[0])
    geometry = dataclasses.replace(spec.geometry, window=window)
    key = rng.child(jax.random.key(record["seed"]), "locality")
    return unit_locality(np.array(record["first_layer_kernel"], np.float32), geometry, key)["summary"]["ratio_median"]


def table_row(records: list[dict[str, Any]]) -> list[Any]:
    """Mean ± std over the seeds of one cell (final epoch)."""
    first = records[0]
    final = [r["locality"] for r in records]
    return [
        KIND_LABELS[first["dataset"]],
        f"{first['gain']:g}",
        first["method"],
        "-" if first["l1_first"] is None else f"{first['l1_first']:g}",
        len(records),
        _mean_std([r["test_accuracy"] for r in records], 100, 1),
        _mean_std([s["ratio_median"] for s in final]),
        _mean_std([s["ratio_ge2_fraction"] for s in final]),
        _mean_std([s["ipr_median"] for s in final], digits=3),
        f"{_mean_std([r['nonzeros_layer1'] for r in records], digits=0)} / {first['weights_layer1']}",
        _mean_std([ratio_at_window(r, SENSITIVITY_WINDOW) for r in records]),
    ]


def write_tables(
    groups: Sequence[Group], selection: list, main_gain: float, sweep_arms: set[str], order: list[str], out: Path
) -> str:
    """`<out>/table.md`: the main grid at `main_gain`, the gain sweep of `sweep_arms` and the λ selection."""
    main = [g for g in groups if g[0]["gain"] == main_gain]
    sweep = sorted(
        (g for g in groups if g[0]["arm"] in sweep_arms),
        key=lambda g: (g[0]["dataset"], order.index(g[0]["arm"]), g[0]["gain"]),
    )
    text = "\n\n".join(
        [
            f"Main grid, g={main_gain:g} (mean ± std over seeds, final epoch):\n\n"
            + report.markdown_table(TABLE_HEADERS, [table_row(g) for g in main]),
            "Gain sweep:\n\n" + report.markdown_table(TABLE_HEADERS, [table_row(g) for g in sweep]),
            "λ selection (NLGP, seed 0, validation accuracy at the final epoch):\n\n"
            + report.markdown_table(("method", "λ", "val %", "chosen"), selection),
        ]
    )
    files.atomic_write_bytes(out / "table.md", (text + "\n").encode())
    return text


def _label(record: dict[str, Any]) -> str:
    return f"{KIND_LABELS[record['dataset']]}, {record['method']}"


def _style(record: dict[str, Any]) -> dict[str, Any]:
    return {"color": COLORS[record["arm"]], "linestyle": "-" if record["dataset"] == "nlgp" else "--"}


def draw_figures(
    groups: Sequence[Group], main_gain: float, sweep_arms: set[str], geometry: Geometry, out: Path
) -> None:
    """`nlgp_receptive_fields` (seed 0 of every method at `main_gain`, NLGP above the control),
    `nlgp_locality_curves` (the main grid over training) and `nlgp_gain_sweep` (`sweep_arms` against g)."""
    main = [g for g in groups if g[0]["gain"] == main_gain]
    panels = {}
    for group in main:
        record = group[0]
        ratio, ipr = (record["locality"][k] or float("nan") for k in ("ratio_median", "ipr_median"))
        panels[f"{_label(record)}, seed 0\nratio {ratio:.2f}, IPR {ipr:.2f}"] = np.array(record["first_layer_kernel"])
    columns = len({g[0]["arm"] for g in main})
    fields = nlgp_figures.plot_receptive_fields(panels, geometry, columns=columns)
    figures_lib.save_figure(fields, out / "nlgp_receptive_fields")
    curves = {_label(g[0]): [r["curve"] for r in g] for g in main}
    styles = {_label(g[0]): _style(g[0]) for g in groups}
    figures_lib.save_figure(nlgp_figures.plot_locality_curves(curves, styles), out / "nlgp_locality_curves")
    points: dict[str, dict[float, list[dict]]] = {}
    for group in (g for g in groups if g[0]["arm"] in sweep_arms):
        points.setdefault(_label(group[0]), {})[group[0]["gain"]] = [r["locality"] for r in group]
    figures_lib.save_figure(nlgp_figures.plot_gain_sweep(points, styles), out / "nlgp_gain_sweep")
