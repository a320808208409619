"""What a trained network learned: locality of first-layer filters and description length.

`locality` measures how local a dense first layer has become (Figure 4's claim, as numbers);
`description_length` is the paper's Theorem 2 bound in bits. `blasso_jax.sparse.export` stores the kernels as
(index, value) pairs, the size that bound is about.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from blasso_jax.analysis.locality import unit_locality
from blasso_jax.data.geometry import Geometry
from blasso_jax.models.counting import kernel_sizes, nonzero_counts

PyTree = Any

# Pixel-by-unit entries per chunk in `locality`: bounds its float32 working set to a few hundred MB.
_LOCALITY_CHUNK_PIXELS = 2**23
# The seed of the fixed pixel permutation (shuffled chance) and of the dense random filters (chance).
_SHUFFLE_SEED = 0
_CHANCE_UNITS = 1024


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
        raise ValueError(f"image_shape must be (height, width, channels), got {tuple(image_shape)!r}")
    return tuple(int(d) for d in image_shape)


def _check_locality_arguments(kernel: jax.Array, image_shape: Sequence[int], mass: float, window: int) -> tuple:
    """(H, W, C), after checking the kernel's shape against them, `mass` and `window`."""
    height, width, channels = _check_image_shape(image_shape)
    if kernel.ndim != 2 or kernel.shape[0] != height * width * channels:
        raise ValueError(
            f"kernel shape {kernel.shape} is not [H*W*C, units] = [{height * width * channels}, units] "
            f"for image_shape {(height, width, channels)}"
        )
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return height, width, channels


def locality(
    kernel: Any, image_shape: Sequence[int], *, mass: float = 0.9, window: int = 9, key: jax.Array | None = None
) -> dict[str, Any]:
    """How local each unit of a dense first layer is, from its |w| summed over input channels as an H×W map.

    Every number is a property of one unit's own map, so permuting the hidden units (which leaves an
    S-FC network's function unchanged) permutes the per-unit arrays and leaves `summary` as it is.

    Args:
      kernel: `[H*W*C, units]`, inputs in image order (NHWC), as S-FC's first layer.
      image_shape: `(H, W, C)`.
      mass: the share of |w| the radius must hold.
      window: side of the square window, 9 by default: the receptive field of an S-LOCAL unit (at
        most the image's shorter side; a larger one is clamped to it, and `summary['window']` says so).
      key: the PRNG key of the per-unit permutation null (`blasso_jax.analysis.locality`); None: `key(0)`.

    Returns:
      A dict of per-unit arrays and a `summary`. `centroid` (row, col) is the |w|-weighted mean
      position; `radius` the smallest distance r from it such that pixels within r hold at least
      `mass` of |w|; `window_share` the largest share of |w| inside any `window`×`window` square of
      the image (1.0 for a filter an S-LOCAL unit could have). `window_share_shuffled` is the same
      share after one fixed random permutation of pixel positions, applied to every unit: the same
      weights with their spatial arrangement destroyed, the chance level of sparse filters. All-zero
      units get NaN and are left out of `summary`, which also gives the medians of dense Gaussian
      random filters of the same shape (`*_chance`).
      Each unit against its own permutation null (`locality.unit_locality`) adds `window_share_null`,
      `ratio`, `ipr` and `nonzero_sites` per unit, and `ratio_median`, `ratio_ge2_fraction`, `ipr_median`,
      `ipr_top_half_mean`, `ipr_random`, `ipr_ge4x_fraction`, `window_share_null_median` and `ratio_units`
      (units with >= 5 non-zero pixels) to `summary`.
    """
    kernel = jnp.asarray(kernel)  # stays on device when it is a device array
    height, width, channels = _check_locality_arguments(kernel, image_shape, mass, window)
    window = min(window, height, width)
    per_unit = _locality_per_unit(kernel, (height, width, channels), float(mass), window)
    counted = ~np.isnan(per_unit["radius"])
    chance = _dense_random_chance((height, width, channels), float(mass), window)

    def median(values: np.ndarray) -> float | None:
        return float(np.median(values[counted])) if counted.any() else None

    summary: dict[str, Any] = {
        "units": int(counted.sum()),
        "units_zero": int((~counted).sum()),
        "mass": mass,
        "window": window,
        "radius_median": median(per_unit["radius"]),
        # math.fsum is exactly rounded, so the mean does not depend on the order of the units either.
        "radius_mean": math.fsum(per_unit["radius"][counted]) / counted.sum() if counted.any() else None,
        "radius_chance": chance["radius"],
        "window_share_median": median(per_unit["window_share"]),
        "window_share_shuffled": median(per_unit["window_share_shuffled"]),
        "window_share_chance": chance["window_share"],
    }
    return _with_permutation_null({**per_unit, "summary": summary}, kernel, (height, width, channels), window, key)


