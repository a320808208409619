"""Sparse inference: dense-layer kernels stored as per-unit gathered indices, run under `jit` in eval mode.

β-LASSO leaves a network's first layer at 0.3-50 % density, but `model.apply` still multiplies the dense
matrix. `sparsify` keeps each dense layer (2-D kernel) whose density is low enough as a `GatherKernel`
(the non-zero inputs of every unit and their weights) and leaves the rest as they are; `sparse_apply`
runs the unchanged flax model with every such layer's matmul replaced by gathers, so BatchNorm (running
statistics), dtypes, flattening and biases are the model's own. Convolutional and locally-connected
layers stay dense.

**The representation, chosen by measurement** (2 CPU cores shared with training runs, jax 0.10.2;
docs/performance.md has the commands and tables). S-FC's first layer (3072 × 256α, random per-unit
masks) was timed against `x @ W` in six forms: a per-unit gather padded to the largest count,
`x[:, idx] * w` summed (plain, as einsum, or as rows of `x.T`), BCOO (`jax.experimental.sparse`, whose CPU
matmul lowers to gathers and a scatter-add), `segment_sum` over the non-zeros, and a loop gathering one
whole row of `x.T` per non-zero (one-off scripts, numbers in docs/performance.md). XLA's CPU gather and
scatter cost a few ns per element unless an index moves a contiguous row: at batch 512 and 0.3 % BCOO was
1.3-2.1× faster than dense but 6-26× slower at 1-3 %, and the padded gathers were 1-3× slower than dense;
padding to the largest count doubles the work (random counts peak at twice their mean, β-LASSO's at 3.7×).
What wins is the row loop over units ranked by count (`GatherKernel`): step k gathers the k-th input row
of every unit that has one and adds it, scaled, into that unit's output row, over chunks of `_CHUNK`
images so the accumulator stays in cache. On S-FC's layer 1 alone it is 3.4-9.3× faster than dense at
batch 1 and 5-6× at batch 512 (0.3 %), and wins up to 5-10 % density (the table at `_GATHER_BELOW`;
whole networks in docs/performance.md). Groups of steps padded to a common width (`_SLACK`, `_NARROW`),
scanned 8 steps per iteration (`_UNROLL`), keep the code, and the compile time, small. Above the density
`gather_below` gives for the batch size, a layer stays dense. At batch 1 one gather of every product,
summed per group without any loop, is faster still (`_flat_gather`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct, traverse_util

from blasso_jax.optim.pruning import check_density

PyTree = Any

# Images per chunk of the row-gather loop: the [units, chunk] accumulator of a 1024-unit layer is 128 KB,
# inside L2. Measured at batch 512, S-FC α=4, 0.3 %: chunks of 32 / 64 / 128 / none took 4.6 / 4.9 / 6.2 /
# 15.3 ms (dense 31.9 ms); α=1: 1.5 / 1.8 / 1.9 / 2.3 ms (dense 9.3 ms).
_CHUNK = 32
# A group of steps is padded to its first step's width while no step is narrower than 1/_SLACK of it; the
# steps of at most _NARROW units form one group whatever their widths (the tail of the longest units), run
# as one gather: β-LASSO's layer 1 (S-FC α=1, 1.4 %, counts up to 160) has 14 groups instead of 18, the
# last of 63 steps of widths 1-3, and S-FC at batch 1 ran in 173 µs instead of 269 µs (dense 698 µs).
_SLACK = 1.25
_NARROW = 8
# Steps per loop iteration of a group's scan: XLA's CPU while loop costs µs per iteration. On the same
# layer (groups of up to 27 steps) S-FC at batch 1 took 331 / 210 / 175 / 178 µs with 1 / 4 / 16 / all
# steps unrolled, compiling in 1.7 / 2.3 / 3.3 / 3.3 s; at batch 512 7.1 / 6.3 / 6.1 / 6.3 ms (dense 8.9
# ms). 8 takes most of the gain and bounds the compile time of layers with hundreds of steps.
_UNROLL = 8
# Density below which a gather layer beats the dense matmul, by batch size (first entry with batch <= b).
# `python -m experiments.benchmark --sparse --crossover --sparse_alphas=1,4 --densities=0.003,0.01,0.02,0.03,0.05,
# 0.1,0.2,0.3 --batch_sizes=1,16,64,512` at commit 18e51e6 (2 cores shared with training runs) gave
# dense time / gather time for S-FC's layer 1 alone (3072 x 256α, random masks):
#   α  batch  0.3%   1%    2%    3%    5%    10%   20%   30%
#   1      1  3.43  2.86  2.36  2.10  1.83  0.84  0.58  0.48
#   1     16  4.92  3.59  2.73  2.62  2.29  1.24  0.83  0.69
#   1     64  4.13  2.24  1.82  1.66  1.25  1.01  0.69  0.54
#   1    512  5.07  2.71  2.03  1.43  1.16  0.87  0.58  0.45
#   4      1  9.30  5.40  3.97  2.30  1.60  1.00  0.60  0.39
#   4     16  11.1  6.56  4.56  3.73  2.72  1.80  1.18  0.91
#   4     64  6.10  3.44  2.88  2.65  2.14  1.16  0.93  0.45
#   4    512  6.33  3.90  2.47  1.59  1.52  0.93  0.52  0.40
# Each threshold is the largest density where the gather was at least 10 % faster at both widths.
_GATHER_BELOW = ((1, 0.05), (16, 0.10), (math.inf, 0.05))


@struct.dataclass
class GatherKernel:
    """A dense layer's `[inputs, units]` kernel as the non-zero inputs of each unit, in groups of steps.

    Units are ranked by their number of non-zeros, most first (`rank[u]` is unit u's rank). Step k holds
    the k-th non-zero (input index, weight) of every unit that has more than k, in rank order. Consecutive
    steps form a group padded (input 0, weight 0) to the width of its first step, as long as no step in it
    is narrower than 1/`_SLACK` of that; `rows` and `values` hold the groups one after the other, each
    `steps × width` row-major, and `groups` their (steps, width). Groups bound the code (compile time) by
    log_SLACK(units) instead of the largest count, at ≤ 25 % padding.
    """

    rows: jax.Array  # int32 [Σ steps·width]: input indices
    values: jax.Array  # [Σ steps·width]: the weights, in the kernel's dtype
    rank: jax.Array  # int32 [units]
    groups: tuple[tuple[int, int], ...] = struct.field(pytree_node=False)
    shape: tuple[int, int] = struct.field(pytree_node=False)


def gather_kernel(kernel: Any) -> GatherKernel:
    """The `GatherKernel` of a dense layer's kernel: each unit's non-zero inputs, ranked and grouped (see there).

    Args:
      kernel: `[inputs, units]`, numpy or a concrete jax array (not a tracer: the structure is static).

    Returns:
      A `GatherKernel`; `gather_matmul(x, it)` equals `x @ kernel` up to summation order.

    Examples:
      >>> k = gather_kernel(np.array([[0.0, 2.0, 0.0], [3.0, 4.0, 0.0]], np.float32))
      >>> k.groups, k.rows.tolist(), k.values.tolist(), k.rank.tolist()
      (((2, 2),), [0, 1, 1, 0], [2.0, 3.0, 4.0, 0.0], [1, 0, 2])
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"a gather kernel is built from a 2-D [inputs, units] kernel, got shape {kernel.shape}")
    nonzero = kernel != 0
    counts = nonzero.sum(0)
    order = np.argsort(-counts, kind="stable")  # units by count, most first; ties keep their order
    sorted_counts = counts[order]
    # Row-major nonzero of the transposed, reordered kernel: each unit's inputs ascending, units in rank order.
    unit, inputs = np.nonzero(nonzero[:, order].T)
    step = np.arange(len(unit)) - np.repeat(np.cumsum(sorted_counts) - sorted_counts, sorted_counts)
    values = kernel[:, order][inputs, unit]
    groups = _groups(sorted_counts)
    rows, weights = [], []
    for first, steps, width in groups:
        block_rows = np.zeros((steps, width), np.int32)
        block_values = np.zeros((steps, width), kernel.dtype)
        inside = (step >= first) & (step < first + steps)
        block_rows[step[inside] - first, unit[inside]] = inputs[inside]
        block_values[step[inside] - first, unit[inside]] = values[inside]
        rows.append(block_rows.reshape(-1))
        weights.append(block_values.reshape(-1))
    return GatherKernel(
        jnp.asarray(np.concatenate(rows) if rows else np.zeros(0, np.int32)),
        jnp.asarray(np.concatenate(weights) if weights else np.zeros(0, kernel.dtype)),
        jnp.asarray(np.argsort(order).astype(np.int32)),
        tuple((steps, width) for _, steps, width in groups),
        tuple(kernel.shape),
    )


