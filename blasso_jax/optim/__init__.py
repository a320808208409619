"""Optax-level code only: β-LASSO as transforms (`transforms`: `add_l1_sign`, `hard_threshold`, `blasso`,
`kernel_mask`, `layerwise_l1`, the fixed mask `keep_mask`) and the masks of the pruning baselines (`pruning`).
Nothing here knows a config or a trainer. May import `blasso_jax.common` and `blasso_jax.models`."""

from blasso_jax.optim.transforms import (
    MaskState,
    RewindState,
    add_l1_sign,
    blasso,
    check_momentum,
    get_mask,
    hard_threshold,
    keep_mask,
    kernel_mask,
    layerwise_l1,
    pull_matched_l1,
    remember_params,
    set_mask,
)

__all__ = [
    "MaskState",
    "RewindState",
    "add_l1_sign",
    "blasso",
    "check_momentum",
    "get_mask",
    "hard_threshold",
    "keep_mask",
    "kernel_mask",
    "layerwise_l1",
    "pull_matched_l1",
    "remember_params",
    "set_mask",
]
