"""Datasets as uint8 arrays in host memory, plus on-device augmentation and normalization.

`load_dataset` reads a source once (synthetic, a local image folder / .tar.gz / .npz, or a
prepared tfds dataset) into a `Dataset`; training then moves the arrays to the accelerator and
calls `augment_batch` and `normalize` inside its jitted step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import socket
import tarfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple
from urllib.parse import urlparse

import jax
import jax.numpy as jnp
import numpy as np

from blasso_jax.io import atomic_write

AUGMENT_POLICIES = ("crop_flip", "crop", "none")
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Bump when decoding changes, so caches written by older code are not reused.
CACHE_VERSION = 1
# PIL modes decoded to one channel; every other mode becomes RGB.
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
_SOURCE_KINDS = (
    "'synthetic', an existing local path (an image folder <root>/<split>/<label>/<image>, "
    "a .tar.gz/.tgz of one, or an .npz with x_train, y_train, x_test, y_test), or the name of a "
    "tfds image-classification dataset such as 'cifar10', 'cifar100', 'svhn_cropped' or 'mnist'"
)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train / validation / test images (uint8, NHWC) and int32 labels of one dataset."""

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

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(self.x_train.shape[1:])


class _Splits(NamedTuple):
    """A source's train and test splits before the validation split is carved out."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    validation_size: int = 5000,
    seed: int = 0,
    synthetic_shape: tuple[int, int, int] = (32, 32, 3),
    synthetic_classes: int = 10,
    synthetic_train_size: int = 1024,
    synthetic_test_size: int = 256,
) -> Dataset:
    """Load `name` ('synthetic', a local path or a tfds name) and carve a validation split from train.

    `validation_size` examples of the training split, chosen by a permutation from `seed`, become
    the validation set. `data_dir` is the tfds data directory (None: tfds' default, which honours
    $TFDS_DATA_DIR); `cache_dir` keeps decoded local image folders (None: $BLASSO_JAX_CACHE or
    ~/.cache/blasso_jax). The synthetic_* arguments apply to 'synthetic' only.
    """
    if name == "synthetic":
        splits = _synthetic(synthetic_shape, synthetic_classes, synthetic_train_size, synthetic_test_size, seed)
    elif os.path.exists(name):
        splits = _load_local(Path(name), _cache_root(cache_dir))
    else:
        splits = _load_tfds(name, data_dir)
    _check_splits(name, splits)
    return _make_dataset(name, splits, validation_size, seed)


def augment_batch(key: jax.Array, images: jax.Array, policy: str, padding: int = 4) -> jax.Array:
    """Randomly crop (from a zero padding of `padding` pixels) and maybe mirror each image of a batch.

    Jittable with `policy` and `padding` static; uint8 [B, H, W, C] in and out. 'crop_flip' crops
    and flips each image left-right with probability 1/2, 'crop' only crops, 'none' is the identity.
    """
    if policy not in AUGMENT_POLICIES:
        raise ValueError(f"unknown augmentation policy {policy!r}; choose one of {AUGMENT_POLICIES}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if policy == "none":
        return images
    batch, height, width, channels = images.shape
    crop_key, flip_key = jax.random.split(key)
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * padding + 1)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

    crops = jax.vmap(crop)(padded, offsets)
    if policy == "crop":
        return crops
    flip = jax.random.bernoulli(flip_key, shape=(batch, 1, 1, 1))
    return jnp.where(flip, crops[:, :, ::-1], crops)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float], dtype: Any = jnp.float32) -> jax.Array:
    """uint8 images -> (x / 255 - mean) / std per channel, computed in float32 and returned in `dtype`."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return ((images.astype(jnp.float32) / 255.0 - mean) / std).astype(dtype)