def _groups(sorted_counts: np.ndarray) -> list[tuple[int, int, int]]:
    """(first step, steps, width) of each group, for unit counts sorted descending."""
    widths = [int((sorted_counts > k).sum()) for k in range(int(sorted_counts.max(initial=0)))]
    groups, first = [], 0
    while first < len(widths):
        steps = 1
        while first + steps < len(widths) and (
            widths[first] <= _NARROW or widths[first + steps] * _SLACK >= widths[first]
        ):
            steps += 1
        groups.append((first, steps, widths[first]))
        first += steps
    return groups


def gather_matmul(x: jax.Array, kernel: GatherKernel, dtype: Any = None) -> jax.Array:
    """`x @ W` with W given as a `GatherKernel`: batch 1 as one gather, larger batches as the row loop.

    Args:
      x: `[batch, inputs]`.
      kernel: from `gather_kernel(W)`.
      dtype: the compute dtype (x and the weights are cast to it, as `nn.Dense` does); products are summed in
        at least float32. Default: x's dtype.

    Returns:
      `[batch, units]` in `dtype`; units without a non-zero give 0.

    Examples:
      >>> w = np.array([[0.0, 2.0, 0.0], [3.0, 4.0, 0.0]], np.float32)
      >>> gather_matmul(jnp.ones((2, 2)), gather_kernel(w)).tolist()
      [[3.0, 6.0, 0.0], [3.0, 6.0, 0.0]]
    """
    dtype = dtype or x.dtype
    accumulate = jnp.promote_types(dtype, jnp.float32)
    x = x.astype(dtype).astype(accumulate)
    values = kernel.values.astype(dtype).astype(accumulate)
    batch, units = x.shape[0], kernel.shape[1]
    if not kernel.groups:
        return jnp.zeros((batch, units), dtype)
    if batch == 1:
        return _flat_gather(x, kernel, values).astype(dtype)
    if batch <= _CHUNK:
        return _row_gather(x, kernel, values).astype(dtype)
    chunks = jnp.pad(x, ((0, -batch % _CHUNK), (0, 0))).reshape(-1, _CHUNK, x.shape[1])
    out = jax.lax.map(lambda rows: _row_gather(rows, kernel, values), chunks)
    return out.reshape(-1, units)[:batch].astype(dtype)


