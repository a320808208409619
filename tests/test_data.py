"""Tests for blasso_jax.data's local sources: generated data, image folders, archives and .npz files, the
validation split, the decoded cache, and the real CIFAR-10 copy when it is there. tfds is in test_tfds.py,
augmentation in test_augment.py."""

import os
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blasso_jax.data import datasets as data
from blasso_jax.data import local_data

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CIFAR_TARBALL = SHARED_DATA / "cifar10_jpeg_q75_images.tar.gz"
CLASSES = ("cat", "ant", "bee")  # written unsorted: labels must follow the sorted names
SORTED_CLASSES = ("ant", "bee", "cat")


def _pixels(split: str, class_index: int, index: int, shape=(8, 8, 3)) -> np.ndarray:
    """Distinct, reproducible pixels for one image of the generated tree."""
    seed = [("train", "test").index(split), class_index, index]
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _write_tree(root: Path, train_classes=CLASSES, test_classes=CLASSES, per_class=4, shape=(8, 8, 3)) -> dict:
    """Write <root>/<split>/<label>/<i>.png; return {split: sorted [(image bytes, label name)]}."""
    expected = {}
    for split, classes in (("train", train_classes), ("test", test_classes)):
        expected[split] = []
        for class_index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                pixels = _pixels(split, class_index, index, shape)
                Image.fromarray(pixels[..., 0] if shape[-1] == 1 else pixels).save(folder / f"{index}.png")
                expected[split].append((pixels.tobytes(), name))
        expected[split].sort()
    return expected


def _contents(x: np.ndarray, y: np.ndarray, class_names) -> list:
    """Sorted (image bytes, label name) pairs, to compare splits independently of their order."""
    return sorted((image.tobytes(), class_names[label]) for image, label in zip(x, y))


def _tar(source: Path, archive: Path, top_folder: str | None) -> Path:
    """Pack the tree either flat (train/, test/ at the top) or under one top-level folder."""
    with tarfile.open(archive, "w:gz") as tar:
        if top_folder:
            tar.add(source, arcname=top_folder)
        else:
            for split in ("train", "test"):
                tar.add(source / split, arcname=split)
    return archive


def _assert_same(a: data.Dataset, b: data.Dataset) -> None:
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.class_names == b.class_names and a.mean == b.mean and a.std == b.std


# --- synthetic -------------------------------------------------------------------------------------


def test_synthetic_shapes_and_dtypes():
    ds = data.load_dataset(
        "synthetic",
        validation_size=20,
        synthetic_shape=(6, 5, 2),
        synthetic_classes=4,
        synthetic_train_size=100,
        synthetic_test_size=30,
    )
    assert ds.x_train.shape == (80, 6, 5, 2) and ds.x_val.shape == (20, 6, 5, 2) and ds.x_test.shape == (30, 6, 5, 2)
    assert ds.y_train.shape == (80,) and ds.y_val.shape == (20,) and ds.y_test.shape == (30,)
    assert {x.dtype for x in (ds.x_train, ds.x_val, ds.x_test)} == {np.dtype(np.uint8)}
    assert {y.dtype for y in (ds.y_train, ds.y_val, ds.y_test)} == {np.dtype(np.int32)}
    assert ds.num_classes == 4 and len(ds.class_names) == 4 and ds.image_shape == (6, 5, 2)
    assert set(np.concatenate([ds.y_train, ds.y_val, ds.y_test])) <= set(range(4))
    assert ds.augment == "none"


def test_synthetic_is_deterministic_per_seed():
    a, b = (data.load_dataset("synthetic", validation_size=64, seed=3) for _ in range(2))
    _assert_same(a, b)
    c = data.load_dataset("synthetic", validation_size=64, seed=4)
    assert not np.array_equal(a.x_train, c.x_train)


def test_synthetic_labels_are_learnable():
    ds = data.load_dataset("synthetic", validation_size=0)
    centroids = np.stack([ds.x_train[ds.y_train == k].mean(0) for k in range(ds.num_classes)]).reshape(10, -1)
    distances = ((ds.x_test.reshape(len(ds.x_test), 1, -1) - centroids[None]) ** 2).sum(-1)
    assert (distances.argmin(1) == ds.y_test).mean() > 0.95


