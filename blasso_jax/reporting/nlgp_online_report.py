"""The tables and figures of the Ingrosso & Goldt setting (`training.online_streams`), from its per-run records; the
tables are `rendered_docs` tables (`online_setting`, `online_grid`, `online_differences`, `online_lambda_selection`).

A record holds `dataset`, `arm`, `method`, `seed`, `l1`, `t`, `unit_ipr` (per-unit IPR at each t),
`ipr_top_half_mean` (at each t), `locality` (the final `locality.summarize`, with `ipr_random` = 3/(D+2)),
`bias`, `first_layer_kernel` [D, K], `nonzeros_layer1`, `validation`, `test`, `lambda_selection` and
`options`. Figures are matplotlib Figures built without pyplot, saved by `style.save_figure`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blasso_jax.analysis.locality import IPR_FACTOR
from blasso_jax.common.text import markdown_table, mean_std
from blasso_jax.reporting.evidence_tables import Folders, paired_difference
from blasso_jax.reporting.nlgp_tables import KIND_LABELS
from blasso_jax.reporting.style import new_figure, save_figure

ARM_ORDER = ("sgd", "l1", "beta1", "beta50")
Record = dict[str, Any]
GROUP_COLORS = ("tab:orange", "tab:blue")  # units starting at bias +b, and at −b
HEADERS = (
    "data",
    "method",
    "λ (per seed)",
    "seeds",
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
SELECTION_HEADERS = (
    "data",
    "method",
    "seed",
    "λ",
    "val %",
    "val MSE",
    "IPR top half ÷ 3/(D+2)",
    "ratio median",
    "layer-1 non-zeros",
    "chosen",
)
DIFFERENCE_HEADERS = (
    "data",
    "method",
    "seeds",
    "Δ top-half IPR ÷ 3/(D+2)",
    "Δ units at IPR ≥ 4×",
    "Δ ratio",
    "Δ test %",
)


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
    return mean_std([scale * v for v in values if v is not None], digits, count=False)


def _records(folders: Folders) -> list[Record]:
    return [r for _, records in folders for r in records]


def _top(record: Record) -> float:
    """The final mean IPR of the more concentrated half of the units, in units of a dense random unit's."""
    return record["locality"]["ipr_top_half_mean"] / record["locality"]["ipr_random"]


def table_row(group: list[Record]) -> list[Any]:
    """Mean ± std over the seeds of one (dataset, arm) at the last t."""
    first, final = group[0], [r["locality"] for r in group]
    reached = [t for t in map(onset, group) if t is not None]
    return [
        KIND_LABELS[first["dataset"]],
        first["method"],
        "-" if first["l1"] is None else ", ".join(f"{r['l1']:g}" for r in group),
        len(group),
        _ms([r["test"]["accuracy"] for r in group], 1, 100),
        _ms([s["ipr_top_half_mean"] for s in final], 4),
        _ms([_top(r) for r in group]),
        _ms([s["ipr_ge4x_fraction"] for s in final]),
        _ms([s["ipr_median"] for s in final], 4),
        _ms([s["ratio_median"] for s in final]),
        _ms([s["ratio_ge2_fraction"] for s in final]),
        _ms([r["nonzeros_layer1"] for r in group], 0),
        f"{statistics.mean(reached):.0f} ({len(reached)} of {len(group)} seeds)" if reached else "never",
    ]


def online_setting(folders: Folders) -> str:
    """One paragraph: the setting the records share, and the random-unit IPR the table divides by."""
    first = _records(folders)[0]
    o = first["options"]
    return (
        f"{o['side']}^{o['ndim']} = {o['sites']} inputs ({'periodic' if o['periodic'] else 'open'} boundaries), "
        f"ξ = {o['xi_sites'][0]:g} and {o['xi_sites'][1]:g} sites, gain {o['gain']:g}, K = {o['units']}, bias "
        f"{o['bias']}, learning rate {o['kernel_lr']:g}, batch {o['batch']}, t = steps/D up to {o['time']:g}. "
        f"Random-unit IPR 3/(D+2) = {first['locality']['ipr_random']:.5f}."
    )


def online_grid(folders: Folders) -> str:
    """Every method on both datasets at the last t, mean ± std over seeds."""
    return markdown_table(HEADERS, [table_row(g) for g in groups(_records(folders))])


