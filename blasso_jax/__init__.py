"""blasso_jax: β-LASSO ("Towards Learning Convolutions from Scratch", Neyshabur 2020) in JAX/Flax.

The names below are the public API, re-exported from the subpackages (as optax's `__init__` does). The
subpackages are layers, each importing only the layers before it (tests/test_structure.py checks it):

    common < models < data < optim < analysis < config < methods < sparse < training < reporting

- `common`: files, keys, the device mesh, the log, stop signals, the paper's facts, the text of tables;
- `models`: the networks by name and the parameter tree's conventions;
- `data`: datasets, NLGP, augmentation, and the `Geometry` of a layer's inputs;
- `optim`: optax-level code only: β-LASSO's transforms, masks and pruning;
- `analysis`: locality, description length, filters as images;
- `config`: `TrainConfig` and the presets;
- `methods`: training methods by name, and what a config means as a run;
- `sparse`: sparse inference, the export format and their benchmark;
- `training`: the step, one run, its directory, records and summary, sweeps, the speed benchmark;
- `reporting`: tables, evidence, rendered docs and figures.
"""

from blasso_jax.config.train_config import TrainConfig, preset
from blasso_jax.methods.runs import run_name
from blasso_jax.models.counting import FIRST_LAYER, count_params, kernel_sizes, nonzero_counts
from blasso_jax.models.networks import (
    MODEL_NAMES,
    LayerSpec,
    ModelEntry,
    Network,
    create_model,
    layer_specs,
    register_model,
    three_fc_width,
)
from blasso_jax.optim import get_mask, iterative_pruning, keep_mask, magnitude_pruning, rewound, set_mask
from blasso_jax.optim.pruning import ImpPlan, imp_plan, magnitude_mask
from blasso_jax.optim.transforms import add_l1_sign, blasso, hard_threshold, kernel_mask, layerwise_l1, pull_matched_l1
from blasso_jax.training.rundir import load_run
from blasso_jax.training.train import train_and_evaluate

__all__ = [
    # configuration and training
    "TrainConfig",
    "preset",
    "run_name",
    "train_and_evaluate",
    "load_run",
    # models and the parameter tree
    "FIRST_LAYER",
    "MODEL_NAMES",
    "LayerSpec",
    "ModelEntry",
    "Network",
    "count_params",
    "create_model",
    "kernel_sizes",
    "layer_specs",
    "nonzero_counts",
    "register_model",
    "three_fc_width",
    # β-LASSO as optax transforms
    "add_l1_sign",
    "blasso",
    "hard_threshold",
    "kernel_mask",
    "layerwise_l1",
    "pull_matched_l1",
    # masks and pruning as optax transforms
    "ImpPlan",
    "get_mask",
    "imp_plan",
    "iterative_pruning",
    "keep_mask",
    "magnitude_mask",
    "magnitude_pruning",
    "rewound",
    "set_mask",
]
