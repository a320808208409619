"""Tests for the tfds datasets: tfds's mock data for CIFAR-10, CIFAR-100 and SVHN, a tiny dataset prepared
offline in both file formats, and the paths that would download, which must fail at once when offline."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from blasso_jax.data import datasets as data

# The tiny dataset is prepared once per module: every test of this file on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_tfds")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_network(monkeypatch):
    """Make any connection attempt fail at once, as on an offline machine, instead of hanging."""

    def refuse(*args, **kwargs):
        raise OSError("network unreachable (blocked by the test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


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


def test_unprepared_tfds_dataset_is_prepared_when_its_hosts_answer(tmp_path, monkeypatch):
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

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data.socket, "create_connection", refuse)
    assert data._downloads_reachable(tfds.builder("cifar10")) is False


def test_svhn_extra_adds_the_extra_split_to_training_only(no_network, tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        plain = data.load_dataset("svhn_cropped", data_dir=str(tmp_path), validation_size=4)
        extra = data.load_dataset("svhn_cropped", data_dir=str(tmp_path), validation_size=4, svhn_extra=True)
    assert (len(plain.x_train), len(extra.x_train)) == (8, 20)  # 12 train + 12 extra, less 4 for validation
    assert len(extra.x_test) == len(plain.x_test) == 12
    np.testing.assert_array_equal(extra.x_test, plain.x_test)
    with pytest.raises(ValueError, match="svhn_extra adds the 'extra' split of the tfds dataset svhn_cropped"):
        data.load_dataset("cifar10", data_dir=str(tmp_path), svhn_extra=True)