def test_channel_stats_match_numpy():
    ds = data.load_dataset("synthetic", validation_size=100, synthetic_shape=(8, 8, 3))
    pixels = ds.x_train.astype(np.float64) / 255
    np.testing.assert_allclose(ds.mean, pixels.mean(axis=(0, 1, 2)), rtol=1e-10)
    np.testing.assert_allclose(ds.std, pixels.std(axis=(0, 1, 2)), rtol=1e-10)


def test_validation_split_sizes_and_disjoint():
    full = data.load_dataset("synthetic", validation_size=0)
    ds = data.load_dataset("synthetic", validation_size=200)
    assert (len(ds.x_train), len(ds.x_val), len(full.x_val)) == (824, 200, 0)
    train, val = _contents(ds.x_train, ds.y_train, ds.class_names), _contents(ds.x_val, ds.y_val, ds.class_names)
    assert not set(train) & set(val)
    assert sorted(train + val) == _contents(full.x_train, full.y_train, full.class_names)
    other_seed = data.load_dataset("synthetic", validation_size=200, seed=1)
    assert set(_contents(other_seed.x_val, other_seed.y_val, ds.class_names)) != set(val)


@pytest.mark.parametrize("size", [1024, 5000, -1])
def test_validation_size_that_does_not_fit(size):
    with pytest.raises(ValueError, match=f"validation_size {size}.*1024"):
        data.load_dataset("synthetic", validation_size=size)


# --- local image folders, archives and npz -------------------------------------------------------


def test_image_folder_matches_written_pixels(tmp_path):
    expected = _write_tree(tmp_path / "tree")
    ds = data.load_dataset(str(tmp_path / "tree"), validation_size=0, cache_dir=str(tmp_path / "cache"))
    assert ds.class_names == SORTED_CLASSES and ds.num_classes == 3
    assert ds.x_train.shape == (12, 8, 8, 3) and ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    assert _contents(ds.x_train, ds.y_train, ds.class_names) == expected["train"]
    assert _contents(ds.x_test, ds.y_test, ds.class_names) == expected["test"]
    assert ds.augment == "crop_flip"


def test_image_folder_grayscale(tmp_path):
    expected = _write_tree(tmp_path / "gray", shape=(8, 8, 1))
    ds = data.load_dataset(str(tmp_path / "gray"), validation_size=2, cache_dir=str(tmp_path / "cache"))
    assert ds.image_shape == (8, 8, 1) and ds.augment == "crop"
    assert _contents(ds.x_test, ds.y_test, ds.class_names) == expected["test"]


@pytest.mark.parametrize("top_folder, suffix", [(None, ".tar.gz"), ("mydata", ".tar.gz"), ("mydata", ".tgz")])
def test_archive_equals_folder(tmp_path, top_folder, suffix):
    _write_tree(tmp_path / "tree")
    archive = _tar(tmp_path / "tree", tmp_path / f"tree{suffix}", top_folder)
    from_folder = data.load_dataset(str(tmp_path / "tree"), validation_size=3, cache_dir=str(tmp_path / "c1"))
    from_archive = data.load_dataset(str(archive), validation_size=3, cache_dir=str(tmp_path / "c2"))
    _assert_same(from_folder, from_archive)


def test_cache_skips_decoding_and_tracks_changes(tmp_path, monkeypatch):
    _write_tree(tmp_path / "tree")
    archive = _tar(tmp_path / "tree", tmp_path / "tree.tar.gz", None)
    cache = tmp_path / "cache"
    sources = (tmp_path / "tree", archive)
    first = {src: data.load_dataset(str(src), cache_dir=str(cache), validation_size=2) for src in sources}
    assert len(list(cache.glob("*.npz"))) == 2 and not list(cache.glob("*.tmp"))

    def no_decoding(*args):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(local_data, "_decode_image", no_decoding)
    for src, dataset in first.items():
        _assert_same(dataset, data.load_dataset(str(src), cache_dir=str(cache), validation_size=2))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tree" / "test" / "ant" / "0.png")
    with pytest.raises(AssertionError, match="decoded although"):
        data.load_dataset(str(tmp_path / "tree"), cache_dir=str(cache), validation_size=2)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    _write_tree(tmp_path / "tree")
    monkeypatch.setenv("BLASSO_JAX_CACHE", str(tmp_path / "env_cache"))
    data.load_dataset(str(tmp_path / "tree"), validation_size=0)
    assert len(list((tmp_path / "env_cache").glob("*.npz"))) == 1


