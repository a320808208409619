"""Training methods by name: the registry (`registry`: `Method`, `register`, `get`, grids) with β-LASSO, SGD, masked
retraining, magnitude pruning and IMP registered, and what the masked methods do beyond an optimizer
(`pruning_methods`). May import every layer below it: common, models, data, optim, analysis, config."""

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
]
