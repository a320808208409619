"""The sparse export: one `.npz` holding a trained model's weights as (index, value) pairs and all it needs to run.

A run writes it as `<workdir>/sparse_params.npz`; `examples/numpy_forward.py` runs it with numpy alone.
Format `blasso_jax.sparse`, version 2 (`docs/sparse_format.md` is the same text with an example):

- `__meta__`: a 0-d unicode array holding JSON: `format` ("blasso_jax.sparse"), `version` (2), `leaves`
  (per array name below: `dtype`, `shape`, `sparse`), and, when the model is known, `model` and `input`:
  - `model`: `name`, `config` (the run's `TrainConfig` as a dict), `num_classes`, `class_names`,
    `image_shape` [H, W, C], `compute_dtype`, `batch_norm_epsilon`, and `layers` (stack models; null for
    resnet18): in order, `{name, kind: dense|conv|local, features, kernel_size, stride, padding,
    batch_norm: "norm<i>" or null, bias: bool}`; the last is the classifier (dense, with a bias, no
    BatchNorm). Dense layers flatten their input in NHWC order; every other layer is followed by
    BatchNorm and ReLU.
  - `input`: inputs `x` are fed as `(x * scale - mean) / std` per channel (`scale` 1/255 for uint8 images,
    1 for float inputs such as NLGP; `mean`, `std` of the training split), after moving pixels by
    `input/pixel_permutation` (pixel i of the fed image is pixel `permutation[i]` of the original) when
    `pixel_permutation` is true.
- `params/<path>/kernel:gaps` and `:values`, for a kernel stored sparse (`sparse: true`): its non-zero
  entries' flat row-major indices into its shape, as gaps (the first index, then each index minus the
  one before, in the smallest unsigned dtype that holds them: the indices are their running sum), and
  their values. A kernel whose non-zeros would take more bytes than the whole array (a dense layer) is
  stored whole under `params/<path>/kernel` (`sparse: false`). Dense kernels are `[inputs, units]`,
  conv kernels `[kh, kw, C_in, C_out]`, locally connected ones `[H_out, W_out, kh·kw·C_in, C_out]`
  with the input channel slowest in the patch axis.
- `params/<path>` (BatchNorm `scale`, `bias`; the classifier's `bias`) and `batch_stats/<path>`
  (BatchNorm `mean`, `var`): stored whole. BatchNorm in eval mode is `(z - mean) / sqrt(var + eps) *
  scale + bias`.
- The archive is deflate-compressed (`np.savez_compressed`); `np.load` reads it as any `.npz`.
- bfloat16 arrays are stored as their raw uint16 bits (`dtype` in `leaves` says bfloat16): shift left by
  16 and view as float32 to read them without ml_dtypes.

A non-zero is any entry whose bits are not all zero, so -0.0 survives and `load` returns every array
bit for bit. Version 1 files (`"format": "blasso_jax.sparse/1"`, no model description) still load.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import warnings
import zipfile
import zlib
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from blasso_jax.common import files
from blasso_jax.config.train_config import TrainConfig, model_from_config
from blasso_jax.data.permute import PERMUTATION_SEED, pixel_permutation
from blasso_jax.models.networks import STACK_MODELS, layer_specs

PyTree = Any

FORMAT = "blasso_jax.sparse"
VERSION = 2
_VERSION_1 = "blasso_jax.sparse/1"
BATCH_NORM_EPSILON = 1e-5  # flax.linen.BatchNorm's default, which every model uses
PERMUTATION_KEY = "input/pixel_permutation"
_GAP_DTYPES = (np.uint8, np.uint16, np.uint32, np.uint64)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What, besides the weights, it takes to run a model: its config and its data's classes and statistics."""

    config: dict[str, Any]  # `TrainConfig.to_dict()`
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]  # per channel, of x / 255 on the training split
    std: tuple[float, ...]
    pixel_permutation: tuple[int, ...] | None = None  # [H*W], for runs with --permute_pixels
    input_scale: float = 1 / 255  # uint8 images are divided by 255; float inputs (NLGP) are used as they are

    def __post_init__(self):  # the config as JSON gives it back (tuples become lists), so a round trip is equal
        object.__setattr__(self, "config", json.loads(json.dumps(self.config)))


def model_info(config: TrainConfig, dataset: Any) -> ModelInfo:
    """The `ModelInfo` of a run: its config and its dataset's classes, image shape and channel statistics.

    Args:
      config: the run's `TrainConfig`.
      dataset: a `blasso_jax.data.datasets.Dataset` (or anything with `num_classes`, `class_names`, `image_shape`,
        `mean`, `std` and `x_train`, whose dtype tells uint8 images from float inputs).
    """
    height, width, _ = dataset.image_shape
    permutation = pixel_permutation(PERMUTATION_SEED, height, width) if config.permute_pixels else None
    return ModelInfo(
        config=config.to_dict(),
        num_classes=int(dataset.num_classes),
        class_names=tuple(str(c) for c in dataset.class_names),
        image_shape=tuple(int(d) for d in dataset.image_shape),
        mean=tuple(float(m) for m in dataset.mean),
        std=tuple(float(s) for s in dataset.std),
        pixel_permutation=None if permutation is None else tuple(int(i) for i in permutation),
        input_scale=1 / 255 if dataset.x_train.dtype == np.uint8 else 1.0,
    )


