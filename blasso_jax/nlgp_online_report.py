"""The table and figures of the Ingrosso & Goldt setting (`nlgp_online_runs`), from its per-run records.

A record holds `dataset`, `arm`, `method`, `seed`, `l1`, `t`, `unit_ipr` (per-unit IPR at each t),
`ipr_top_half_mean` (at each t), `locality` (the final `locality.summarize`, with `ipr_random` = 3/(D+2)),
`bias`, `first_layer_kernel` [D, K], `nonzeros_layer1`, `validation`, `test`, `lambda_selection` and
`options`. Figures are matplotlib Figures built without pyplot, saved by `figures.save_figure`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blasso_jax import files, report
from blasso_jax.figures import new_figure, save_figure
from blasso_jax.locality import IPR_FACTOR, Geometry
from blasso_jax.nlgp_figures import plot_receptive_fields

KIND_LABELS = {"nlgp": "NLGP", "nlgp_gaussian": "Gaussian control"}
ARM_ORDER = ("sgd", "l1", "beta1", "beta50")
GROUP_COLORS = ("tab:orange", "tab:blue")  # units starting at bias +b, and at −b
HEADERS = (
    "data",
    "method",
    "λ chosen (per seed)",
    "seeds",
    "val %",
    "test %",
    "IPR top-half mean",
    "÷ 3/(D+2)",
    "units at IPR ≥ 4×",
    "IPR median",
    "ratio median",
    "units at ratio ≥ 2",
    "layer-1 non-zeros",
    "first t at top half ≥ 4×",
)
SELECTION_HEADERS = ("data", "method", "seed", "λ", "val %", "val MSE", "chosen")


def groups(records: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Records grouped by (dataset, arm), datasets as `KIND_LABELS`, arms as `ARM_ORDER`, seeds ascending."""
    keyed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        keyed.setdefault((r["dataset"], r["arm"]), []).append(r)
    order = sorted(keyed, key=lambda k: (list(KIND_LABELS).index(k[0]), ARM_ORDER.index(k[1])))
    return [sorted(keyed[k], key=lambda r: r["seed"]) for k in order]


def onset(record: dict[str, Any]) -> float | None:
    """The first recorded t at which the top half's mean IPR reaches `IPR_FACTOR` × the random unit's."""
    level = IPR_FACTOR * record["locality"]["ipr_random"]
    return next((t for t, v in zip(record["t"], record["ipr_top_half_mean"]) if v is not None and v >= level), None)


def _ms(values: Sequence[float | None], digits: int = 2, scale: float = 1.0) -> str:
    return report.mean_std([scale * v for v in values if v is not None], digits)


def table_row(group: list[dict[str, Any]]) -> list[Any]:
    """Mean ± std over the seeds of one (dataset, arm) at the last t."""
    first, final = group[0], [r["locality"] for r in group]
    onsets = [onset(r) for r in group]
    reached = [t for t in onsets if t is not None]
    return [
        KIND_LABELS[first["dataset"]],
        first["method"],
        "-" if first["l1"] is None else ", ".join(f"{r['l1']:g}" for r in group),
        len(group),
        _ms([r["validation"]["accuracy"] for r in group], 1, 100),
        _ms([r["test"]["accuracy"] for r in group], 1, 100),
        _ms([s["ipr_top_half_mean"] for s in final], 4),
        _ms([s["ipr_top_half_mean"] / s["ipr_random"] for s in final], 2),
        _ms([s["ipr_ge4x_fraction"] for s in final], 2),
        _ms([s["ipr_median"] for s in final], 4),
        _ms([s["ratio_median"] for s in final], 2),
        _ms([s["ratio_ge2_fraction"] for s in final], 2),
        _ms([r["nonzeros_layer1"] for r in group], 0),
        f"{statistics.mean(reached):.3g} ({len(reached)} of {len(group)} seeds)" if reached else "never",
    ]