def online_differences(folders: Folders) -> str:
    """Each L1 arm against SGD on the same dataset and seed: mean ± std of the per-seed differences."""
    gs = groups(_records(folders))
    sgd = {g[0]["dataset"]: g for g in gs if g[0]["arm"] == "sgd"}
    rows = []
    for g in (g for g in gs if g[0]["arm"] != "sgd" and g[0]["dataset"] in sgd):
        ref = sgd[g[0]["dataset"]]
        reads = (_top, lambda r: r["locality"]["ipr_ge4x_fraction"], lambda r: r["locality"]["ratio_median"])
        cells = [paired_difference(g, ref, read) for read in reads]
        cells.append(paired_difference(g, ref, lambda r: 100 * r["test"]["accuracy"], 1))
        rows.append([KIND_LABELS[g[0]["dataset"]], g[0]["method"], len(g), *cells])
    return markdown_table(DIFFERENCE_HEADERS, rows)


def online_lambda_selection(folders: Folders) -> str:
    """Per dataset and L1 arm, every λ of the grid on the choosing seed: validation numbers, final locality, choice."""
    rows = []
    for group in groups(_records(folders)):
        chosen_by, first = group[0]["lambda_selection"], group[0]
        for entry in chosen_by["grid"] if chosen_by else ():
            row = [KIND_LABELS[first["dataset"]], first["method"], chosen_by["chosen_on_seed"], f"{entry['l1']:g}"]
            row += [f"{100 * entry['val_accuracy']:.2f}", f"{entry['val_mse']:.4f}"]
            row += [f"{entry['ipr_top_half_mean'] / first['locality']['ipr_random']:.2f}"]
            mark = "yes" if entry["l1"] == first["l1"] else ""
            row += [f"{entry['ratio_median']:.2f}", entry["nonzeros_layer1"], mark]
            rows.append(row)
    return markdown_table(SELECTION_HEADERS, rows)


def plot_unit_ipr_curves(panels: dict[tuple[str, str], list[dict[str, Any]]], reference: float) -> Any:
    """Per-unit IPR against t = steps/D (log axis): one panel per (row, column) title pair, one thin line per unit
    and seed coloured by the sign of the unit's starting bias (orange +, blue −: their figure's two groups), each
    group's mean over units and seeds thick, the random-unit IPR dotted and `IPR_FACTOR` × it dashed.

    Args:
      panels: (row title, column title) -> records (each with `t`, `unit_ipr` [t][K], `options`).
      reference: the random-unit IPR 3/(D+2).
    """
    from matplotlib.lines import Line2D

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
    legend = [("tab:orange", "-", "units starting at bias +1 (thin: each unit and seed; thick: mean)")]
    legend += [("tab:blue", "-", "units starting at bias −1"), ("black", ":", "3/(D+2), a dense random unit")]
    legend += [("gray", "--", f"{IPR_FACTOR}× 3/(D+2)")]
    handles = [Line2D([], [], color=c, linestyle=ls) for c, ls, _ in legend]
    fig.legend(handles, [text for *_, text in legend], loc="outside lower center", ncols=2, fontsize=8)
    return fig


def plot_fields(records: Sequence[Record]) -> Any:
    """Each record's final first layer, one row per record, each unit an L×L map w / max|w| (red +, blue −), units
    in index order (those starting at bias +b first, as their figure's rows of localised and oscillatory fields)."""
    side, units = records[0]["options"]["side"], records[0]["options"]["units"]
    fig = new_figure(figsize=(1.0 * units + 2.6, 1.05 * len(records)))
    axes = fig.subplots(len(records), units, squeeze=False)
    for row, record in zip(axes, records):
        kernel = np.array(record["first_layer_kernel"], np.float64)
        for unit, ax in enumerate(row):
            scale = np.abs(kernel[:, unit]).max() or 1.0
            image = ax.imshow(kernel[:, unit].reshape(side, -1) / scale, cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set(xticks=[], yticks=[])
            ax.set_xlabel(f"{record['unit_iprs'][unit]:.3f}", fontsize=6, labelpad=1)
        label = f"{KIND_LABELS[record['dataset']]}\n{record['method']}\nseed {record['seed']}"
        row[0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.4, label="w / max |w| (below each map: its IPR)")
    return fig


def draw_figures(records: Sequence[Record], out: Path, prefix: str) -> list[Path]:
    """`<prefix>_ipr` (per-unit IPR curves, a row per method, a column per dataset) and `<prefix>_fields` (the
    final first layers of the lowest seed of each dataset and method, as their filter panels)."""
    gs = groups(records)
    reference = records[0]["locality"]["ipr_random"]
    panels = {(g[0]["method"], KIND_LABELS[g[0]["dataset"]]): g for g in gs}
    paths = save_figure(plot_unit_ipr_curves(panels, reference), out / f"{prefix}_ipr")
    return paths + save_figure(plot_fields([g[0] for g in gs]), out / f"{prefix}_fields")
