"""Sweeps: cells of configs, each trained over seeds (finished runs read back, interrupted ones resumed), typed
results, and a markdown table written atomically and printed with its path. Every experiment that trains goes
through `run_cells`, so each takes `--seeds` and reports mean ± std over them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from blasso_jax.common import files
from blasso_jax.common.text import mean_std
from blasso_jax.config.train_config import TrainConfig
from blasso_jax.methods.runs import run_name, validate
from blasso_jax.training import train

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


def write_table(path: Path, table: str, *extra: Path) -> None:
    """Writes `table` to `path` atomically and prints it with the paths of the table and of `extra` outputs."""
    files.atomic_write_bytes(path, (table + "\n").encode())
    listed = "".join(f"\n{p.suffix.lstrip('.') or 'output'}: {p}" for p in extra)
    print(f"\n{table}\n\ntable: {path}{listed}")
