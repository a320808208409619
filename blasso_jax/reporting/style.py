"""The one figure style: figures built without pyplot (no backend, no global state), rows of panels of one size,
one legend below the panels, and the reference lines every figure draws alike; PNG and PDF written atomically."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blasso_jax.common import files

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANEL_WIDTH, PANEL_HEIGHT = 4.2, 3.8  # inches, one panel of a row
GRID = {"alpha": 0.3}
REFERENCE = {"color": "black", "linestyle": "--", "linewidth": 1}  # a level to compare with: dense random filters
NO_STRUCTURE = {"color": "black", "linestyle": ":", "linewidth": 1}  # ratio 1 (no spatial structure), a threshold
GUIDE = {"color": "gray", "linestyle": "--", "linewidth": 1}  # the ratio of 2 the tables count units from


def new_figure(**kwargs: Any) -> Figure:
    """A matplotlib Figure with constrained layout, made without pyplot (no backend, no global state)."""
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def save_figure(fig: Figure, path_without_suffix: str | os.PathLike, *, dpi: int = 150) -> list[Path]:
    """Writes `fig` as `<path>.png` and `<path>.pdf`, each atomically; returns the two paths. The layout is solved
    once, for the PNG, and the PDF keeps it (solving it again per format doubled the time of a many-panel figure);
    `fig` keeps its own layout engine afterwards."""
    engine, paths = fig.get_layout_engine(), []
    try:
        for fmt in ("png", "pdf"):
            path = Path(f"{os.fspath(path_without_suffix)}.{fmt}")
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=dpi)
            fig.set_layout_engine("none")
            files.atomic_write_bytes(path, buffer.getvalue())
            paths.append(path)
    finally:
        fig.set_layout_engine(engine)
    return paths


def panels(count: int, empty: str, height: float = PANEL_HEIGHT) -> tuple[Figure, Any]:
    """A figure of `count` panels side by side, `PANEL_WIDTH` wide each: the figure and its axes (a 1-D array);
    ValueError(`empty`) when there is nothing to draw."""
    if not count:
        raise ValueError(empty)
    fig = new_figure(figsize=(PANEL_WIDTH * count, height))
    return fig, fig.subplots(1, count, squeeze=False)[0]


def figure_legend(fig: Figure, axes: Sequence[Any], max_columns: int = 6, **options: Any) -> None:
    """One legend for the figure, each label once, below the panels, in at most `max_columns` columns."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(
            list(entries.values()),
            list(entries),
            loc="outside lower center",
            ncols=min(len(entries), max_columns),
            **options,
        )