def _make_dataset(name: str, splits: _Splits, validation_size: int, seed: int) -> Dataset:
    """Carve the validation split out of train, compute channel statistics and pick the augmentation."""
    num_train = len(splits.x_train)
    if not 0 <= validation_size < num_train:
        raise ValueError(
            f"validation_size {validation_size} does not fit the {num_train} training examples of {name!r}: "
            f"choose 0 (no validation set) up to {num_train - 1}"
        )
    order = np.random.default_rng(seed).permutation(num_train)
    val_idx, train_idx = np.sort(order[:validation_size]), np.sort(order[validation_size:])
    x_train = splits.x_train[train_idx]
    mean, std = _channel_stats(x_train)
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
        augment=_default_augment(name, x_train.shape[-1]),
    )


def _default_augment(name: str, channels: int) -> str:
    """The usual policy for the data: no flips for digits (a mirrored digit is another symbol)."""
    lowered = name.lower()
    if name == "synthetic":
        # Synthetic classes are pixel-aligned templates: shifting or mirroring them would only blur
        # the signal a smoke run needs to see its loss fall.
        return "none"
    if "svhn" in lowered or "mnist" in lowered or channels != 3:
        # Grayscale data of unknown kind is often digits or letters, which a flip changes.
        return "crop"
    return "crop_flip"


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


def _check_splits(name: str, splits: _Splits) -> None:
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


def _synthetic(shape: tuple[int, int, int], num_classes: int, train_size: int, test_size: int, seed: int) -> _Splits:
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
    return _Splits(x_train, y_train, x_test, y_test, tuple(f"class_{i}" for i in range(num_classes)))


def _load_local(path: Path, cache_root: Path) -> _Splits:
    """Read an .npz directly, or an image folder / .tar.gz through the decoded-array cache."""
    if path.is_file() and path.name.lower().endswith(".npz"):
        return _load_npz(path)
    if path.is_dir():
        names = (p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        files = sorted(name for name in names if _is_image(name))
        stats = [(name, (path / name).stat()) for name in files]
        key = _cache_key(path, [(name, stat.st_size, stat.st_mtime_ns) for name, stat in stats])
        entries = ((name, (path / name).read_bytes()) for name in files)  # lazy: read only on a cache miss
    elif path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
        stat = path.stat()
        key = _cache_key(path, [(stat.st_size, stat.st_mtime_ns)])
        entries = _archive_images(path)  # a generator: the archive opens only on a cache miss
    else:
        raise ValueError(
            f"cannot read {str(path)!r}: a local dataset must be an image folder, a .tar.gz/.tgz or an .npz"
        )
    cache_file = cache_root / f"{path.resolve().name}-{key}.npz"
    if cache_file.exists():
        with np.load(cache_file, allow_pickle=False) as cached:
            return _Splits(*(cached[k] for k in NPZ_KEYS), tuple(str(c) for c in cached["class_names"]))
    splits = _decode_tree(entries, path)
    _write_cache(cache_file, splits)
    return splits


def _load_npz(path: Path) -> _Splits:
    """Arrays from an .npz with x_train, y_train, x_test, y_test (and optionally class_names)."""
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        if missing:
            raise ValueError(
                f"{path} lacks key(s) {missing}; an .npz dataset needs {list(NPZ_KEYS)}, it has {archive.files}"
            )
        xs = [archive[k] for k in ("x_train", "x_test")]
        xs = [x[..., None] if x.ndim == 3 else x for x in xs]  # grayscale [N, H, W] -> [N, H, W, 1]
        ys = [archive[k].astype(np.int32) for k in ("y_train", "y_test")]
        if "class_names" in archive.files:
            class_names = tuple(str(c) for c in archive["class_names"])
        else:
            class_names = tuple(str(i) for i in range(int(max(y.max(initial=-1) for y in ys)) + 1))
    return _Splits(xs[0], ys[0], xs[1], ys[1], class_names)


def _is_image(name: str) -> bool:
    """True for image files, skipping hidden files and macOS archive metadata."""
    parts = PurePosixPath(name).parts
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in parts)
    return not hidden and name.lower().endswith(IMAGE_SUFFIXES)


