"""What a trained network learned: locality of first-layer filters, description length, sparse export.

`locality` measures how local a dense first layer has become (Figure 4's claim, as numbers);
`description_length` is the paper's Theorem 2 bound in bits; `save_sparse`/`load_sparse` store
the kernels as (index, value) pairs, the size that bound is about.
"""

from __future__ import annotations

import functools
import io as _bytes_io
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from blasso_jax import io
from blasso_jax.optim import kernel_sizes, nonzero_counts

PyTree = Any

# Pixel-by-unit entries per chunk in `locality`: bounds its float32 working set to a few hundred MB.
_LOCALITY_CHUNK_PIXELS = 2**23
_SPARSE_FORMAT = "blasso_jax.sparse/1"


def _output_grid(image_shape: Sequence[int], stride: int) -> tuple[int, int] | None:
    """The (rows, cols) of a stride-`stride` layer's output map, or None when the image does not divide."""
    height, width = image_shape[:2]
    if height % stride or width % stride:
        return None
    return height // stride, width // stride


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
        raise ValueError(f"image_shape must be (height, width, channels), got {tuple(image_shape)!r}")
    return tuple(int(d) for d in image_shape)


def locality(
    kernel: Any, image_shape: Sequence[int], *, mass: float = 0.9, window: int = 9, stride: int = 2
) -> dict[str, Any]:
    """How local each unit of a dense first layer is, from its |w| summed over input channels as an H×W map.

    `kernel` is `[H*W*C, units]` (image order NHWC). Per unit: `centroid` (row, col), the |w|-weighted
    mean position; `radius`, the smallest Euclidean distance r from the centroid such that pixels
    within r hold at least `mass` of the unit's |w|; `window_share`, the share of |w| inside the
    `window`×`window` receptive field (stride `stride`, padding window//2) of the S-LOCAL unit at the
    same output position. Units are read as an `[H/stride, W/stride, k]` map, as S-FC orders them;
    `window_share` is None when the unit count is not (H/stride)(W/stride)·k. All-zero units get NaN
    and are left out of `summary`.
    """
    height, width, channels = _check_image_shape(image_shape)
    kernel = jnp.asarray(kernel)  # stays on device when it is a device array
    if kernel.ndim != 2 or kernel.shape[0] != height * width * channels:
        raise ValueError(
            f"kernel shape {kernel.shape} is not [H*W*C, units] = [{height * width * channels}, units] "
            f"for image_shape {(height, width, channels)}"
        )
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    if window < 1 or window % 2 == 0 or stride < 1:
        raise ValueError(f"window must be odd and >= 1 and stride >= 1, got window={window}, stride={stride}")
    units = kernel.shape[1]
    grid = _output_grid((height, width), stride)
    per_position = None
    if grid is not None and units % (grid[0] * grid[1]) == 0:
        per_position = units // (grid[0] * grid[1])

    # Fixed-size chunks of units (the last one zero-padded) so the jitted kernel compiles once.
    chunk = min(units, max(1, _LOCALITY_CHUNK_PIXELS // (height * width)))
    pieces = []
    for start in range(0, units, chunk):
        columns = kernel[:, start : start + chunk]
        if columns.shape[1] < chunk:
            columns = jnp.pad(columns, ((0, 0), (0, chunk - columns.shape[1])))
        pieces.append(
            _locality_chunk(
                columns,
                start,
                image_shape=(height, width, channels),
                mass=float(mass),
                window=window,
                stride=stride,
                grid_cols=grid[1] if per_position else 0,
                per_position=per_position or 0,
            )
        )
    centroid, radius, share = (np.concatenate([np.asarray(p[i]) for p in pieces])[:units] for i in range(3))
    share = share if per_position else None

    counted = ~np.isnan(radius)
    summary: dict[str, Any] = {
        "units": int(counted.sum()),
        "units_zero": int(units - counted.sum()),
        "mass": mass,
        "radius_median": float(np.median(radius[counted])) if counted.any() else None,
        "radius_mean": float(np.mean(radius[counted])) if counted.any() else None,
        "window_share_median": float(np.median(share[counted])) if share is not None and counted.any() else None,
        "window_share_random": None if share is None else random_window_share(image_shape, window, stride),
    }
    return {"centroid": centroid, "radius": radius, "window_share": share, "summary": summary}


@functools.partial(
    jax.jit, static_argnames=("image_shape", "mass", "window", "stride", "grid_cols", "per_position")
)
def _locality_chunk(kernel, first_unit, *, image_shape, mass, window, stride, grid_cols, per_position):
    """Centroid, radius and window share of a chunk of units, on device; elementwise sums, not matmuls,
    so that TF32 matmuls on GPUs cannot round the positions."""
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
    share = jnp.full(radius.shape, jnp.nan)
    if per_position:
        unit = first_unit + jnp.arange(weights.shape[0])
        out_row, out_col = unit // (grid_cols * per_position), (unit // per_position) % grid_cols
        half = window // 2
        in_rows = jnp.abs(jnp.arange(height)[None] - stride * out_row[:, None]) <= half
        in_cols = jnp.abs(jnp.arange(width)[None] - stride * out_col[:, None]) <= half
        inside = (weights.reshape(-1, height, width) * in_rows[:, :, None] * in_cols[:, None, :]).sum((1, 2))
        share = jnp.where(alive, inside / safe_total, jnp.nan)
    return jnp.where(alive[:, None], center, jnp.nan), jnp.where(alive, radius, jnp.nan), share


def _in_window(positions: np.ndarray, centers: np.ndarray, half: int) -> np.ndarray:
    """[n, len(positions)] float mask of positions within `half` of each center."""
    return (np.abs(positions[None, :] - centers[:, None]) <= half).astype(np.float64)


def random_window_share(image_shape: Sequence[int], window: int = 9, stride: int = 2) -> float:
    """The `window_share` of a filter with equal |w| on every pixel, averaged over positions: the chance level."""
    height, width, _ = _check_image_shape(image_shape)
    grid = _output_grid((height, width), stride)
    if grid is None:
        raise ValueError(f"image sides {height}x{width} are not divisible by stride {stride}")
    half = window // 2
    row_counts = _in_window(np.arange(height), stride * np.arange(grid[0]), half).sum(1)
    col_counts = _in_window(np.arange(width), stride * np.arange(grid[1]), half).sum(1)
    return float(row_counts.mean() * col_counts.mean() / (height * width))


def description_length(params: PyTree, *, bits: int = 32) -> dict[str, int | float]:
    """The paper's Theorem 2 description length of the kernels, in bits, next to the dense encoding's n·b.

    DL = k·b + ‖w‖₀·log₂(k·n) + 2·log₂(n), with k = ‖w‖₀ the non-zero kernel entries, n the kernel
    entries (the dense parameter count) and b = `bits` per value, computed as the expression reads
    (Theorem 2 of Neyshabur 2020, as the project's issue states it); at k = 0 the k·log₂ term is 0.
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


def save_sparse(path: str | os.PathLike, params: PyTree, batch_stats: PyTree | None = None) -> None:
    """Writes params (and BatchNorm statistics) to one `.npz`: kernels as flat non-zero indices and values.

    Other leaves are stored dense. Indices are uint32 when a kernel has fewer than 2³² entries, else
    int64. A non-zero is any entry whose bits are not all zero, so -0.0 survives and `load_sparse`
    returns the arrays bit for bit.
    """
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": _SPARSE_FORMAT, "trees": {}}
    trees = {"params": params} if batch_stats is None else {"params": params, "batch_stats": batch_stats}
    for tree_name, tree in trees.items():
        leaves = {}
        for key, value in traverse_util.flatten_dict(tree, sep="/").items():
            value = np.asarray(value)
            name = f"{tree_name}/{key}"
            sparse = key.split("/")[-1] == "kernel"
            leaves[key] = {"dtype": value.dtype.name, "shape": list(value.shape), "sparse": sparse}
            if sparse:
                flat = value.reshape(-1)
                indices = np.flatnonzero(flat.view(f"u{flat.dtype.itemsize}"))
                arrays[f"{name}:indices"] = indices.astype(np.uint32 if flat.size < 2**32 else np.int64)
                arrays[f"{name}:values"] = flat[indices]
            else:
                arrays[name] = value
        meta["trees"][tree_name] = leaves
    arrays["__meta__"] = np.array(json.dumps(meta))
    buffer = _bytes_io.BytesIO()
    np.savez(buffer, **arrays)
    io.atomic_write_bytes(path, buffer.getvalue())


def load_sparse(path: str | os.PathLike) -> tuple[PyTree, PyTree | None]:
    """(params, batch_stats) as `save_sparse` wrote them (batch_stats None if none were saved), as numpy arrays."""
    with np.load(path, allow_pickle=False) as archive:
        if "__meta__" not in archive.files:
            raise ValueError(f"{path} is not a sparse export (no __meta__ entry); write it with save_sparse")
        meta = json.loads(str(archive["__meta__"]))
        if meta.get("format") != _SPARSE_FORMAT:
            raise ValueError(f"{path} has format {meta.get('format')!r}; this reader knows {_SPARSE_FORMAT!r}")
        trees = {}
        for tree_name, leaves in meta["trees"].items():
            flat = {}
            for key, info in leaves.items():
                dtype = jnp.dtype(info["dtype"])  # jnp knows bfloat16, which numpy stores as raw bytes
                name = f"{tree_name}/{key}"
                if info["sparse"]:
                    value = np.zeros(math.prod(info["shape"]), dtype)
                    value[archive[f"{name}:indices"]] = archive[f"{name}:values"].view(dtype)
                    flat[key] = value.reshape(info["shape"])
                else:
                    flat[key] = archive[name].view(dtype).reshape(info["shape"])
            trees[tree_name] = traverse_util.unflatten_dict(flat, sep="/")
    return trees["params"], trees.get("batch_stats")
