"""Tables and figures of experiments.nlgp, from its per-run records (the JSON it writes per seed; their fields
are listed in `reporting.nlgp_tables`). A group is the records of one cell (one dataset, gain and method), one
per seed. The tables are rendered from the JSONs by `reporting.rendered_docs`, as docs/results.md renders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blasso_jax.data.geometry import Geometry
from blasso_jax.reporting import nlgp_figures, rendered_docs, style
from blasso_jax.reporting.nlgp_tables import KIND_LABELS
from blasso_jax.training import sweep

COLORS = {"sgd": "tab:gray", "l1": "tab:blue", "beta1": "tab:green", "beta50": "tab:red", "imp": "tab:purple"}
Group = list[dict[str, Any]]

TABLE_TEMPLATE = """Main grid, g={gain:g} (mean ± std over seeds, final epoch):

<!-- evidence:{folder}/main_grid gain={gain:g} -->
<!-- /evidence -->

Gain sweep:

<!-- evidence:{folder}/gain_sweep -->
<!-- /evidence -->

Against SGD on the same data, gain and seed (mean ± std of the per-seed differences):

<!-- evidence:{folder}/differences -->
<!-- /evidence -->

λ selection (NLGP, seed 0, validation accuracy at the final epoch):

<!-- evidence:{folder}/lambda_selection gain={gain:g} -->
<!-- /evidence -->
"""


def write_tables(results_dir: Path, main_gain: float) -> None:
    """`<results_dir>/table.md` from the JSONs in `results_dir`, written and printed: the main grid at `main_gain`,
    the gain sweep, each method against SGD and the λ selection."""
    template = TABLE_TEMPLATE.format(folder=results_dir.name, gain=main_gain)
    sweep.write_table(results_dir / "table.md", rendered_docs.render(template, results_dir.parent).rstrip("\n"))


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
    style.save_figure(fields, out / "nlgp_receptive_fields")
    curves = {_label(g[0]): [r["curve"] for r in g] for g in main}
    styles = {_label(g[0]): _style(g[0]) for g in groups}
    style.save_figure(nlgp_figures.plot_locality_curves(curves, styles), out / "nlgp_locality_curves")
    points: dict[str, dict[float, list[dict]]] = {}
    for group in (g for g in groups if g[0]["arm"] in sweep_arms):
        points.setdefault(_label(group[0]), {})[group[0]["gain"]] = [r["locality"] for r in group]
    style.save_figure(nlgp_figures.plot_gain_sweep(points, styles), out / "nlgp_gain_sweep")
