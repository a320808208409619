"""The text of tables: GitHub Markdown tables, mean ± std over seeds, fractions as percentages.

Training's sweeps print tables as reporting does, so these live below both.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


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


def mean_std(values: Sequence[float], digits: int = 2, *, count: bool = True, signed: bool = False) -> str:
    """'mean ± std (n=k)' of `values` (the sample standard deviation), the value alone for one, '-' for none;
    without '(n=k)' where the table names its seeds (`count=False`), with the mean's sign for differences.

    Examples:
      >>> mean_std([53.25, 54.11, 53.80]), mean_std([52.48]), mean_std([])
      ('53.72 ± 0.44 (n=3)', '52.48', '-')
      >>> mean_std([1.19, 1.88, 0.0], count=False, signed=True)
      '+1.02 ± 0.95'
    """
    if not values:
        return "-"
    mean = f"{statistics.mean(values):{'+' if signed else ''}.{digits}f}"
    if len(values) == 1:
        return mean
    n = f" (n={len(values)})" if count else ""
    return f"{mean} ± {statistics.stdev(values):.{digits}f}{n}"
