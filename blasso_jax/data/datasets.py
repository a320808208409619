"""Datasets as uint8 images (or float32 signals) in host memory.

`load_dataset` reads a source once (synthetic, an NLGP spec, a local image folder / .tar.gz / .npz,
or a prepared tfds dataset) into a `Dataset`; training then moves the arrays to the accelerator and
augments and normalises them there (`blasso_jax.data.augment`).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from blasso_jax.data import augment, nlgp
from blasso_jax.data.geometry import Geometry
from blasso_jax.data.local_data import NPZ_KEYS, SPLITS, Splits, cache_root, load_local

_SOURCE_KINDS = (
    "'synthetic', an NLGP spec ('nlgp' or 'nlgp_gaussian', e.g. 'nlgp:dim=40,xi=1:3,gain=3,ndim=1'), "
    "an existing local path (an image folder <root>/<split>/<label>/<image>, "
    "a .tar.gz/.tgz of one, or an .npz with x_train, y_train, x_test, y_test), or the name of a "
    "tfds image-classification dataset such as 'cifar10', 'cifar100', 'svhn_cropped' or 'mnist'"
)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train / validation / test images (uint8, NHWC) or float32 signals of the same layout, and int32 labels.

    `geometry` is where the inputs sit for the locality measure (`blasso_jax.analysis.locality`): None for images
    (an H×W image with a 9×9 window, `analysis.locality`), a ring or torus for NLGP data.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str
    geometry: Geometry | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(self.x_train.shape[1:])


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    validation_size: int = 5000,
    train_size: int | None = None,
    svhn_extra: bool = False,
    seed: int = 0,
    synthetic_shape: tuple[int, int, int] = (32, 32, 3),
    synthetic_classes: int = 10,
    synthetic_train_size: int = 1024,
    synthetic_test_size: int = 256,
) -> Dataset:
    """Load `name` ('synthetic', an NLGP spec, a local path or a tfds name) and carve a validation split from train.

    `validation_size` examples of the training split, chosen by a permutation from `seed`, become
    the validation set; `train_size` of the rest (all when None), chosen by the same permutation, the
    training set. `svhn_extra` adds SVHN's 531,131 'extra' images to its training split. `data_dir`
    is the tfds data directory (None: tfds' default, which honours $TFDS_DATA_DIR); `cache_dir` keeps
    decoded local image folders (None: $BLASSO_JAX_CACHE or ~/.cache/blasso_jax). The synthetic_* arguments
    apply to 'synthetic' only. An NLGP spec (`blasso_jax.data.nlgp`) draws float32 signals from `seed`.
    """
    if svhn_extra and name != "svhn_cropped":
        raise ValueError(f"svhn_extra adds the 'extra' split of the tfds dataset svhn_cropped; the dataset is {name!r}")
    if nlgp.is_spec(name):
        spec = nlgp.parse_spec(name)
        dataset = _make_dataset(name, nlgp.generate(spec, seed), validation_size, seed, train_size)
        return dataclasses.replace(dataset, geometry=spec.geometry)
    if name == "synthetic":
        splits = _synthetic(synthetic_shape, synthetic_classes, synthetic_train_size, synthetic_test_size, seed)
    elif os.path.exists(name):
        splits = load_local(Path(name), cache_root(cache_dir))
    else:
        splits = _load_tfds(name, data_dir, ("extra",) if svhn_extra else ())
    _check_splits(name, splits)
    return _make_dataset(name, splits, validation_size, seed, train_size)


def _make_dataset(name: str, splits: Splits, validation_size: int, seed: int, train_size: int | None = None) -> Dataset:
    """Carve the validation split (and a training subset) out of train, compute channel statistics and pick
    the augmentation."""
    num_train = len(splits.x_train)
    if not 0 <= validation_size < num_train:
        raise ValueError(
            f"validation_size {validation_size} does not fit the {num_train} training examples of {name!r}: "
            f"choose 0 (no validation set) up to {num_train - 1}"
        )
    if train_size is not None and not 1 <= train_size <= num_train - validation_size:
        raise ValueError(
            f"train_size {train_size} does not fit the {num_train - validation_size} training examples left "
            f"of {name!r} after validation_size {validation_size}: choose 1 up to {num_train - validation_size}"
        )
    order = np.random.default_rng(seed).permutation(num_train)
    end = None if train_size is None else validation_size + train_size
    val_idx, train_idx = np.sort(order[:validation_size]), np.sort(order[validation_size:end])
    x_train = splits.x_train[train_idx]
    # Float signals (NLGP) are drawn with mean 0 and variance 1 per site: they are used as they are.
    channels = x_train.shape[-1]
    mean, std = _channel_stats(x_train) if x_train.dtype == np.uint8 else ((0.0,) * channels, (1.0,) * channels)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=splits.y_train[train_idx],
        x_val=splits.x_train[val_idx],
        y_val=splits.y_train[val_idx],
        x_test=splits.x_test,
        y_test=splits.y_test,
        num_classes=len(splits.class_names),
        class_names=splits.class_names,
        mean=mean,
        std=std,
        augment=augment.resolve("auto", name, channels, images=x_train.dtype == np.uint8),
    )


def _channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std in [0, 1] units, from value histograms (no float copy)."""
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[-1]):
        counts = np.bincount(images[..., channel].ravel(), minlength=256)
        mean = counts @ values / counts.sum()
        means.append(float(mean))
        stds.append(float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum())))
    return tuple(means), tuple(stds)


