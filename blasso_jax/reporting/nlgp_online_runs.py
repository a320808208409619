"""Ingrosso & Goldt's online setting from an entry point's options to its outputs (`run_options`, `run_plan`): the
streams of `training.online_streams`, then `table.md` rendered from their JSONs by `rendered_docs` and the figures
of `nlgp_online_report`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blasso_jax.reporting import nlgp_online_report, rendered_docs
from blasso_jax.training import sweep
from blasso_jax.training.online_streams import QUICK, Plan, train_plan

ONLINE_TABLE = """Ingrosso & Goldt's setting:

<!-- evidence:{folder}/online_setting -->
<!-- /evidence -->

Mean ± std over seeds at the last t (λ of each L1 arm chosen on each dataset's first seed):

<!-- evidence:{folder}/online_grid -->
<!-- /evidence -->

Against SGD on the same dataset and seed (mean ± std of the per-seed differences):

<!-- evidence:{folder}/online_differences -->
<!-- /evidence -->

λ selection (validation accuracy on held-out fresh inputs; every λ's final locality beside it):

<!-- evidence:{folder}/online_lambda_selection -->
<!-- /evidence -->
"""


def run_plan(plan: Plan, results_dir: Path, figures_dir: Path) -> list[dict[str, Any]]:
    """Every stream of `plan` (trained or read back: `train_plan`), then `table.md` and the figures; returns the
    records."""
    records = train_plan(plan, results_dir)
    results_dir = Path(results_dir)
    table = rendered_docs.render(ONLINE_TABLE.format(folder=results_dir.name), results_dir.parent).rstrip("\n")
    figures = nlgp_online_report.draw_figures(records, Path(figures_dir), "nlgp_ingrosso_goldt")
    sweep.write_table(results_dir / "table.md", table, *figures[::2])
    return records


def run_options(
    setting: str,
    quick: bool,
    seeds: Sequence[int] | None,
    kinds: Sequence[str] | None,
    arms: Sequence[str] | None,
    lambdas: Sequence[str] | None,
    workdir: str | None,
    results_dir: str | None,
    figures_dir: str | None,
) -> list[dict[str, Any]]:
    """`run_plan` from an entry point's flags: `QUICK` or the main `Plan`, with the seeds, datasets, arms and λ given;
    results under <workdir>/results and <workdir>/figures with --quick, else docs/results/nlgp_ingrosso_goldt
    and docs/figures."""
    if setting != "ingrosso_goldt":
        raise ValueError(f"unknown --setting {setting!r}; valid: default, ingrosso_goldt")
    plan = QUICK if quick else Plan()
    grid = tuple(float(v) for v in lambdas or ())
    changes = {"seeds": tuple(seeds or ()), "kinds": tuple(kinds or ()), "arms": tuple(arms or ()), "lambdas": grid}
    plan = dataclasses.replace(plan, **{k: v for k, v in changes.items() if v})
    root = Path(workdir or "runs/nlgp_ingrosso_goldt")
    results = Path(results_dir or (root / "results" if quick else "docs/results/nlgp_ingrosso_goldt"))
    figures = Path(figures_dir or (root / "figures" if quick else "docs/figures"))
    return run_plan(plan, results, figures)
