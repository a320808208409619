"""Past one device: the (data, model) mesh, the sharding rules of the train state, the sharded training set.

Data parallelism spans every device of every process (`jax.distributed.initialize()` first); the
`model` axis splits each weight kernel along its output dimension, so K-way model parallelism
divides the kernels, their gradients and their optimizer state by K on every device.

Why the output dimension, for every kernel: the paper's large tensors are the dense kernels
(S-FC α=150: 3072 x 38,400 and 38,400 x 3,600), and a batch's activations are far smaller than
them (512 x 38,400 at most). Sharding each kernel's columns keeps every matmul local (the input
all-gathered over `model`, only activations move), and BatchNorm, ReLU and the β-LASSO update are
per unit or per entry, so they run on the shards as they are. XLA's SPMD partitioner inserts the
all-gathers from `NamedSharding`s alone; no model code changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA, MODEL = "data", "model"


def make_mesh(devices: Sequence[jax.Device] | None = None, model_parallel: int = 1) -> jax.sharding.Mesh:
    """A (data, model) mesh over `devices` (default: every device of every process), `model_parallel` wide.

    Raises:
      ValueError: if the number of devices is not a multiple of `model_parallel`.
    """
    devices = jax.devices() if devices is None else list(devices)
    if model_parallel < 1 or len(devices) % model_parallel:
        raise ValueError(
            f"model_parallel {model_parallel} does not divide the {len(devices)} devices; "
            f"valid: {', '.join(str(k) for k in range(1, len(devices) + 1) if len(devices) % k == 0)}"
        )
    shape = (len(devices) // model_parallel, model_parallel)
    axis_types = (jax.sharding.AxisType.Auto,) * 2
    return jax.make_mesh(shape, (DATA, MODEL), axis_types=axis_types, devices=devices)


def check_layout(batch_size: int, model_parallel: int, device_count: int) -> None:
    """A ValueError unless `model_parallel` divides `device_count` and the data axis divides `batch_size`."""
    if device_count % model_parallel:
        divisors = [k for k in range(1, device_count + 1) if device_count % k == 0]
        raise ValueError(
            f"model_parallel {model_parallel} does not divide the {device_count} devices; "
            f"valid: {', '.join(map(str, divisors))}"
        )
    data_parallel = device_count // model_parallel
    if batch_size % data_parallel:
        groups = f" of the data axis ({device_count} / model_parallel {model_parallel})"
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {data_parallel} devices"
            f"{groups if model_parallel > 1 else ''}; use a multiple of {data_parallel}"
        )


def _is_kernel(path) -> bool:
    return str(getattr(path[-1], "key", getattr(path[-1], "name", ""))) == "kernel"


def partition_spec(path, leaf: Any, model_parallel: int) -> P:
    """`P(None, …, "model")` for a kernel whose output dimension `model_parallel` divides; `P()` otherwise.

    The rule reads only the leaf's path and shape, so it covers the parameters and every optimizer
    state that mirrors them (momentum traces are stored under the same `…/kernel` paths).
    """
    shape = getattr(leaf, "shape", ())
    if model_parallel > 1 and _is_kernel(path) and len(shape) >= 2 and shape[-1] % model_parallel == 0:
        return P(*([None] * (len(shape) - 1)), MODEL)
    return P()


def state_shardings(tree: Any, mesh: jax.sharding.Mesh) -> Any:
    """A `NamedSharding` per leaf of `tree` (arrays or `jax.ShapeDtypeStruct`s) by `partition_spec`."""
    size = mesh.shape[MODEL]
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: NamedSharding(mesh, partition_spec(path, leaf, size)), tree
    )


def shard_state(tree: Any, mesh: jax.sharding.Mesh) -> Any:
    """`tree` (e.g. a TrainState) laid out by `state_shardings`, through a jitted copy (works across processes)."""
    return jax.jit(lambda t: t, out_shardings=state_shardings(tree, mesh))(tree)


def init_sharded(init_fn, key: jax.Array, mesh: jax.sharding.Mesh) -> Any:
    """`init_fn(key)` created directly in its sharded layout: no device ever holds a whole sharded kernel."""
    shardings = state_shardings(jax.eval_shape(init_fn, key), mesh)
    return jax.jit(init_fn, out_shardings=shardings)(key)


def device_bytes(tree: Any) -> dict[jax.Device, int]:
    """Bytes each addressable device holds of `tree`, read from the arrays' shards."""
    totals: dict[jax.Device, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            totals[shard.device] = totals.get(shard.device, 0) + shard.data.nbytes
    return totals


def shard_bytes(tree: Any, shardings: Any) -> int:
    """Bytes of one device's shard of `tree` (arrays or `ShapeDtypeStruct`s) under `shardings`."""
    leaves = jax.tree.leaves(tree)
    specs = jax.tree.leaves(shardings, is_leaf=lambda s: isinstance(s, jax.sharding.Sharding))
    return sum(math.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize for x, s in zip(leaves, specs))


def put_replicated(array: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
    """The same host array on every device of `mesh`, every process passing its own identical copy."""
    sharding = NamedSharding(mesh, P())
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def put_rows(array: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
    """`array` split by rows over the `data` axis (replicated over `model`): each device keeps 1/D of it.

    Rows are padded with zeros to a multiple of D; callers index only the first `len(array)` rows.
    Each process builds only the shards of its own devices from its host copy.
    """
    data_size = mesh.shape[DATA]
    padded = -(-len(array) // data_size) * data_size
    if padded != len(array):
        array = np.concatenate([array, np.zeros((padded - len(array), *array.shape[1:]), array.dtype)])
    sharding = NamedSharding(mesh, P(DATA))
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def gather_rows(rows: jax.Array, indices: jax.Array, mesh: jax.sharding.Mesh) -> jax.Array:
    """`rows[indices]` for rows split over `data` (`put_rows`), returned split over `data` as a batch is.

    Each device gathers the requested rows it holds (zeros elsewhere), and a reduce-scatter over
    `data` sums the exactly one non-zero contribution per row and hands each device its slice of
    the batch. It moves the batch (512 CIFAR images: 1.5 MB), never the training set, and gives the
    same rows as a gather from a replicated copy, so results do not depend on the layout. With
    one device group on "data" it is the plain gather (no mask, no collective).
    """
    if mesh.shape[DATA] == 1:
        return rows[indices]

    def local_gather(local_rows, indices):
        start = jax.lax.axis_index(DATA) * local_rows.shape[0]
        local = indices - start
        here = (local >= 0) & (local < local_rows.shape[0])
        picked = local_rows[jnp.clip(local, 0, local_rows.shape[0] - 1)]
        picked = jnp.where(here.reshape(-1, *([1] * (picked.ndim - 1))), picked, jnp.zeros((), picked.dtype))
        return jax.lax.psum_scatter(picked, DATA, tiled=True)

    return jax.shard_map(local_gather, mesh=mesh, in_specs=(P(DATA), P()), out_specs=P(DATA), axis_names={DATA})(
        rows, indices
    )


def fetch(tree: Any) -> Any:
    """`tree` as numpy on every process, gathering shards that live on other processes' devices (an array this
    process holds whole, as one device's copy of a replicated one, is read as it is: gathered, it would repeat)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)

    def whole(leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
            return jax.device_get(leaf)
        return multihost_utils.process_allgather(leaf, tiled=True)

    return jax.tree.map(whole, tree)


def one_copy(array: Any) -> Any:
    """A replicated array's copy on one local device, else `array` as it is: a computation on a replicated array
    runs on every device it is on, so measuring the training state's own copy repeats the work once per device."""
    if isinstance(array, jax.Array) and array.sharding.is_fully_replicated:
        return array.addressable_shards[0].data
    return array


def is_writer() -> bool:
    """Whether this process writes the run's files (metrics, results, figures): process 0 only."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Waits until every process reaches `name` (no-op in a single process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