def _with_permutation_null(result: dict, kernel, image_shape: tuple[int, int, int], window: int, key) -> dict:
    """`locality`'s result with the per-unit ratio to each unit's own permutation null (`locality`)."""
    null = unit_locality(
        kernel, Geometry.image(image_shape, window), jax.random.key(_SHUFFLE_SEED) if key is None else key
    )
    summary = {
        **result["summary"],
        "ratio_units": null["summary"]["units"],
        "ratio_median": null["summary"]["ratio_median"],
        "ratio_ge2_fraction": null["summary"]["ratio_ge2_fraction"],
        "window_share_null_median": null["summary"]["null_median"],
        **{k: null["summary"][k] for k in ("ipr_median", "ipr_top_half_mean", "ipr_random", "ipr_ge4x_fraction")},
    }
    unit_arrays = {"window_share_null": null["null"], "ratio": null["ratio"], "ipr": null["ipr"]}
    return {**result, **unit_arrays, "nonzero_sites": null["nonzeros"], "summary": summary}


def first_layer_locality(
    kernel: Any, image_shape: Sequence[int], geometry: Geometry | None = None, key: jax.Array | None = None
) -> dict[str, Any]:
    """The locality summary the trainer records: `locality`'s on images (geometry None or an image), else the
    per-unit measure of `blasso_jax.analysis.locality` on the ring or torus, with the geometry's kind and window.

    Args:
      kernel: `[inputs, units]` of a dense first layer.
      image_shape: `(H, W, C)` of the inputs.
      geometry: where the inputs sit (`Dataset.geometry`); None for images.
      key: the PRNG key of the permutation null; None: `key(0)`.

    Returns:
      The summary dict (JSON-ready but for NaN, which the trainer turns into None).
    """
    if geometry is None or geometry.kind == "image":
        window = 9 if geometry is None else geometry.window
        return locality(kernel, image_shape, window=window, key=key)["summary"]
    key = jax.random.key(_SHUFFLE_SEED) if key is None else key
    return {"geometry": geometry.kind, "window": geometry.window, **unit_locality(kernel, geometry, key)["summary"]}


