"""Markdown tables that put measured accuracies next to the paper's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blasso_jax import methods, paper


def dataset_label(dataset: str) -> str:
    """How a dataset is named in tables; local copies by their file name, so they are never mistaken for tfds'."""
    return dataset if dataset in paper.TABLE2 or dataset == "synthetic" else f"{Path(dataset).name} (local copy)"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; None prints as '-'."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100.0 * fraction


TABLE2_HEADERS = ("dataset", "method", "epochs", "test % (best val)", "test % (final)", "paper (4000 epochs)")


def table2_row(results: dict[str, Any]) -> list[Any]:
    """One Table 2 row from a run's results.json content."""
    from blasso_jax.config import TrainConfig  # config imports models: keep `report` light to import

    config = TrainConfig.from_dict(results["config"])
    method = methods.get(config.method)
    return [
        dataset_label(config.dataset),
        method.label(config),
        results["epochs"],
        percent(results["test_accuracy"]["best"]),
        percent(results["test_accuracy"]["final"]),
        paper.TABLE2.get(paper.paper_dataset(config.dataset), {}).get(method.paper_key(config)),
    ]


def command_line(config: dict[str, Any], module: str = "experiments.table2") -> str:
    """The command that reproduces a run: every config field its method reads that differs from `TrainConfig()`'s."""
    from blasso_jax.config import TrainConfig  # config imports models: keep `report` light to import

    defaults = TrainConfig().to_dict()
    used = methods.relevant_config(config)
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