def _flat_gather(x: jax.Array, kernel: GatherKernel, values: jax.Array) -> jax.Array:
    """Batch 1: one gather of every (padded) product, each group summed over its steps, with no loop at all.

    Measured in S-FC at batch 1 (1000 calls interleaved): 119 / 195 / 124 µs against 179 / 243 / 189 µs for
    the row loop (α=1 0.3 %, α=4 0.3 %, β-LASSO's α=1 model; dense 575 / 1739 / 644 µs); at batch 4 the row
    loop won (236 against 292 µs, α=4).
    """
    products = x[:, kernel.rows] * values
    active = kernel.groups[0][1]
    total, start = jnp.zeros((x.shape[0], active), x.dtype), 0
    for steps, width in kernel.groups:
        block = products[:, start : start + steps * width].reshape(-1, steps, width).sum(1)
        total = total + jnp.pad(block, ((0, 0), (0, active - width)))
        start += steps * width
    return jnp.pad(total, ((0, 0), (0, kernel.shape[1] - active)))[:, kernel.rank]


def _row_gather(x: jax.Array, kernel: GatherKernel, values: jax.Array) -> jax.Array:
    """One batch chunk: each step gathers `width` contiguous rows of `x.T`, scales and adds them.

    Wide groups run as a scan over their steps (`_UNROLL` steps per loop iteration: XLA's CPU while loop costs
    tens of µs per layer otherwise); a narrow group (the long tail of a few units' counts) as one gather of
    all its rows and a sum over its steps.
    """
    x_t = x.T
    active = kernel.groups[0][1]

    def add_step(total, step):
        step_rows, step_values = step
        # The barrier keeps the gather a copy of whole rows; fused into the add, XLA gathers element by element.
        gathered = jax.lax.optimization_barrier(x_t[step_rows])
        return total.at[: step_rows.shape[0]].add(gathered * step_values[:, None]), None

    total, start = jnp.zeros((active, x.shape[0]), x.dtype), 0
    for steps, width in kernel.groups:
        rows = kernel.rows[start : start + steps * width]
        block_values = values[start : start + steps * width].reshape(steps, width, 1)
        if width <= _NARROW:
            block = (x_t[rows].reshape(steps, width, -1) * block_values).sum(0)
            total = total.at[:width].add(block)
        else:
            block = (rows.reshape(steps, width), block_values[..., 0])
            total, _ = jax.lax.scan(add_step, total, block, unroll=min(steps, _UNROLL))
        start += steps * width
    return jnp.pad(total, ((0, kernel.shape[1] - active), (0, 0)))[kernel.rank].T


