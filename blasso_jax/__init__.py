"""blasso_jax: β-LASSO ("Towards Learning Convolutions from Scratch", Neyshabur 2020) in JAX/Flax."""

from blasso_jax.config.train_config import TrainConfig, preset
from blasso_jax.models.counting import FIRST_LAYER, count_params, kernel_sizes, nonzero_counts
from blasso_jax.models.networks import MODEL_NAMES, LayerSpec, Network, create_model, layer_specs, three_fc_width
from blasso_jax.optim.transforms import add_l1_sign, blasso, hard_threshold, kernel_mask, layerwise_l1, pull_matched_l1
from blasso_jax.training.rundir import load_run
from blasso_jax.training.train import train_and_evaluate

__all__ = [
    "FIRST_LAYER",
    "MODEL_NAMES",
    "TrainConfig",
    "load_run",
    "preset",
    "train_and_evaluate",
    "LayerSpec",
    "Network",
    "add_l1_sign",
    "blasso",
    "count_params",
    "create_model",
    "hard_threshold",
    "kernel_mask",
    "kernel_sizes",
    "layer_specs",
    "layerwise_l1",
    "pull_matched_l1",
    "nonzero_counts",
    "three_fc_width",
]
