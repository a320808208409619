"""Sweeps: cells of configs, each trained over seeds (finished runs read back, interrupted ones resumed), typed
results, and a markdown table written atomically and printed with its path. Every experiment that trains goes
through `run_cells`, so each takes `--seeds` and reports mean ± std over them."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from blasso_jax.common import files
from blasso_jax.common.text import mean_std
from blasso_jax.config.train_config import TrainConfig
from blasso_jax.methods.registry import get, grid_configs
from blasso_jax.methods.runs import run_name, validate
from blasso_jax.training import train
from blasso_jax.training.selection import best_by_validation

Results = dict[str, Any]


def parse_seeds(values: Sequence[str | int] | None, default: int) -> tuple[int, ...]:
    """The seeds of `--seeds` (comma-separated on the command line), or `(default,)` when not given.

    Examples:
      >>> parse_seeds(["0", "1", "2"], default=7), parse_seeds(None, default=7)
      ((0, 1, 2), (7,))
    """
    if values is None:
        return (default,)
    try:
        seeds = tuple(int(v) for v in values)
    except ValueError as error:
        raise ValueError(f"--seeds must be integers, comma-separated, got {','.join(map(str, values))!r}") from error
    if not seeds:
        raise ValueError("--seeds is empty; give one or more seeds, e.g. --seeds=0,1,2")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"--seeds repeats {repeated}; give each seed once")
    return seeds


@dataclasses.dataclass(frozen=True)
class CellRuns:
    """One cell of a sweep: its config (at the first seed) and each seed's `results.json` and run directory."""

    config: TrainConfig
    results: tuple[Results, ...]
    workdirs: tuple[Path, ...]

    def values(self, read: Callable[[Results], float | None]) -> list[float]:
        """`read(results)` of every seed that has it."""
        return [v for v in map(read, self.results) if v is not None]

    def mean_std(self, read: Callable[[Results], float | None], scale: float = 100.0) -> str:
        """`read` over the seeds as 'mean ± std' (`scale` times each value; sample std), or the value of one seed."""
        return mean_std([scale * v for v in self.values(read)])

    @property
    def run_results(self) -> Results:
        """The first seed's results (for what every seed shares: config, epochs, sizes)."""
        return self.results[0]


def run_cells(
    cells: Sequence[TrainConfig],
    root: Path,
    seeds: Sequence[int],
    name: Callable[[TrainConfig], str] = run_name,
    describe: Callable[[TrainConfig], str] | None = None,
) -> list[CellRuns]:
    """Trains (or reads back, or resumes) every cell at every seed in `root / name(config at that seed)`.

    Every config is checked before the first run starts; the plan (runs, epochs, where, and `describe(cell)` per
    cell, e.g. its weight count) is printed first.
    """
    runs = [[cell.replace(seed=seed) for seed in seeds] for cell in cells]
    for config in (c for row in runs for c in row):
        validate(config)
    epochs = sum(c.epochs for row in runs for c in row)
    print(f"{sum(map(len, runs))} runs ({len(cells)} cells x {len(seeds)} seeds), {epochs} epochs in all, in {root}")
    for cell in cells if describe else ():
        print(f"  {name(cell)}: {describe(cell)}")
    done = []
    for row in runs:
        workdirs = tuple(root / name(config) for config in row)
        results = tuple(train.run_once(config, workdir) for config, workdir in zip(row, workdirs))
        done.append(CellRuns(row[0], results, workdirs))
    return done


def run_grid(cells: Sequence[TrainConfig], grid: str, root: Path, seeds: Sequence[int]) -> list[CellRuns]:
    """Trains (or reads back, or resumes) every point of each cell's method grid `grid` (`methods.grid_configs`) at
    every seed, in `root / run_name(cell) / grid_point_name(point)`, and returns each cell's point of best mean
    validation accuracy over the seeds (`selection.best_by_validation`)."""
    if any(cell.validation_size == 0 for cell in cells):
        raise ValueError("--grid selects by validation accuracy; set --validation_size above 0")
    grids = {run_name(cell): grid_configs(cell, grid) for cell in cells}
    total = sum(map(len, grids.values())) * len(seeds)
    print(f"{total} runs of grid {grid!r} over {len(grids)} cells and {len(seeds)} seed(s) in {root}")
    selected = []
    for cell_name, candidates in grids.items():
        points = run_cells(candidates, root / cell_name, seeds, name=lambda c: grid_point_name(c, grid, len(seeds)))
        selected.append(best_by_validation(points, lambda p: statistics.mean(p.values(_best_validation))))
    return selected


def _best_validation(results: Results) -> float | None:
    return results["val_accuracy"]["best"]


def grid_point_name(config: TrainConfig, grid: str, seeds: int = 1) -> str:
    """A grid point's directory name: its values of the grid's fields, e.g. l1_first2e-06-l1_rest5e-06-dropout0
    (with `-seed<s>` when the grid runs over several seeds)."""
    fields = get(config.method).grids[grid].fields
    name = "-".join(f"{field}{_value_name(getattr(config, field))}" for field in fields)
    return f"{name}-seed{config.seed}" if seeds > 1 else name


def _value_name(value: float | bool) -> str:
    return str(value) if isinstance(value, bool) else f"{value:g}"


def write_table(path: Path, table: str, *extra: Path) -> None:
    """Writes `table` to `path` atomically and prints it with the paths of the table and of `extra` outputs."""
    files.atomic_write_bytes(path, (table + "\n").encode())
    listed = "".join(f"\n{p.suffix.lstrip('.') or 'output'}: {p}" for p in extra)
    print(f"\n{table}\n\ntable: {path}{listed}")