@dataclasses.dataclass(frozen=True)
class Export:
    """What `load` returns: numpy `params`, `batch_stats` (None if none were saved), `info` (None if the file has
    no model description) and the file's `__meta__`."""

    params: PyTree
    batch_stats: PyTree | None
    info: ModelInfo | None
    meta: dict[str, Any]

    @property
    def variables(self) -> dict[str, PyTree]:
        """`{'params': ..., 'batch_stats': ...}` as `model.apply` takes them."""
        return {"params": self.params, **({"batch_stats": self.batch_stats} if self.batch_stats is not None else {})}


def save(
    path: str | os.PathLike,
    params: PyTree,
    batch_stats: PyTree | None = None,
    *,
    info: ModelInfo | None = None,
    warn_if_dense: bool = True,
):
    """Writes params, BatchNorm statistics and the model's description to one `.npz`, atomically.

    Args:
      path: the file to write (replaced whole, never half-written).
      params: a flax parameter tree; every `kernel` leaf is stored as its non-zero entries.
      batch_stats: BatchNorm running statistics, or None.
      info: the model's config and data description (`numpy_forward.py` needs it); None stores weights only.
      warn_if_dense: warn when no kernel has a zero entry (training, which exports every run, turns it off).

    Warns (and still writes) when no kernel has a zero entry: the export is then larger than the arrays.

    Examples:
      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "weights.npz")
      >>> save(path, {"layer1": {"kernel": np.array([[0.0, 1.5]], np.float32)}})
      >>> load(path).params["layer1"]["kernel"].tolist()
      [[0.0, 1.5]]
    """
    arrays: dict[str, np.ndarray] = {}
    leaves: dict[str, dict[str, Any]] = {}
    zeros = 0
    trees = {"params": params, **({"batch_stats": batch_stats} if batch_stats is not None else {})}
    for tree_name, tree in trees.items():
        for key, value in traverse_util.flatten_dict(tree, sep="/").items():
            value, name = np.asarray(value), f"{tree_name}/{key}"
            leaves[name] = {"dtype": value.dtype.name, "shape": list(value.shape), "sparse": False}
            if key.split("/")[-1] == "kernel":
                zeros += value.size - _store_kernel(name, value, arrays, leaves[name])
            else:
                arrays[name] = _storable(value)
    meta: dict[str, Any] = {"format": FORMAT, "version": VERSION, "leaves": leaves}
    if info is not None:
        meta.update(_describe(info, params))
        if info.pixel_permutation is not None:
            arrays[PERMUTATION_KEY] = np.asarray(info.pixel_permutation, np.int64)
    if zeros == 0 and warn_if_dense:
        warnings.warn(
            f"{path}: no kernel entry is zero, so the sparse export is larger than the dense arrays", stacklevel=2
        )
    arrays["__meta__"] = np.array(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    files.atomic_write_bytes(path, buffer.getvalue())


def _store_kernel(name: str, value: np.ndarray, arrays: dict[str, np.ndarray], spec: dict[str, Any]) -> int:
    """Stores a kernel as `:gaps` and `:values` when that is smaller than the whole array, else whole; returns
    its non-zero count. A non-zero is any entry whose bits are not all zero (so -0.0 is kept)."""
    flat = value.reshape(-1)
    indices = np.flatnonzero(flat.view(f"u{flat.dtype.itemsize}"))
    gaps = np.diff(indices, prepend=0)
    gaps = gaps.astype(next(t for t in _GAP_DTYPES if gaps.max(initial=0) <= np.iinfo(t).max))
    if indices.size * (gaps.itemsize + flat.itemsize) < flat.nbytes:
        spec["sparse"] = True
        arrays[f"{name}:gaps"] = gaps
        arrays[f"{name}:values"] = _storable(flat[indices])
    else:
        arrays[name] = _storable(value)
    return indices.size


def _storable(value: np.ndarray) -> np.ndarray:
    """bfloat16 (which numpy alone cannot read) as its raw uint16 bits; every other dtype as it is."""
    return value.view(np.uint16) if value.dtype == jnp.bfloat16 else value


def _describe(info: ModelInfo, params: PyTree) -> dict[str, Any]:
    """The `model` and `input` entries of `__meta__`."""
    config = info.config
    layers = None
    if config["model"] in STACK_MODELS:
        specs = layer_specs(config["model"], config["alpha"], info.image_shape, info.num_classes, config["width"])
        layers = [
            {
                "name": f"layer{i}",
                "kind": spec.kind,
                "features": spec.features,
                "kernel_size": spec.kernel_size,
                "stride": spec.stride,
                "padding": spec.kernel_size // 2,
                "batch_norm": f"norm{i}",
                "bias": False,
            }
            for i, spec in enumerate(specs, start=1)
        ]
        classifier = {"name": f"layer{len(specs) + 1}", "kind": "dense", "features": info.num_classes}
        layers.append({**classifier, "kernel_size": 1, "stride": 1, "padding": 0, "batch_norm": None, "bias": True})
    model = {
        "name": config["model"],
        "config": config,
        "num_classes": info.num_classes,
        "class_names": list(info.class_names),
        "image_shape": list(info.image_shape),
        "compute_dtype": {"bf16": "bfloat16", "fp32": "float32"}[config["precision"]],
        "batch_norm_epsilon": BATCH_NORM_EPSILON,
        "layers": layers,
    }
    inputs = {
        "scale": info.input_scale,
        "mean": list(info.mean),
        "std": list(info.std),
        "pixel_permutation": info.pixel_permutation is not None,
    }
    return {"model": model, "input": inputs}


def load(path: str | os.PathLike) -> Export:
    """Reads a file `save` wrote (or a version-1 export); fails with one line naming the file if it cannot.

    Args:
      path: the `.npz`.

    Raises:
      ValueError: the file is missing, truncated, not an `.npz`, or not a blasso_jax sparse export.

    Returns:
      An `Export`: `params` and `batch_stats` as numpy arrays, bit for bit as saved, and `info`.
    """
    if not os.path.isfile(path):
        raise ValueError(f"cannot read {path}: no such file")
    if not zipfile.is_zipfile(path):  # also False for a truncated .npz, whose zip directory is at the end
        raise ValueError(f"cannot read {path}: not a complete .npz archive (a blasso_jax sparse export is one)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "__meta__" not in archive.files:
                raise ValueError(f"{path} is not a blasso_jax sparse export (no __meta__ entry)")
            meta = json.loads(str(archive["__meta__"]))
            if meta.get("format") == _VERSION_1:
                meta = _upgrade_version_1(meta)
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise ValueError(
                    f"{path} has format {meta.get('format')!r} version {meta.get('version')!r}; "
                    f"this reader knows {FORMAT!r} versions 1 and {VERSION}"
                )
            trees = _read_trees(archive, meta["leaves"])
            permutation = archive[PERMUTATION_KEY] if PERMUTATION_KEY in archive.files else None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: not a complete blasso_jax sparse export ({err})") from err
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"cannot read {path}: not a blasso_jax sparse export ({err})") from err
    return Export(trees["params"], trees.get("batch_stats"), _info(meta, permutation), meta)


def _read_trees(archive: Any, leaves: dict[str, dict[str, Any]]) -> dict[str, PyTree]:
    flat: dict[str, dict[str, np.ndarray]] = {}
    for name, spec in leaves.items():
        dtype = jnp.dtype(spec["dtype"])  # jnp knows bfloat16
        if spec["sparse"]:
            value = np.zeros(math.prod(spec["shape"]), dtype)
            value[_indices(archive, name)] = archive[f"{name}:values"].view(dtype)
        else:
            value = archive[name].view(dtype)
        tree_name, key = name.split("/", 1)
        flat.setdefault(tree_name, {})[key] = value.reshape(spec["shape"])
    return {tree_name: traverse_util.unflatten_dict(tree, sep="/") for tree_name, tree in flat.items()}


def _indices(archive: Any, name: str) -> np.ndarray:
    """A sparse kernel's flat indices: the running sum of its gaps (version 1 stored the indices themselves)."""
    if f"{name}:gaps" in archive.files:
        return np.cumsum(archive[f"{name}:gaps"], dtype=np.int64)
    return archive[f"{name}:indices"]


def _upgrade_version_1(meta: dict[str, Any]) -> dict[str, Any]:
    """Version 1 listed leaves per tree, with the same array names; it had no model description."""
    leaves = {f"{tree}/{key}": spec for tree, specs in meta["trees"].items() for key, spec in specs.items()}
    return {"format": FORMAT, "version": VERSION, "leaves": leaves}


def _info(meta: dict[str, Any], permutation: np.ndarray | None) -> ModelInfo | None:
    if "model" not in meta:
        return None
    model, inputs = meta["model"], meta["input"]
    return ModelInfo(
        config=model["config"],
        num_classes=model["num_classes"],
        class_names=tuple(model["class_names"]),
        image_shape=tuple(model["image_shape"]),
        mean=tuple(inputs["mean"]),
        std=tuple(inputs["std"]),
        pixel_permutation=None if permutation is None else tuple(int(i) for i in permutation),
        input_scale=inputs["scale"],
    )


def load_model(path: str | os.PathLike) -> tuple[Any, Export]:
    """The flax model an export describes, and the export (`export.variables` for `model.apply`).

    Raises ValueError naming the file if it holds no model description (a version-1 file, or saved without info).
    """
    exported = load(path)
    if exported.info is None:
        raise ValueError(f"{path} holds weights only (no model description); it was saved without info")
    info = exported.info
    config = TrainConfig.from_dict(info.config)
    return model_from_config(config, info.num_classes, info.image_shape), exported