@struct.dataclass
class SparseModel:
    """`variables` without the kernels in `kernels` (layer path -> `GatherKernel`); see `sparsify`."""

    variables: PyTree
    kernels: dict[str, GatherKernel]


def gather_below(batch_size: int) -> float:
    """The density under which a gather layer beats the dense matmul at `batch_size` (measured: `_GATHER_BELOW`).

    Examples:
      >>> gather_below(1), gather_below(8), gather_below(512)
      (0.05, 0.1, 0.05)
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return next(density for batch, density in _GATHER_BELOW if batch_size <= batch)


def sparsify(variables: PyTree, *, batch_size: int = 1, dense_above: float | None = None) -> SparseModel:
    """A trained model's variables with each sparse-enough dense-layer kernel as a `GatherKernel`.

    Args:
      variables: `{'params': ..., 'batch_stats': ...}` of a `blasso_jax` model (numpy or jax arrays).
      batch_size: the batch `sparse_apply` will mostly run; picks the measured density threshold.
      dense_above: keep a layer dense when its density (non-zeros / entries) exceeds this, in (0, 1];
        None uses the threshold measured for `batch_size`; 1.0 makes every dense layer a gather layer.

    Returns:
      A `SparseModel` (a pytree: pass it to a jitted `sparse_apply`). Convolutional and locally-connected
      kernels, and dense ones above the threshold, stay in its `variables` unchanged.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from blasso_jax.models import create_model
      >>> model = create_model("s-fc", alpha=1, image_shape=(8, 8, 3))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)
      >>> sorted(sparsify(variables, dense_above=1.0).kernels)
      ['layer1', 'layer2', 'layer3']
    """
    threshold = gather_below(batch_size) if dense_above is None else check_density("dense_above", dense_above)
    flat = traverse_util.flatten_dict(dict(variables["params"]), sep="/")
    kernels = {}
    for key, kernel in flat.items():
        layer, leaf = key.rpartition("/")[::2]
        if leaf == "kernel" and kernel.ndim == 2 and np.count_nonzero(kernel) <= threshold * kernel.size:
            kernels[layer] = gather_kernel(kernel)
    params = traverse_util.unflatten_dict(
        {k: v for k, v in flat.items() if k.rpartition("/")[0] not in kernels or not k.endswith("/kernel")}, sep="/"
    )
    return SparseModel({**variables, "params": params}, kernels)


def sparse_apply(model: nn.Module, sparse: SparseModel, images: jax.Array) -> jax.Array:
    """The logits of `model` in eval mode (BatchNorm running statistics) from a `SparseModel`.

    Args:
      model: the flax module the variables belong to (`create_model`, `rundir.load_run`).
      sparse: from `sparsify`.
      images: `[batch, H, W, C]`, normalised as in training.

    Returns:
      `[batch, classes]` float32 logits, equal to `model.apply(variables, images, train=False)` up to the
      rounding of a different summation order.

    Examples:
      >>> import functools
      >>> apply = jax.jit(functools.partial(sparse_apply, model))  # doctest: +SKIP
      >>> logits = apply(sparsify(variables), images)  # doctest: +SKIP
    """
    with nn.intercept_methods(_gather_layers(sparse.kernels)):
        return model.apply(sparse.variables, images, train=False)


def _gather_layers(kernels: Mapping[str, GatherKernel]):
    """A flax method interceptor running the `nn.Dense` layers named in `kernels` as gathers."""

    def intercept(next_fun, args, kwargs, context):
        module = context.module
        name = "/".join(module.path) if isinstance(module, nn.Dense) else None
        if context.method_name != "__call__" or name not in kernels:
            return next_fun(*args, **kwargs)
        (x,) = args
        dtype = module.dtype or jnp.result_type(x, kernels[name].values)
        y = gather_matmul(x.reshape(-1, x.shape[-1]), kernels[name], dtype)
        if module.use_bias:
            y = y + module.get_variable("params", "bias").astype(dtype)
        return y.reshape(*x.shape[:-1], y.shape[-1])

    return intercept


__all__ = [
    "GatherKernel",
    "SparseModel",
    "gather_below",
    "gather_kernel",
    "gather_matmul",
    "sparse_apply",
    "sparsify",
]
