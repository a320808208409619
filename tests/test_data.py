"""Tests for blasso_jax.data: every source kind, the validation split, augmentation and normalization."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from blasso_jax.common import rng as streams
from blasso_jax.data import augment, local_data
from blasso_jax.data import datasets as data

# Its module-scoped runs are trained once: every test of this file on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_data")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CIFAR_TARBALL = SHARED_DATA / "cifar10_jpeg_q75_images.tar.gz"
CLASSES = ("cat", "ant", "bee")  # written unsorted: labels must follow the sorted names
SORTED_CLASSES = ("ant", "bee", "cat")


@pytest.fixture
def no_network(monkeypatch):
    """Make any connection attempt fail at once, as on an offline machine, instead of hanging."""

    def refuse(*args, **kwargs):
        raise OSError("network unreachable (blocked by the test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


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


# --- tfds ----------------------------------------------------------------------------------------


def test_unknown_name_lists_the_choices(no_network, tmp_path):
    with pytest.raises(ValueError, match=r"'no_such_dataset_xyz'.*'synthetic'.*local path.*cifar10"):
        data.load_dataset("no_such_dataset_xyz", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not an existing path"):
        data.load_dataset(str(tmp_path / "missing" / "copy.tar.gz"))


@pytest.mark.parametrize(
    "name, classes, policy",
    [
        ("cifar10", 10, "fast_autoaugment_cifar"),
        ("cifar100", 100, "fast_autoaugment_cifar"),
        ("svhn_cropped", 10, "fast_autoaugment_svhn"),
    ],
)
def test_tfds_under_mock_data(no_network, tmp_path, name, classes, policy):
    with tfds.testing.mock_data(num_examples=12):
        ds = data.load_dataset(name, data_dir=str(tmp_path), validation_size=4)
    assert (ds.x_train.shape, ds.x_val.shape, ds.x_test.shape) == ((8, 32, 32, 3), (4, 32, 32, 3), (12, 32, 32, 3))
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    assert ds.num_classes == classes == len(ds.class_names) and ds.augment == policy
    assert ds.y_test.max() < classes


def test_module_and_data_source_path_need_no_tensorflow():
    code = (
        "import sys\n"
        "from blasso_jax.data import datasets as data\n"
        "assert 'tensorflow_datasets' not in sys.modules and 'tensorflow' not in sys.modules\n"
        "import tensorflow_datasets as tfds\n"
        "with tfds.testing.mock_data(num_examples=3):\n"
        "    data.load_dataset('cifar10', validation_size=1)\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_unprepared_tfds_fails_fast_without_downloading(no_network, tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("download_and_prepare was called")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as error:
        data.load_dataset("cifar10", data_dir=str(tmp_path))
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert "'cifar10' is not prepared" in message and str(tmp_path) in message
    assert "tfds build cifar10" in message and "download_and_prepare(file_format=" in message and ".tar.gz" in message


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """A tiny grayscale tfds dataset, prepared offline once as array_record and once as tfrecord."""

    class BlassoTinyDigits(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = {"image": tfds.features.Image(shape=(6, 6, 1)), "label": tfds.features.ClassLabel(names="abc")}
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, 9), "test": self._generate_examples(100, 3)}

        def _generate_examples(self, start, count):
            for i in range(start, start + count):
                yield i, {"image": np.full((6, 6, 1), i, np.uint8), "label": i % 3}

    data_dirs = {}
    for file_format in ("array_record", "tfrecord"):
        data_dirs[file_format] = str(tmp_path_factory.mktemp(file_format))
        builder = tfds.builder("blasso_tiny_digits", data_dir=data_dirs[file_format], file_format=file_format)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return data_dirs


@pytest.mark.parametrize("file_format", ["array_record", "tfrecord"])
def test_prepared_tfds_dataset(no_network, tiny_tfds, file_format):
    ds = data.load_dataset("blasso_tiny_digits", data_dir=tiny_tfds[file_format], validation_size=0)
    assert ds.class_names == ("a", "b", "c") and ds.image_shape == (6, 6, 1) and ds.augment == "crop"
    assert sorted(ds.x_train[:, 0, 0, 0].tolist()) == list(range(9)) and ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.y_train, ds.x_train[:, 0, 0, 0] % 3)
    assert ds.y_train.dtype == np.int32 and sorted(ds.x_test[:, 3, 3, 0].tolist()) == [100, 101, 102]


# --- augmentation and normalization --------------------------------------------------------------


def _random_images(shape, seed=0) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def _reference_matches(image: np.ndarray, output: np.ndarray, padding: int) -> set:
    """Every (dy, dx, flipped) whose crop of the zero-padded image (maybe mirrored) equals `output`."""
    height, width, _ = image.shape
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    matches = set()
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[dy : dy + height, dx : dx + width]
            for flip, view in ((False, crop), (True, crop[:, ::-1])):
                if np.array_equal(view, output):
                    matches.add((dy, dx, flip))
    return matches


@pytest.mark.parametrize("policy", augment.AUGMENT_POLICIES)
def test_augment_keeps_shape_dtype_and_is_deterministic(policy):
    images = _random_images((8, 10, 12, 3))
    key = jax.random.key(0)
    # Two separate traces lower to the same program, constants included: nothing is drawn while tracing, so the
    # batch is a function of the key and the images alone (an op-by-op call, compared before, cost 3x the time).
    programs = [jax.jit(lambda k, x: augment.augment_batch(k, x, policy)).lower(key, images) for _ in range(2)]
    assert programs[0].as_text() == programs[1].as_text()
    compiled = programs[0].compile()
    out = compiled(key, images)
    assert out.shape == images.shape and out.dtype == jnp.uint8
    np.testing.assert_array_equal(out, compiled(key, images))  # same key, same batch


def test_augment_none_is_identity():
    images = _random_images((4, 8, 8, 3))
    np.testing.assert_array_equal(augment.augment_batch(jax.random.key(1), images, "none"), images)


def test_crop_never_flips():
    images = jnp.zeros((32, 6, 8, 1), jnp.uint8).at[:, :, :4].set(200)  # left half bright, right half dark
    np.testing.assert_array_equal(augment.augment_batch(jax.random.key(2), images, "crop", padding=0), images)


def test_crop_flip_without_padding_mirrors_about_half():
    images = _random_images((64, 6, 8, 3))
    out = np.asarray(augment.augment_batch(jax.random.key(3), images, "crop_flip", padding=0))
    same = [np.array_equal(o, i) for o, i in zip(out, np.asarray(images))]
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, np.asarray(images))]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 10 < sum(mirrored) < 54 and 10 < sum(same) < 54


def test_crop_offsets_stay_within_padding():
    padding, images = 3, jnp.full((64, 10, 12, 3), 255, jnp.uint8)
    out = np.asarray(augment.augment_batch(jax.random.key(4), images, "crop_flip", padding=padding))
    for image in out:
        bright = (image == 255).all(axis=-1)
        rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
        # One 255 rectangle; zero bands at most `padding` wide, on one side per axis at most.
        top, bottom, left, right = rows[0], 9 - rows[-1], cols[0], 11 - cols[-1]
        assert max(top, bottom, left, right) <= padding and min(top, bottom) == 0 and min(left, right) == 0
        expected = np.zeros_like(image)
        expected[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = 255
        np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize("policy", ["crop", "crop_flip"])
def test_augment_matches_numpy_reference(policy):
    padding, images = 2, _random_images((256, 7, 9, 2), seed=5)
    out = np.asarray(augment.augment_batch(jax.random.key(5), images, policy, padding=padding))
    found = set()
    for image, output in zip(np.asarray(images), out):
        matches = _reference_matches(image, output, padding)
        assert matches, "output is no crop of the padded image"
        assert len(matches) == 1  # random pixels: the offset and flip are unique
        found |= matches
    offsets = {(dy, dx) for dy, dx, _ in found}
    assert offsets == {(dy, dx) for dy in range(5) for dx in range(5)}
    assert {flip for _, _, flip in found} == ({False, True} if policy == "crop_flip" else {False})


def test_augment_rejects_unknown_policy():
    with pytest.raises(ValueError, match=r"'flip'.*crop_flip.*none"):
        augment.augment_batch(jax.random.key(0), _random_images((1, 4, 4, 3)), "flip")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_normalize_matches_numpy(dtype):
    images = _random_images((3, 4, 5, 3))
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    out = augment.normalize(images, mean, std, dtype)
    expected = (np.asarray(images, np.float64) / 255 - np.array(mean)) / np.array(std)
    assert out.dtype == dtype and out.shape == images.shape
    tolerance = 1e-2 if dtype == jnp.bfloat16 else 1e-6
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=tolerance, atol=tolerance)


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


def test_unprepared_tfds_dataset_is_prepared_when_its_hosts_answer(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    calls = []

    class Prepared(Exception):
        pass

    def fake_prepare(builder, **kwargs):
        calls.append((builder.name, kwargs))
        raise Prepared

    monkeypatch.setattr(data, "_downloads_reachable", lambda builder: True)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fake_prepare)
    with pytest.raises(Prepared):
        data.load_dataset("cifar10", data_dir=str(tmp_path), validation_size=0)
    assert calls == [("cifar10", {"file_format": "array_record"})]


def test_download_hosts_check_is_fast_offline(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data.socket, "create_connection", refuse)
    assert data._downloads_reachable(tfds.builder("cifar10")) is False


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


def test_svhn_extra_adds_the_extra_split_to_training_only(no_network, tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        plain = data.load_dataset("svhn_cropped", data_dir=str(tmp_path), validation_size=4)
        extra = data.load_dataset("svhn_cropped", data_dir=str(tmp_path), validation_size=4, svhn_extra=True)
    assert (len(plain.x_train), len(extra.x_train)) == (8, 20)  # 12 train + 12 extra, less 4 for validation
    assert len(extra.x_test) == len(plain.x_test) == 12
    np.testing.assert_array_equal(extra.x_test, plain.x_test)
    with pytest.raises(ValueError, match="svhn_extra adds the 'extra' split of the tfds dataset svhn_cropped"):
        data.load_dataset("cifar10", data_dir=str(tmp_path), svhn_extra=True)


@pytest.mark.parametrize("policy", ["crop", "crop_flip"])
def test_crop_flip_applies_the_drawn_offsets_and_flips(policy):
    """Each image is cropped at its own draw of the 'crop' stream and mirrored by its own draw of the 'flip'
    stream, as numpy pads, slices and reverses it: the implementation may change, the augmented batch
    of a given key may not (a run's numbers depend on it)."""
    padding, images = 4, np.asarray(_random_images((64, 32, 32, 3), seed=6))
    key = jax.random.key(6)
    out = np.asarray(jax.jit(augment.augment_batch, static_argnames="policy")(key, images, policy=policy))
    offsets = np.asarray(jax.random.randint(streams.child(key, "crop"), (64, 2), 0, 2 * padding + 1))
    flips = np.asarray(jax.random.bernoulli(streams.child(key, "flip"), shape=(64, 1, 1, 1))).ravel()
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    for image, output, (dy, dx), flip in zip(padded, out, offsets, flips):
        crop = image[dy : dy + 32, dx : dx + 32]
        np.testing.assert_array_equal(output, crop[:, ::-1] if flip and policy == "crop_flip" else crop)