def selection_rows(records: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """Per dataset, L1 arm and λ of the grid: validation accuracy and MSE on the choosing seed, and the choice."""
    rows = []
    for group in groups(records):
        chosen_by = group[0]["lambda_selection"]
        if chosen_by is None:
            continue
        for entry in chosen_by["grid"]:
            row = [
                KIND_LABELS[group[0]["dataset"]],
                group[0]["method"],
                chosen_by["chosen_on_seed"],
                f"{entry['l1']:g}",
            ]
            mark = "yes" if entry["l1"] == group[0]["l1"] else ""
            rows.append([*row, f"{100 * entry['val_accuracy']:.2f}", f"{entry['val_mse']:.4f}", mark])
    return rows


def write_table(records: Sequence[dict[str, Any]], out: Path) -> str:
    """`<out>/table.md`: the final numbers per dataset and method, then the λ selection."""
    first = records[0]
    options = first["options"]
    head = (
        f"Ingrosso & Goldt's setting: {options['side']}^{options['ndim']} = {options['sites']} inputs, ξ = "
        f"{options['xi_sites'][0]:g} and {options['xi_sites'][1]:g} sites, gain {options['gain']:g}, K = "
        f"{options['units']}, bias {options['bias']}, lr {options['kernel_lr']:g}, batch {options['batch']}, "
        f"t = steps/D up to {options['time']:g}. Random-unit IPR 3/(D+2) = {first['locality']['ipr_random']:.5f}. "
        "Mean ± std over seeds at the last t."
    )
    criteria = {r["lambda_selection"]["criterion"] for r in records if r["lambda_selection"]}
    selection = f"λ selection, per dataset on its first seed, by {', '.join(sorted(criteria)) or '-'}:"
    text = "\n\n".join(
        [
            head,
            report.markdown_table(HEADERS, [table_row(g) for g in groups(records)]),
            selection,
            report.markdown_table(SELECTION_HEADERS, selection_rows(records)),
        ]
    )
    files.atomic_write_bytes(out / "table.md", (text + "\n").encode())
    return text


def plot_unit_ipr_curves(panels: dict[tuple[str, str], list[dict[str, Any]]], reference: float) -> Any:
    """Per-unit IPR against t = steps/D (log axis): one panel per (row, column) title pair, one thin line per unit
    and seed coloured by the sign of the unit's starting bias (orange +, blue −: their figure's two groups), each
    group's mean over units and seeds thick, the random-unit IPR dotted and `IPR_FACTOR` × it dashed.

    Args:
      panels: (row title, column title) -> records (each with `t`, `unit_ipr` [t][K], `options`).
      reference: the random-unit IPR 3/(D+2).
    """
    rows = list(dict.fromkeys(r for r, _ in panels))
    columns = list(dict.fromkeys(c for _, c in panels))
    fig = new_figure(figsize=(3.6 * len(columns), 2.6 * len(rows)))
    axes = fig.subplots(len(rows), len(columns), squeeze=False, sharex=True, sharey="row")
    for (row, column), records in panels.items():
        ax = axes[rows.index(row), columns.index(column)]
        for record in records:
            t, ipr = np.asarray(record["t"]), np.array(record["unit_ipr"], np.float64)
            half = record["options"]["units"] // 2
            for unit in range(ipr.shape[1]):
                ax.plot(t[1:], ipr[1:, unit], color=GROUP_COLORS[unit >= half], linewidth=0.5, alpha=0.35)
        for g, color in enumerate(GROUP_COLORS):
            stacked = [np.array(r["unit_ipr"], np.float64)[1:, g * half : (g + 1) * half] for r in records]
            ax.plot(t[1:], np.nanmean(np.concatenate(stacked, axis=1), axis=1), color=color, linewidth=2)
        ax.axhline(reference, color="black", linestyle=":", linewidth=1)
        ax.axhline(IPR_FACTOR * reference, color="gray", linestyle="--", linewidth=1)
        ax.set(xscale="log", title=f"{column}, {row}")
        ax.title.set_fontsize(9)
        ax.grid(True, alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("t = steps / D")
    for ax in axes[:, 0]:
        ax.set_ylabel("IPR per unit")
    return fig


def draw_figures(records: Sequence[dict[str, Any]], geometry: Geometry, out: Path, prefix: str) -> list[Path]:
    """`<prefix>_ipr` (per-unit IPR curves, a row per method, a column per dataset) and `<prefix>_fields` (the
    final first layers of the lowest seed, each unit an L×L map as their filter panels)."""
    gs = groups(records)
    reference = records[0]["locality"]["ipr_random"]
    panels = {(g[0]["method"], KIND_LABELS[g[0]["dataset"]]): g for g in gs}
    paths = save_figure(plot_unit_ipr_curves(panels, reference), out / f"{prefix}_ipr")
    fields = {}
    for g in gs:
        r = g[0]
        top = r["locality"]["ipr_top_half_mean"] / reference
        title = f"{KIND_LABELS[r['dataset']]}, {r['method']}, seed {r['seed']}: top-half IPR {top:.1f}× random"
        fields[title] = np.array(r["first_layer_kernel"], np.float64)
    columns = len({r["arm"] for r in records})
    figure = plot_receptive_fields(fields, geometry, units=records[0]["options"]["units"], columns=columns)
    return paths + save_figure(figure, out / f"{prefix}_fields")
