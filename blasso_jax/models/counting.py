"""The parameter tree's conventions: the first layer's name, kernels by layer, and their counts.

Every model names its weight layers `layer1`, `layer2`, … in order, with weights in leaves called
`kernel`; the paper counts weights as kernel entries (biases and BatchNorm left out).
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

PyTree = Any

# The first weight layer of every model: the one the paper expects to turn convolution-like.
FIRST_LAYER = "layer1"


def _kernels(params: PyTree) -> dict[str, jax.Array]:
    """Kernel leaves by layer name, in layer order."""
    flat = traverse_util.flatten_dict(params)
    kernels = {"/".join(key[:-1]): value for key, value in flat.items() if key[-1] == "kernel"}
    return dict(sorted(kernels.items(), key=lambda item: _natural_key(item[0])))


def nonzero_counts(params: PyTree) -> dict[str, jax.Array]:
    """Number of non-zero kernel entries per layer, as device scalars (usable under `jax.jit`).

    Args:
      params: a flax parameter tree.

    Returns:
      `{layer path: count}` for every `kernel` leaf, in layer order (`layer2` before `layer10`).

    Examples:
      >>> import jax.numpy as jnp
      >>> {k: int(v) for k, v in nonzero_counts({"layer1": {"kernel": jnp.array([0.0, 1.0, 2.0])}}).items()}
      {'layer1': 2}
    """
    return {name: jnp.count_nonzero(kernel) for name, kernel in _kernels(params).items()}


def kernel_sizes(params: PyTree) -> dict[str, int]:
    """Number of kernel entries per layer: the dense count that `nonzero_counts` is measured against.

    Args:
      params: a flax parameter tree (arrays or `jax.ShapeDtypeStruct`s).

    Returns:
      `{layer path: entries}` for every `kernel` leaf, in layer order.
    """
    return {name: int(kernel.size) for name, kernel in _kernels(params).items()}


def _natural_key(name: str) -> tuple:
    """Sorts `layer2` before `layer10`."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def count_params(params: PyTree, *, kernels_only: bool = True) -> int:
    """Number of weights: kernel entries (as the paper's tables count them), or every entry.

    Args:
      params: a flax parameter tree.
      kernels_only: count only `kernel` leaves (biases and BatchNorm left out), as the paper does.

    Returns:
      The number of entries.

    Examples:
      >>> import numpy as np
      >>> count_params({"layer1": {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)}})
      12
    """
    flat = traverse_util.flatten_dict(params)
    return sum(int(value.size) for key, value in flat.items() if key[-1] == "kernel" or not kernels_only)
