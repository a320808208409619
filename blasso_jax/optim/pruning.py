"""Masks for the pruning baselines and the masked-retraining ablation: by magnitude, pixel-shuffled per unit,
and the round plan of iterative magnitude pruning (Frankle & Carbin 2019; Frankle et al. 2020).

Masks are bool arrays of a kernel's shape, True where a weight is kept. Everything here is a pure
function of its arrays (jitted, so it also runs on sharded parameters).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp

from blasso_jax.models.counting import FIRST_LAYER

PyTree = Any


def check_density(name: str, density: float) -> float:
    """`density` (non-zeros / entries) as a float if it is a number in (0, 1]; a ValueError naming `name` otherwise.
    The one check of a density: pruning's, the configs' and sparse inference's."""
    if not (isinstance(density, numbers.Real) and 0 < density <= 1):
        raise ValueError(f"{name} must be a density in (0, 1], got {density!r}")
    return float(density)


@functools.partial(jax.jit, static_argnames=("keep",))
def _top_magnitudes(kernel: jax.Array, keep: int) -> jax.Array:
    order = jnp.argsort(-jnp.abs(kernel).ravel(), stable=True)  # ties: the lower flat index first
    return jnp.zeros(kernel.size, bool).at[order[:keep]].set(True).reshape(kernel.shape)


def magnitude_mask(kernel: jax.Array, density: float, within: jax.Array | None = None) -> jax.Array:
    """Keeps the round(density · size) entries of largest |w| (of those `within` allows, if given), the rest False.

    Args:
      kernel: the weights.
      density: the share of all entries to keep, in (0, 1].
      within: an optional mask the kept entries must lie in (iterative pruning prunes only survivors).

    Returns:
      A bool array of `kernel`'s shape with exactly round(density · size) True entries (fewer if `within`
      holds fewer), ties broken by position.

    Examples:
      >>> magnitude_mask(jnp.array([0.1, -3.0, 2.0, 0.0]), 0.5).tolist()
      [False, True, True, False]
    """
    check_density("density", density)
    keep = round(density * kernel.size)
    if within is not None:
        kernel = jnp.where(within, kernel, 0.0)
        keep = min(keep, int(jnp.count_nonzero(within)))
    return _top_magnitudes(kernel, keep) & (True if within is None else within)


def layer_masks(params: PyTree, density_first: float, density_rest: float, within: PyTree | None = None) -> PyTree:
    """`magnitude_mask` of every kernel (`density_first` for the first layer, `density_rest` for the others),
    None for the other leaves; `within` (a tree of masks or None) restricts each to its survivors."""
    flat = {k: v for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    within_flat = dict(jax.tree_util.tree_flatten_with_path(within)[0]) if within is not None else {}
    masks = {}
    for path, leaf in flat.items():
        names = [str(getattr(entry, "key", entry)) for entry in path]
        if names[-1] != "kernel":
            masks[path] = None
            continue
        density = density_first if names[0] == FIRST_LAYER else density_rest
        masks[path] = magnitude_mask(leaf, density, within_flat.get(path))
    leaves = [masks[path] for path in flat]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), leaves)


def shuffle_unit_masks(mask: jax.Array, image_shape: tuple[int, int, int], key: jax.Array) -> jax.Array:
    """A dense first layer's mask `[H*W*C, units]` with each unit's pixel positions permuted independently.

    Each unit keeps its count of kept weights per channel and its channel pattern at each pixel; only where
    its pixels sit changes, so the shuffled mask is as sparse as the original and carries no locality.
    """
    height, width, channels = image_shape
    units = mask.shape[1]
    if mask.shape[0] != height * width * channels:
        raise ValueError(f"a first-layer mask of shape {mask.shape} does not match images of shape {image_shape}")
    pixels = mask.reshape(height * width, channels, units)
    orders = jax.vmap(lambda k: jax.random.permutation(k, height * width))(jax.random.split(key, units))
    shuffled = jnp.take_along_axis(pixels, orders.T[:, None, :], axis=0)
    return shuffled.reshape(mask.shape)


@dataclasses.dataclass(frozen=True)
class ImpPlan:
    """Iterative magnitude pruning over a run of `epochs`: a dense segment, then `rounds` pruning rounds, each
    `segment` epochs; round r keeps `keep(r)` of each layer (the first layer and the rest apart)."""

    rounds: int
    segment: int
    density_first: float
    density_rest: float
    rate: float

    def keep(self, round_index: int, first: bool) -> float:
        """Density of a layer after `round_index` rounds: (1 - rate)^r, never below the layer's target."""
        target = self.density_first if first else self.density_rest
        return max(target, (1 - self.rate) ** round_index)

    def round_ending(self, epoch: int) -> int | None:
        """The pruning round that starts after `epoch` (1 … rounds), or None if `epoch` ends no segment before the
        last."""
        if epoch % self.segment or epoch // self.segment > self.rounds:
            return None
        return epoch // self.segment


def imp_plan(epochs: int, density_first: float, density_rest: float, rate: float) -> ImpPlan:
    """The round plan: as many rounds of pruning `rate` of the survivors as the sparser layer needs to reach its
    target, and `epochs` split into that many + 1 equal segments (a ValueError names valid epochs otherwise)."""
    check_density("density_first", density_first)
    check_density("density_rest", density_rest)
    if not 0 < rate < 1:
        raise ValueError(f"imp_rate must be in (0, 1), got {rate}")
    target = min(density_first, density_rest)
    rounds = 0 if target >= 1 else max(1, math.ceil(math.log(target) / math.log(1 - rate) - 1e-9))
    if epochs % (rounds + 1):
        lower, upper = (epochs // (rounds + 1)) * (rounds + 1), (epochs // (rounds + 1) + 1) * (rounds + 1)
        valid = f"{lower} or {upper}" if lower else str(upper)
        raise ValueError(
            f"imp: epochs {epochs} do not split into {rounds + 1} equal segments (dense, then {rounds} rounds of "
            f"pruning {rate:g} of the survivors down to density {target:g}); use epochs {valid}"
        )
    return ImpPlan(rounds, epochs // (rounds + 1), density_first, density_rest, rate)