def _check_splits(name: str, splits: Splits) -> None:
    """Raise if the arrays are not uint8 NHWC images of one shape with labels in [0, num_classes)."""
    shapes = {}
    for split in SPLITS:
        x, y = getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"{name!r}: x_{split} must be uint8 [N, H, W, C], got {x.dtype} {x.shape}")
        if y.shape != (len(x),):
            raise ValueError(f"{name!r}: y_{split} must have shape ({len(x)},), got {y.shape}")
        bad = y[(y < 0) | (y >= len(splits.class_names))]
        if bad.size:
            raise ValueError(
                f"{name!r}: y_{split} holds label {bad[0]}, outside [0, {len(splits.class_names)}) "
                f"for classes {splits.class_names}"
            )
        shapes[split] = x.shape[1:]
    if shapes["train"] != shapes["test"]:
        raise ValueError(f"{name!r}: train images are {shapes['train']} but test images are {shapes['test']}")


def _synthetic(shape: tuple[int, int, int], num_classes: int, train_size: int, test_size: int, seed: int) -> Splits:
    """Random images that are a class template plus noise, so a model can learn the labels."""
    if num_classes < 1 or len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"synthetic data needs synthetic_classes >= 1 and synthetic_shape (H, W, C) of positive sizes, "
            f"got {num_classes} and {shape}"
        )
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 255, (num_classes, *shape))

    def sample(size: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, num_classes, size)
        noisy = templates[labels] + rng.normal(0, 48, (size, *shape))
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), labels.astype(np.int32)

    x_train, y_train = sample(train_size)
    x_test, y_test = sample(test_size)
    return Splits(x_train, y_train, x_test, y_test, tuple(f"class_{i}" for i in range(num_classes)))


def _load_tfds(name: str, data_dir: str | None, extra_train_splits: tuple[str, ...] = ()) -> Splits:
    """Train and test splits of a tfds dataset, prepared first (as array_record) when its download hosts answer;
    `extra_train_splits` are appended to train."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except ValueError:
        message = f"unknown dataset {name!r}: not an existing path nor a tfds name; use {_SOURCE_KINDS}"
        raise ValueError(message) from None
    features = builder.info.features
    if not {"image", "label"} <= set(features.keys()) or not isinstance(features["label"], tfds.features.ClassLabel):
        raise ValueError(
            f"tfds dataset {name!r} has features {list(features.keys())}; it needs 'image' and a ClassLabel 'label'"
        )
    if None in features["image"].shape:
        raise ValueError(
            f"tfds dataset {name!r} has images of varying size {features['image'].shape}; resize them first"
        )
    (x_train, y_train), (x_test, y_test) = (_tfds_split(builder, split) for split in SPLITS)
    for split in extra_train_splits:
        x_extra, y_extra = _tfds_split(builder, split)
        x_train, y_train = np.concatenate([x_train, x_extra]), np.concatenate([y_train, y_extra])
    return Splits(x_train, y_train, x_test, y_test, tuple(features["label"].names))


def _tfds_split(builder: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split: array_record files through as_data_source (no TensorFlow), else TF's reader."""
    try:
        source = builder.as_data_source(split)
    except (NotImplementedError, KeyError, ValueError) as err:
        # Unprepared data fails here at once (tfds reports the default TFRECORD format as unsupported).
        # is_prepared() is asked only now, because tfds.testing.mock_data serves data without files.
        if not builder.is_prepared():
            if not _downloads_reachable(builder):
                raise FileNotFoundError(_not_prepared_message(builder)) from err
            builder.download_and_prepare(file_format="array_record")
            return _tfds_split(builder, split)
        if not isinstance(err, NotImplementedError):
            raise
        return _tfds_split_with_tf(builder, split)
    records = [source[i] for i in range(len(source))]
    images = np.stack([record["image"] for record in records])
    return images, np.asarray([record["label"] for record in records], np.int32)


def _downloads_reachable(builder: Any, timeout: float = 3.0) -> bool:
    """Whether every host the dataset downloads from answers within `timeout` s.

    Offline, tfds' own download retries for minutes before failing; this check takes seconds.
    """
    urls = list(builder.url_infos or {})
    hosts = {
        (parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)) for parsed in map(urlparse, urls)
    }
    try:
        for host in hosts:
            socket.create_connection(host, timeout=timeout).close()
    except OSError:
        return False
    return bool(hosts)


def _tfds_split_with_tf(builder: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a split stored as tfrecord with TensorFlow, kept off the GPUs that JAX uses."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        pass  # TF already initialised its devices (its user chose them); they cannot be hidden now.
    data = tfds.as_numpy(builder.as_dataset(split, batch_size=-1))
    return data["image"], data["label"].astype(np.int32)


def _not_prepared_message(builder: Any) -> str:
    """How to get a tfds dataset onto a machine that cannot download it here."""
    name = builder.name
    return (
        f"tfds dataset {name!r} is not prepared under {builder.data_dir} and its download hosts cannot be reached. "
        f"On a machine with internet run `tfds build {name} --file_format=array_record` "
        f'(or python -c "import tensorflow_datasets as tfds; '
        f"tfds.builder('{name}').download_and_prepare(file_format='array_record')\") "
        "and copy the data folder here, passing data_dir= or setting TFDS_DATA_DIR; or pass a local copy "
        "instead: an image folder <root>/<split>/<label>/<image>, a .tar.gz/.tgz of one, or an .npz with "
        f"{', '.join(NPZ_KEYS)}"
    )
