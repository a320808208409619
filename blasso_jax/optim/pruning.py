"""Masks for the pruning baselines and the masked-retraining ablation: by magnitude, pixel-shuffled per unit,
and the one round plan of iterative magnitude pruning (Frankle & Carbin 2019; Frankle et al. 2020).

Masks are bool arrays of a kernel's shape, True where a weight is kept. Everything here is a pure function of its
arrays, traceable, so it runs under jit, inside a train step and on sharded parameters
(`blasso_jax.optim.pruning_transforms` applies the masks as optax transforms).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
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


def keep_count(density: float, size: int) -> int:
    """How many of `size` entries a `density` keeps: round(density · size)."""
    return round(density * size)


def top_magnitudes(kernel: jax.Array, keep: int | jax.Array) -> jax.Array:
    """True on the `keep` entries of largest |w| (ties: the lower flat index first); `keep` may be traced."""
    order = jnp.argsort(-jnp.abs(kernel).ravel(), stable=True)
    return jnp.zeros(kernel.size, bool).at[order].set(jnp.arange(kernel.size) < keep).reshape(kernel.shape)


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
    return _restricted_top(kernel, keep_count(check_density("density", density), kernel.size), within)


def _restricted_top(kernel: jax.Array, keep: int | jax.Array, within: jax.Array | None) -> jax.Array:
    if within is None:
        return top_magnitudes(kernel, keep)
    keep = jnp.minimum(keep, jnp.count_nonzero(within))
    return top_magnitudes(jnp.where(within, kernel, 0.0), keep) & within


def layer_masks(params: PyTree, density_first: float, density_rest: float, within: PyTree | None = None) -> PyTree:
    """`magnitude_mask` of every kernel (`density_first` for the first layer, `density_rest` for the others),
    None for the other leaves; `within` (a tree of masks or None) restricts each to its survivors."""
    first, rest = check_density("density_first", density_first), check_density("density_rest", density_rest)
    return masks_by_count(params, lambda is_first, size: keep_count(first if is_first else rest, size), within)


def masks_by_count(
    params: PyTree, count: Callable[[bool, int], int | jax.Array], within: PyTree | None = None
) -> PyTree:
    """The top-`count(is the first layer, size)` magnitude mask of every kernel (a leaf named `kernel`), restricted
    to its mask in `within` if given; None for the other leaves. `count` may return traced numbers."""
    within_flat = dict(jax.tree_util.tree_flatten_with_path(within)[0]) if within is not None else {}

    def mask(path, leaf):
        names = [str(getattr(entry, "key", entry)) for entry in path]
        if names[-1] != "kernel":
            return None
        return _restricted_top(leaf, count(names[0] == FIRST_LAYER, leaf.size), within_flat.get(path))

    return jax.tree_util.tree_map_with_path(mask, params)


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
    """Iterative magnitude pruning over a run (in epochs, or in steps: `in_steps`): a dense segment, then `rounds`
    pruning rounds, each `segment` long; round r keeps `keep(r)` of each layer (the first layer and the rest apart)
    and rewinds the survivors to their values after `rewind` (0: the initial weights), inside the dense segment."""

    rounds: int
    segment: int
    density_first: float
    density_rest: float
    rate: float
    rewind: int = 0

    def in_steps(self, steps_per_epoch: int) -> ImpPlan:
        """The plan with its segment and rewind point counted in steps instead of epochs."""
        return dataclasses.replace(self, segment=self.segment * steps_per_epoch, rewind=self.rewind * steps_per_epoch)

    @property
    def last_round_end(self) -> int:
        """When the last round prunes (at least 1): from then on every layer has its final density."""
        return max(self.rounds * self.segment, 1)

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


def imp_plan(epochs: int, density_first: float, density_rest: float, rate: float, rewind: int = 0) -> ImpPlan:
    """The round plan: as many rounds of pruning `rate` of the survivors as the sparser layer needs to reach its
    target, and `epochs` split into that many + 1 equal segments (a ValueError names valid epochs otherwise), with
    the survivors rewound to their weights after epoch `rewind`, which must lie inside the dense segment."""
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
    segment = epochs // (rounds + 1)
    if not 0 <= rewind < segment:
        raise ValueError(
            f"imp: rewind_epoch {rewind} is not inside the dense segment of {segment} epochs; choose 0 to {segment - 1}"
        )
    return ImpPlan(rounds, segment, density_first, density_rest, rate, rewind)
