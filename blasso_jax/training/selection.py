"""Model selection by validation accuracy, the paper's rule, written once: the best epoch of a run (records, its
summary and best checkpoint), the best point of a grid (`sweep.run_grid`) and NLGP's λ (`reporting.nlgp_grid`,
`online_streams`: over ascending λ, so the smaller λ among equals) are chosen by it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def best_by_validation(candidates: Sequence[T], validation: Callable[[T], float | None]) -> T | None:
    """The candidate of highest validation accuracy, the first among equals; None when no candidate has one.

    Examples:
      >>> best_by_validation([("a", 0.5), ("b", 0.7), ("c", 0.7), ("d", None)], lambda c: c[1])
      ('b', 0.7)
    """
    scored = [c for c in candidates if validation(c) is not None]
    return max(scored, key=validation) if scored else None  # max keeps the first of equal keys
