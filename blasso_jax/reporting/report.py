"""Markdown tables that put measured accuracies next to the paper's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blasso_jax.common import paper
from blasso_jax.common.text import mean_std, percent
from blasso_jax.config.train_config import TrainConfig
from blasso_jax.data import nlgp
from blasso_jax.methods import registry as methods
from blasso_jax.methods.runs import relevant_config


def dataset_label(dataset: str) -> str:
    """How a dataset is named in tables; local copies by their file name, so they are never mistaken for tfds'."""
    if dataset in paper.TABLE2 or dataset == "synthetic" or nlgp.is_spec(dataset):
        return dataset  # generated in memory: its name (an NLGP spec in full) says what it is
    return f"{Path(dataset).name} (local copy)"


TABLE2_HEADERS = ("dataset", "method", "epochs", "test % (best val)", "test % (final)", "paper (4000 epochs)")


def table2_row(results: dict[str, Any] | Sequence[dict[str, Any]]) -> list[Any]:
    """One Table 2 row from the results.json content of a run, or of one run per seed (mean ± std)."""
    runs = [results] if isinstance(results, dict) else list(results)
    config = TrainConfig.from_dict(runs[0]["config"])
    method = methods.get(config.method)
    return [
        dataset_label(config.dataset),
        method.label(config),
        runs[0]["epochs"],
        mean_std([100 * r["test_accuracy"]["best"] for r in runs if r["test_accuracy"]["best"] is not None]),
        mean_std([100 * r["test_accuracy"]["final"] for r in runs if r["test_accuracy"]["final"] is not None]),
        paper.TABLE2.get(paper.paper_dataset(config.dataset), {}).get(method.paper_key(config)),
    ]


def command_line(config: dict[str, Any], module: str = "experiments.table2") -> str:
    """The command that reproduces a run: every config field its method reads that differs from `TrainConfig()`'s."""

    defaults = TrainConfig().to_dict()
    used = relevant_config(config)
    changed = {k: v for k, v in used.items() if k in defaults and _same(defaults[k]) != _same(v)}
    flags = [f"--{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in changed.items()]
    return " ".join(["python -m", module, *flags])


def _same(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


LOCALITY_HEADERS = (
    "command",
    "epochs",
    "non-zero % per layer",
    "best 9×9 share (median)",
    "pixels shuffled",
    "dense random",
    "radius px (median)",
    "test % (best val)",
    "test % (final)",
    "wall min",
)


def locality_row(results: dict[str, Any], locality: dict[str, Any]) -> list[Any]:
    """One row of the locality search: a run's results.json content and its first layer's `locality` summary."""
    density = [f"{100 * results['nonzero_per_layer'][k] / n:.1f}" for k, n in results["dense_per_layer"].items()]
    return [
        f"`{command_line(results['config'])}`",
        results["epochs"],
        " / ".join(density),
        f"{locality['window_share_median']:.3f}",
        f"{locality['window_share_shuffled']:.3f}",
        f"{locality['window_share_chance']:.3f}",
        locality["radius_median"],
        percent(results["test_accuracy"]["best"]),
        percent(results["test_accuracy"]["final"]),
        f"{results['wall_seconds'] / 60:.1f}",
    ]


def first_layer_summary(runs: Sequence[dict[str, Any]]) -> str:
    """What a run did to its first layer, for the last lines a user sees: non-zeros and, for FC models, the
    locality of its units against their own shuffled pixels (mean ± std over several runs)."""
    first = next(iter(runs[0]["nonzero_per_layer"]))
    dense = runs[0]["dense_per_layer"][first]
    kept = mean_std([100 * r["nonzero_per_layer"][first] / dense for r in runs])
    line = f"first layer: {kept} % of {dense:,} weights non-zero"
    localities = [r["locality"] for r in runs if r.get("locality")]
    if not localities:
        return line

    def over_runs(key: str, digits: int = 3) -> str:
        return mean_std([loc[key] for loc in localities if loc.get(key) is not None], digits)

    window, chance = localities[0]["window"], localities[0]
    return (
        f"{line}; best {window}x{window} window share {over_runs('window_share_median')} against "
        f"{over_runs('window_share_shuffled')} with the pixels shuffled (dense random "
        f"{chance['window_share_chance']:.3f}); per unit, share / its own permutation null: median "
        f"{over_runs('ratio_median', 2)}, {over_runs('ratio_ge2_fraction', 2)} of units at 2x or more; 90 %-mass "
        f"radius {over_runs('radius_median', 1)} px (dense random {chance['radius_chance']:.1f})"
    )
