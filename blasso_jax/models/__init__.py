"""The networks by name: the paper's stacks (S-CONV … 3-FC, and 2-FC) and ResNet18 in one registry
(`networks`: `create_model`, `register_model`, `layer_specs`), and the parameter tree's conventions (`counting`:
`FIRST_LAYER`, kernels by layer, their counts). May import `blasso_jax.common`."""

from blasso_jax.models.networks import (
    KERNEL_SIZES,
    MODEL_NAMES,
    MODELS,
    STACK_MODELS,
    TWO_FC_WIDTH,
    LayerKind,
    LayerSpec,
    ModelEntry,
    Network,
    create_model,
    layer_specs,
    layer_weights,
    register_model,
    three_fc_width,
)

__all__ = [
    "KERNEL_SIZES",
    "MODEL_NAMES",
    "MODELS",
    "STACK_MODELS",
    "TWO_FC_WIDTH",
    "LayerKind",
    "LayerSpec",
    "ModelEntry",
    "Network",
    "create_model",
    "layer_specs",
    "layer_weights",
    "register_model",
    "three_fc_width",
]