def test_corrupt_image_is_named(tmp_path):
    _write_tree(tmp_path / "tree")
    (tmp_path / "tree" / "train" / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match=r"broken\.png"):
        data.load_dataset(str(tmp_path / "tree"), validation_size=0, cache_dir=str(tmp_path / "cache"))


def test_mismatched_class_folders_are_named(tmp_path):
    _write_tree(tmp_path / "tree", test_classes=("ant", "bee", "dog"))
    with pytest.raises(ValueError, match=r"only in train: \['cat'\], only in test: \['dog'\]"):
        data.load_dataset(str(tmp_path / "tree"), validation_size=0, cache_dir=str(tmp_path / "cache"))


def test_mixed_sizes_are_named(tmp_path):
    _write_tree(tmp_path / "tree")
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "tree" / "test" / "cat" / "odd.png")
    with pytest.raises(ValueError, match=r"odd\.png has shape \(9, 8, 3\), expected \(8, 8, 3\)"):
        data.load_dataset(str(tmp_path / "tree"), validation_size=0, cache_dir=str(tmp_path / "cache"))


def test_missing_split_folder(tmp_path):
    _write_tree(tmp_path / "tree")
    (tmp_path / "tree" / "test").rename(tmp_path / "tree" / "eval")
    with pytest.raises(ValueError, match=r"\['test'\]"):
        data.load_dataset(str(tmp_path / "tree"), validation_size=0, cache_dir=str(tmp_path / "cache"))


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (20, 5, 5), dtype=np.uint8),  # grayscale without a channel axis
        "y_train": rng.integers(0, 3, 20),
        "x_test": rng.integers(0, 256, (7, 5, 5), dtype=np.uint8),
        "y_test": rng.integers(0, 3, 7),
    }
    np.savez(tmp_path / "plain.npz", **arrays)
    np.savez(tmp_path / "named.npz", **arrays, class_names=np.array(["x", "y", "z"]))
    ds = data.load_dataset(str(tmp_path / "named.npz"), validation_size=0)
    assert ds.class_names == ("x", "y", "z") and ds.image_shape == (5, 5, 1)
    np.testing.assert_array_equal(ds.x_train[..., 0], arrays["x_train"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert ds.y_test.dtype == np.int32
    plain = data.load_dataset(str(tmp_path / "plain.npz"), validation_size=0)
    assert plain.num_classes == arrays["y_train"].max() + 1


def test_npz_missing_key_is_named(tmp_path):
    images = np.zeros((2, 4, 4, 3), np.uint8)
    np.savez(tmp_path / "bad.npz", x_train=images, y_train=np.zeros(2), x_test=images)
    with pytest.raises(ValueError, match=r"\['y_test'\]"):
        data.load_dataset(str(tmp_path / "bad.npz"), validation_size=0)


def test_unsupported_local_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt.*image folder"):
        data.load_dataset(str(tmp_path / "notes.txt"))


# --- the real CIFAR-10 copy ----------------------------------------------------------------------


@pytest.mark.skipif(not CIFAR_TARBALL.exists(), reason=f"no {CIFAR_TARBALL}")
def test_real_cifar10_jpeg_tarball(tmp_path, monkeypatch):
    ds = data.load_dataset(str(CIFAR_TARBALL), cache_dir=str(tmp_path))
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (45_000, 5_000, 10_000)
    assert ds.image_shape == (32, 32, 3) and ds.num_classes == 10 and ds.augment == "fast_autoaugment_cifar"
    assert ds.class_names == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    np.testing.assert_allclose(ds.mean, (0.4914, 0.4822, 0.4465), atol=2e-3)  # CIFAR-10's known channel means
    # The second load reads the decoded cache: decoding an image again would fail.
    monkeypatch.setattr(local_data, "_decode_image", lambda data, name: pytest.fail(f"decoded {name} again"))
    cached = data.load_dataset(str(CIFAR_TARBALL), cache_dir=str(tmp_path))
    np.testing.assert_array_equal(cached.x_val, ds.x_val)


def test_train_size_takes_a_seeded_subset_and_keeps_validation():
    full = data.load_dataset("synthetic", validation_size=100, seed=1)
    part = data.load_dataset("synthetic", validation_size=100, train_size=300, seed=1)
    np.testing.assert_array_equal(part.x_val, full.x_val)  # the validation set does not depend on train_size
    assert len(part.x_train) == 300
    rows = {row.tobytes() for row in full.x_train}
    assert all(row.tobytes() in rows for row in part.x_train)
    # A subset drawn at random, not the first 300 images of the split.
    assert not np.array_equal(part.x_train, full.x_train[:300])
    with pytest.raises(ValueError, match=r"train_size 925 does not fit the 924 .* choose 1 up to 924"):
        data.load_dataset("synthetic", validation_size=100, train_size=925)


def test_cache_is_keyed_by_content_and_decoding_reports_progress(tmp_path, capsys):
    _write_tree(tmp_path / "tree")
    archive = _tar(tmp_path / "tree", tmp_path / "tree.tar.gz", None)
    cache = tmp_path / "cache"
    first = data.load_dataset(str(archive), cache_dir=str(cache), validation_size=2)
    out = capsys.readouterr().out
    assert f"reading {archive}" in out and "decoded 24 / 24 images" in out
    (entry,) = cache.glob("*.npz")
    assert f"cached the decoded images in {entry}" in out
    copy = tmp_path / "elsewhere" / "renamed.tgz"
    copy.parent.mkdir()
    shutil.copyfile(archive, copy)
    os.utime(copy, ns=(0, 0))  # another path and another mtime, the same bytes
    _assert_same(first, data.load_dataset(str(copy), cache_dir=str(cache), validation_size=2))
    assert list(cache.glob("*.npz")) == [entry] and "decoded" not in capsys.readouterr().out


def _truncated(path, keep):
    path.write_bytes(path.read_bytes()[:keep])
    return path


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_archive_is_named(tmp_path, damage):
    _write_tree(tmp_path / "tree")
    archive = _tar(tmp_path / "tree", tmp_path / "tree.tar.gz", None)
    if damage == "truncated":
        _truncated(archive, archive.stat().st_size // 2)
    else:
        archive.write_bytes(b"not an archive at all" * 100)
    with pytest.raises(ValueError, match=f"cannot read {re.escape(str(archive))}: the archive is corrupt or truncated"):
        data.load_dataset(str(archive), validation_size=0, cache_dir=str(tmp_path / "cache"))


def _npz(path, **overrides):
    arrays = {
        "x_train": np.zeros((6, 4, 4, 3), np.uint8),
        "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "x_test": np.zeros((3, 4, 4, 3), np.uint8),
        "y_test": np.array([0, 1, 2]),
    }
    np.savez(path, **{**arrays, **overrides})
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: _truncated(_npz(p), 300), "not a complete .npz archive"),
        (lambda p: p.write_bytes(b"plain text, not a zip") and p, "not an .npz archive of arrays"),
        (lambda p: _npz(p, y_train=np.array([0, 1, 2, 0, 1, 2.5])), "y_train of .* has dtype float64"),
        (lambda p: _npz(p, y_test=np.array([0, np.nan, 2])), "y_test of .* has dtype float64"),
        (lambda p: _npz(p, y_test=np.array([0, -1, 2])), "labels from -1 to 2"),
        (lambda p: _npz(p, y_train=np.array([0, 1, 2, 0, 1, 10**9])), "4 distinct labels, the largest 1000000000"),
    ],
)
def test_a_bad_npz_is_refused_naming_the_file(tmp_path, make, message):
    path = make(tmp_path / "d.npz")
    with pytest.raises(ValueError, match=message) as error:
        data.load_dataset(str(path), validation_size=0)
    assert str(path) in str(error.value)
