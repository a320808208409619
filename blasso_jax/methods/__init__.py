"""Training methods by name: the registry (`registry`: `Method`, `register`, `get`, grids) with β-LASSO, SGD, masked
retraining, magnitude pruning and IMP registered, what the masked methods do beyond an optimizer
(`pruning_methods`), and what a config means as a run, which takes its method (`runs`: the full check `validate`,
`run_name`, `same_run`). May import every layer below it: common, models, data, optim, analysis, config."""

from blasso_jax.methods.registry import (
    GRID_DROPOUT,
    METHODS,
    Grid,
    Method,
    crossed,
    get,
    grid_configs,
    grid_names,
    learning_rate_schedule,
    momentum,
    optimizer,
    register,
    zipped,
)
from blasso_jax.methods.runs import relevant_config, resolve_defaults, run_name, same_run, validate

__all__ = [
    "GRID_DROPOUT",
    "METHODS",
    "Grid",
    "Method",
    "crossed",
    "get",
    "grid_configs",
    "grid_names",
    "learning_rate_schedule",
    "momentum",
    "optimizer",
    "register",
    "zipped",
    "relevant_config",
    "resolve_defaults",
    "run_name",
    "same_run",
    "validate",
]