def _archive_images(path: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every image file in a tar archive, in archive order."""
    with tarfile.open(path) as archive:
        for member in archive:
            if member.isfile() and _is_image(member.name):
                yield member.name, archive.extractfile(member).read()


def _decode_tree(entries: Iterator[tuple[str, bytes]], source: Path) -> _Splits:
    """Decode `<split>/<label>/<image>` entries (optionally under one top folder) into arrays."""
    images = dict(entries)
    if not images:
        raise ValueError(f"no .png/.jpg/.jpeg images in {source}; expected <root>/<split>/<label>/<image>")
    tops = {PurePosixPath(name).parts[0] for name in images}
    strip = 1 if len(tops) == 1 and not tops <= set(SPLITS) else 0
    tree: dict[str, dict[str, list[str]]] = {split: {} for split in SPLITS}
    for name in sorted(images):
        parts = PurePosixPath(name).parts[strip:]
        if not parts or parts[0] not in SPLITS:
            continue
        if len(parts) != 3:
            raise ValueError(f"{source}: image {name} is not at <split>/<label>/<image> (splits {SPLITS})")
        tree[parts[0]].setdefault(parts[1], []).append(name)
    empty = [split for split in SPLITS if not tree[split]]
    if empty:
        raise ValueError(f"{source} has no images under split folder(s) {empty}; it needs {list(SPLITS)}")
    train_classes, test_classes = set(tree["train"]), set(tree["test"])
    if train_classes != test_classes:
        raise ValueError(
            f"{source}: train and test must have the same class folders; only in train: "
            f"{sorted(train_classes - test_classes)}, only in test: {sorted(test_classes - train_classes)}"
        )
    class_names = tuple(sorted(train_classes))
    arrays, first = {}, None
    for split in SPLITS:
        decoded, labels = [], []
        for label, class_name in enumerate(class_names):
            for name in tree[split][class_name]:
                image = _decode_image(images[name], f"{source}:{name}" if source.is_file() else str(source / name))
                first = first or (name, image.shape)
                if image.shape != first[1]:
                    raise ValueError(
                        f"{source}: image {name} has shape {image.shape}, expected {first[1]} like {first[0]}; "
                        "all images must have one size and channel count"
                    )
                decoded.append(image)
                labels.append(label)
        arrays[split] = (np.stack(decoded), np.asarray(labels, np.int32))
    return _Splits(*arrays["train"], *arrays["test"], class_names)


def _decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode one image file to uint8 [H, W, C] with C = 1 (grayscale) or 3."""
    from PIL import Image  # only local image folders need Pillow: `import blasso_jax` stays light

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("L", "RGB"):
                image = image.convert("L" if image.mode in _GRAY_MODES else "RGB")
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot decode image {name}: {err}") from err
    return array[..., None] if array.ndim == 2 else array


def _cache_root(cache_dir: str | None) -> Path:
    """The cache folder: `cache_dir`, else $BLASSO_JAX_CACHE, else ~/.cache/blasso_jax."""
    return Path(cache_dir or os.environ.get("BLASSO_JAX_CACHE") or Path.home() / ".cache" / "blasso_jax")


def _cache_key(path: Path, stamp: list[tuple]) -> str:
    """A digest of the source's absolute path and the sizes and mtimes that identify its content."""
    text = repr((CACHE_VERSION, str(path.resolve()), stamp))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_cache(cache_file: Path, splits: _Splits) -> None:
    """Save decoded arrays; a cache that cannot be written only costs a warning (and a slow next load)."""
    arrays = splits._replace(class_names=np.asarray(splits.class_names, dtype=str))._asdict()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache_file, lambda f: np.savez(f, **arrays))
    except OSError as err:
        warnings.warn(
            f"could not cache decoded images in {cache_file.parent} ({err}); the next load decodes again", stacklevel=2
        )


def _load_tfds(name: str, data_dir: str | None) -> _Splits:
    """Train and test splits of a tfds dataset, prepared first (as array_record) when its download hosts answer."""
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
    return _Splits(x_train, y_train, x_test, y_test, tuple(features["label"].names))


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
