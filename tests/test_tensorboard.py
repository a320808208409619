"""TensorBoard events: they mirror metrics.jsonl, a resume continues them, a new directory starts with the run's
history, and the first layer's filters are drawn as one normalised mosaic."""

import struct

import numpy as np
import pytest

from blasso_jax.common import files
from blasso_jax.config import train_config as config_lib
from blasso_jax.training import tensorboard, train


def read_events(paths):
    """The events of the tfevents files `paths` in order, from the TFRecord framing (length, its CRC, data, its
    CRC) and tensorboardX's `Event` protobuf: no TensorFlow or tensorboard package needed."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for path in paths:
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            events.append(Event.FromString(data[offset + 12 : offset + 12 + length]))
            offset += 12 + length + 4
    return events


def event_values(events):
    """{tag: [(step, value or image)]}, in the order written."""
    values = {}
    for event in events:
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            values.setdefault(value.tag, []).append((event.step, getattr(value, kind)))
    return values


def test_tensorboard_events_mirror_metrics_and_a_resume_continues_them(tmp_path):
    config = config_lib.preset("smoke", locality_every=1, tensorboard=True, synthetic_shape=(8, 8, 3))
    workdir = tmp_path / "run"
    train.train_and_evaluate(config, workdir, stop_after=1)
    train.train_and_evaluate(config, workdir, resume=True)
    assert len(list((workdir / "tensorboard").glob("*tfevents*"))) == 2  # the resumed run appends a file
    values = event_values(read_events(sorted((workdir / "tensorboard").glob("*tfevents*"))))
    records = files.read_jsonl(workdir / "metrics.jsonl")
    for tag, key in (("loss/train", "train_loss"), ("accuracy/val", "val_accuracy"), ("lr", "lr")):
        assert values[tag] == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in records]
    assert values["nonzero/layer1"] == [(r["epoch"], r["nonzero_per_layer"]["layer1"]) for r in records]
    locality = records[-1]["locality"]["window_share_median"]
    assert values["locality/window_share_median"][-1] == (2, pytest.approx(locality, rel=1e-6))
    images = values["filters/layer1"]
    assert [step for step, _ in images] == [1, 2]
    # The 16 units of S-FC α=1 on 8x8 RGB images: 4 x 4 filters with one-pixel lines between them.
    assert (images[-1][1].height, images[-1][1].width, images[-1][1].colorspace) == (4 * 9 - 1, 4 * 9 - 1, 3)
    assert images[-1][1].encoded_image_string.startswith(b"\x89PNG")


def test_tensorboard_starts_a_new_directory_with_the_history_and_purges_on_reopening(tmp_path):
    history = [{"epoch": 1, "train_loss": 2.0, "val_accuracy": None, "nonzero_per_layer": {"layer1": 5}}]
    record = {"epoch": 2, "train_loss": 1.0, "val_accuracy": 0.5, "locality": {"units": 2, "radius_median": None}}
    params = {"layer1": {"kernel": np.ones((2 * 2 * 3, 3), np.float32)}}
    for _ in range(2):  # the second time, as a resume from epoch 1 of a run already written up to epoch 2
        with tensorboard.epoch_events(True, tmp_path, (2, 2, 3), history) as write:
            write(record, params)
    files = [read_events([path]) for path in sorted((tmp_path / "tensorboard").glob("*tfevents*"))]
    assert len(files) == 2
    assert event_values(files[0]) == {
        "loss/train": [(1, 2.0), (2, 1.0)],  # epoch 1 from the history: the directory was new
        "nonzero/layer1": [(1, 5.0)],
        "accuracy/val": [(2, 0.5)],
        "locality/units": [(2, 2.0)],  # None (not measured) is left out
        "filters/layer1": [(2, files[0][-1].summary.value[0].image)],
    }
    assert {tag: [step for step, _ in v] for tag, v in event_values(files[1]).items()} == {
        "loss/train": [2],
        "accuracy/val": [2],
        "locality/units": [2],
        "filters/layer1": [2],
    }
    purge = [e.step for e in files[1] if e.session_log.status == e.session_log.START]
    assert purge == [2]  # TensorBoard drops the first file's events from step 2 on


def test_filter_mosaic_tiles_each_filter_normalised():
    kernel = np.zeros((2 * 2 * 3, 3), np.float32)  # inputs in (row, col, channel) order
    kernel[0, 0], kernel[1, 0], kernel[5, 2] = -4.0, 2.0, 0.5
    mosaic = tensorboard.filter_mosaic(kernel, (2, 2, 3))
    assert mosaic.shape == (5, 5, 3)  # 2 x 2 tiles of 2 x 2 pixels and a one-pixel line between them
    np.testing.assert_array_equal(mosaic[2], 1.0)
    np.testing.assert_array_equal(mosaic[:, 2], 1.0)
    np.testing.assert_array_equal(mosaic[0, 0], [1.0, 0.5, 0.0])  # unit 0, |w| / max |w|
    np.testing.assert_array_equal(mosaic[0, 3:5], 0.0)  # unit 1 is all zero
    np.testing.assert_array_equal(mosaic[3, 1], [0.0, 0.0, 1.0])  # unit 2
    np.testing.assert_array_equal(mosaic[3:5, 3:5], 0.0)  # no fourth unit
