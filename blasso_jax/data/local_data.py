"""Local copies of a dataset: an image folder `<root>/<split>/<label>/<image>`, a .tar.gz of one, or an .npz.

Folders and archives are decoded once (Pillow) and cached as .npz under the cache folder, keyed by
a digest of the source's content: a copy or a `touch` of the same archive reuses the entry.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from blasso_jax.common.files import atomic_write
from blasso_jax.common.progress import log

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Bump when decoding changes, so caches written by older code are not reused.
CACHE_VERSION = 2
# PIL modes decoded to one channel; every other mode becomes RGB.
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


class Splits(NamedTuple):
    """A source's train and test splits before the validation split is carved out."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def load_local(path: Path, cache_root: Path) -> Splits:
    """Read an .npz directly, or an image folder / .tar.gz through the decoded-array cache."""
    if path.is_file() and path.name.lower().endswith(".npz"):
        return _load_npz(path)
    if path.is_dir():
        names = (p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        files = sorted(name for name in names if _is_image(name))
        key = _content_key((name, path / name) for name in files)
        entries = ((name, (path / name).read_bytes()) for name in files)  # lazy: read only on a cache miss
    elif path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
        key = _content_key([("", path)])
        entries = _archive_images(path)  # a generator: the archive opens only on a cache miss
    else:
        raise ValueError(
            f"cannot read {str(path)!r}: a local dataset must be an image folder, a .tar.gz/.tgz or an .npz"
        )
    cache_file = cache_root / f"decoded-{key}.npz"
    if cache_file.exists():
        with np.load(cache_file, allow_pickle=False) as cached:
            return Splits(*(cached[k] for k in NPZ_KEYS), tuple(str(c) for c in cached["class_names"]))
    splits = _decode_tree(entries, path)
    _write_cache(cache_file, splits)
    return splits


def _load_npz(path: Path) -> Splits:
    """Arrays from an .npz with x_train, y_train, x_test, y_test (and optionally class_names)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in NPZ_KEYS if k not in archive.files]
            if missing:
                raise ValueError(
                    f"{path} lacks key(s) {missing}; an .npz dataset needs {list(NPZ_KEYS)}, it has {archive.files}"
                )
            arrays = {k: archive[k] for k in archive.files if k in (*NPZ_KEYS, "class_names")}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise ValueError(f"cannot read {path}: not a complete .npz archive ({err})") from err
    except ValueError as err:
        if "pickle" not in str(err):
            raise
        raise ValueError(f"cannot read {path}: not an .npz archive of arrays (numpy: {err})") from err
    xs = [arrays[k] for k in ("x_train", "x_test")]
    xs = [x[..., None] if x.ndim == 3 else x for x in xs]  # grayscale [N, H, W] -> [N, H, W, 1]
    ys = [_integer_labels(arrays[k], k, path) for k in ("y_train", "y_test")]
    names = arrays.get("class_names")
    class_names = tuple(str(c) for c in names) if names is not None else _numbered_classes(ys, path)
    return Splits(xs[0], ys[0], xs[1], ys[1], class_names)


def _integer_labels(labels: np.ndarray, key: str, path: Path) -> np.ndarray:
    """`labels` as int32, refusing floats (NaN included) and negatives instead of truncating them."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{key} of {path} has dtype {labels.dtype}; labels must be integers 0..K-1")
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.int32).max):
        raise ValueError(
            f"{key} of {path} has labels from {labels.min()} to {labels.max()}; labels must be integers 0..K-1"
        )
    return labels.astype(np.int32)


def _numbered_classes(labels: list[np.ndarray], path: Path) -> tuple[str, ...]:
    """Class names '0'..'K-1' for an .npz without class_names: K is the largest label + 1, and every class up to
    it must occur, so one stray label cannot ask for a billion classes."""
    present = np.unique(np.concatenate(labels))
    count = int(present[-1]) + 1 if present.size else 0
    if count != present.size:
        raise ValueError(
            f"the labels of {path} are not 0..K-1: {present.size} distinct labels, the largest {count - 1}; "
            "renumber them 0..K-1, or add class_names to the .npz"
        )
    return tuple(str(i) for i in range(count))


def _is_image(name: str) -> bool:
    """True for image files, skipping hidden files and macOS archive metadata."""
    parts = PurePosixPath(name).parts
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in parts)
    return not hidden and name.lower().endswith(IMAGE_SUFFIXES)


def _archive_images(path: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every image file in a tar archive, in archive order."""
    try:
        with tarfile.open(path) as archive:
            for member in archive:
                if member.isfile() and _is_image(member.name):
                    yield member.name, archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise ValueError(
            f"cannot read {path}: the archive is corrupt or truncated ({type(err).__name__}: {err})"
        ) from err


def _decode_tree(entries: Iterator[tuple[str, bytes]], source: Path) -> Splits:
    """Decode `<split>/<label>/<image>` entries (optionally under one top folder) into arrays, telling the user."""
    log(f"reading {source} (decoded once, then cached)")
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
    counter = _DecodeProgress(sum(len(names) for split in SPLITS for names in tree[split].values()))
    for split in SPLITS:
        decoded, labels = [], []
        for label, class_name in enumerate(class_names):
            for name in tree[split][class_name]:
                counter.step()
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
    counter.done()
    return Splits(*arrays["train"], *arrays["test"], class_names)


class _DecodeProgress:
    """A 'decoded n / N images (rate)' line every few seconds and at the end."""

    def __init__(self, total: int, every_seconds: float = 5.0):
        self.total, self.every = total, every_seconds
        self.count, self.start = 0, time.monotonic()
        self.last = self.start

    def step(self) -> None:
        self.count += 1
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self._log()

    def done(self) -> None:
        self._log()

    def _log(self) -> None:
        seconds = max(time.monotonic() - self.start, 1e-9)
        log(f"decoded {self.count:,} / {self.total:,} images ({self.count / seconds:,.0f} images/s)")


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


def cache_root(cache_dir: str | None) -> Path:
    """The cache folder: `cache_dir`, else $BLASSO_JAX_CACHE, else ~/.cache/blasso_jax."""
    return Path(cache_dir or os.environ.get("BLASSO_JAX_CACHE") or Path.home() / ".cache" / "blasso_jax")


def _content_key(files) -> str:
    """A sha256 of the decoder version and each (name, file content): one content, one cache entry."""
    digest = hashlib.sha256(repr(CACHE_VERSION).encode())
    for name, file in files:
        digest.update(name.encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:24]


def _write_cache(cache_file: Path, splits: Splits) -> None:
    """Save decoded arrays; a cache that cannot be written only costs a warning (and a slow next load)."""
    arrays = splits._replace(class_names=np.asarray(splits.class_names, dtype=str))._asdict()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache_file, lambda f: np.savez(f, **arrays))
        log(f"cached the decoded images in {cache_file} ({cache_file.stat().st_size / 2**20:,.0f} MiB)")
    except OSError as err:
        warnings.warn(
            f"could not cache decoded images in {cache_file.parent} ({err}); the next load decodes again", stacklevel=2
        )