def _locality_per_unit(kernel: jax.Array, image_shape: tuple[int, int, int], mass: float, window: int) -> dict:
    """Per-unit centroid, radius and window shares, in fixed-size chunks of units so that one compile serves all."""
    height, width, _ = image_shape
    units = kernel.shape[1]
    chunk = min(units, max(1, _LOCALITY_CHUNK_PIXELS // (height * width)))
    shuffle = jnp.asarray(np.random.default_rng(_SHUFFLE_SEED).permutation(height * width))
    pieces = []
    for start in range(0, units, chunk):
        columns = kernel[:, start : start + chunk]
        if columns.shape[1] < chunk:
            columns = jnp.pad(columns, ((0, 0), (0, chunk - columns.shape[1])))
        pieces.append(_locality_chunk(columns, shuffle, image_shape=image_shape, mass=mass, window=window))
    names = ("centroid", "radius", "window_share", "window_share_shuffled")
    return {name: np.concatenate([np.asarray(p[i]) for p in pieces])[:units] for i, name in enumerate(names)}


@functools.partial(jax.jit, static_argnames=("image_shape", "mass", "window"))
def _locality_chunk(kernel, shuffle, *, image_shape, mass, window):
    """Centroid, radius and window shares of a chunk of units, on device; elementwise sums and box filters, not
    matmuls, so that TF32 matmuls on GPUs cannot round the positions."""
    height, width, channels = image_shape
    weights = jnp.abs(kernel.astype(jnp.float32)).reshape(height * width, channels, -1).sum(1).T  # [n, H*W]
    rows = jnp.repeat(jnp.arange(height, dtype=jnp.float32), width)
    cols = jnp.tile(jnp.arange(width, dtype=jnp.float32), height)
    total = weights.sum(1)
    alive = total > 0
    safe_total = jnp.where(alive, total, 1.0)
    center = jnp.stack([(weights * rows).sum(1), (weights * cols).sum(1)], axis=1) / safe_total[:, None]
    distance = jnp.hypot(rows[None] - center[:, :1], cols[None] - center[:, 1:])
    order = jnp.argsort(distance, axis=1)
    cumulative = jnp.cumsum(jnp.take_along_axis(weights, order, axis=1), axis=1)
    first = jnp.argmax(cumulative >= mass * cumulative[:, -1:], axis=1)
    radius = jnp.take_along_axis(jnp.take_along_axis(distance, order, axis=1), first[:, None], axis=1)[:, 0]

    def best_window_share(maps):  # the largest box-filter sum over every window placed inside the image
        boxes = jax.lax.reduce_window(
            maps.reshape(-1, height, width), 0.0, jax.lax.add, (1, window, window), (1, 1, 1), "VALID"
        )
        return jnp.where(alive, boxes.max((1, 2)) / safe_total, jnp.nan)

    return (
        jnp.where(alive[:, None], center, jnp.nan),
        jnp.where(alive, radius, jnp.nan),
        best_window_share(weights),
        best_window_share(weights[:, shuffle]),
    )


@functools.lru_cache(maxsize=16)
def _dense_random_chance(image_shape: tuple[int, int, int], mass: float, window: int) -> dict[str, float]:
    """Median radius and window share of dense Gaussian random filters (fixed seed): what no learning gives."""
    filters = np.random.default_rng(_SHUFFLE_SEED).standard_normal((math.prod(image_shape), _CHANCE_UNITS))
    per_unit = _locality_per_unit(jnp.asarray(filters, jnp.float32), image_shape, mass, window)
    return {"radius": float(np.median(per_unit["radius"])), "window_share": float(np.median(per_unit["window_share"]))}


def description_length(params: PyTree, *, bits: int = 32) -> dict[str, int | float]:
    """The paper's Theorem 2 description length of the kernels, in bits, next to the dense encoding's n·b.

    DL = k·b + ‖w‖₀·log₂(k·n) + 2·log₂(n), with k = ‖w‖₀ the non-zero kernel entries, n the kernel
    entries (the dense parameter count) and b = `bits` per value, computed as the expression reads
    (Theorem 2 of Neyshabur 2020, as written in its statement); at k = 0 the k·log₂ term is 0.
    """
    if bits < 1:
        raise ValueError(f"bits per value must be >= 1, got {bits}")
    k = sum(int(v) for v in nonzero_counts(params).values())
    n = sum(kernel_sizes(params).values())
    if n == 0:
        raise ValueError("params hold no kernel leaves; description_length counts kernels only")
    address_bits = k * math.log2(k * n) if k else 0.0
    total = k * bits + address_bits + 2 * math.log2(n)
    return {
        "nonzeros": k,
        "entries": n,
        "bits_per_value": bits,
        "bits": total,
        "dense_bits": n * bits,
        "ratio": total / (n * bits),
    }
