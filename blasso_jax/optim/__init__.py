"""Optax-level code only: β-LASSO as transforms (`transforms`: `add_l1_sign`, `hard_threshold`, `blasso`,
`kernel_mask`, `layerwise_l1`, the fixed mask `keep_mask`), the masks and the round plan of the pruning baselines
(`pruning`), and magnitude pruning and IMP as transforms that wrap any optimizer (`pruning_transforms`). Nothing here
knows a config or a trainer. May import `blasso_jax.common` and `blasso_jax.models`."""

from blasso_jax.optim.pruning import ImpPlan, imp_plan, layer_masks, magnitude_mask, shuffle_unit_masks
from blasso_jax.optim.pruning_transforms import (
    IterativePruningState,
    MagnitudePruningState,
    iterative_pruning,
    magnitude_pruning,
    rewound,
)
from blasso_jax.optim.transforms import (
    MaskState,
    add_l1_sign,
    blasso,
    check_momentum,
    get_mask,
    hard_threshold,
    hold,
    keep_mask,
    kernel_mask,
    layerwise_l1,
    pull_matched_l1,
    set_mask,
)

__all__ = [
    "ImpPlan",
    "IterativePruningState",
    "MagnitudePruningState",
    "MaskState",
    "add_l1_sign",
    "blasso",
    "check_momentum",
    "get_mask",
    "hard_threshold",
    "hold",
    "imp_plan",
    "iterative_pruning",
    "keep_mask",
    "kernel_mask",
    "layer_masks",
    "layerwise_l1",
    "magnitude_mask",
    "magnitude_pruning",
    "pull_matched_l1",
    "rewound",
    "set_mask",
    "shuffle_unit_masks",
]
