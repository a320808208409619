"""TensorBoard event files of a run, in `<workdir>/tensorboard/`: a view of its `metrics.jsonl`, which stays the
record. Written with tensorboardX, so TensorFlow is not needed; `tensorboard --logdir runs` shows them."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blasso_jax.analysis.filters import fc_filters_as_images, normalised_filters
from blasso_jax.common import parallel
from blasso_jax.models.counting import FIRST_LAYER

DIRECTORY = "tensorboard"
FILTER_UNITS = 64  # first-layer units shown in the filter mosaic

EpochWriter = Callable[[dict[str, Any], Any], None]


def epoch_scalars(record: dict[str, Any]) -> dict[str, float]:
    """One `metrics.jsonl` record's numbers by TensorBoard tag; values not measured (None) are left out."""
    values = {
        "loss/train": record.get("train_loss"),
        "accuracy/train": record.get("train_accuracy"),
        "accuracy/val": record.get("val_accuracy"),
        "accuracy/test": record.get("test_accuracy"),
        "lr": record.get("lr"),
        "nonzero/fraction": record.get("nonzero_fraction"),
        "skipped_steps": record.get("skipped_steps"),
        **{f"nonzero/{layer}": count for layer, count in record.get("nonzero_per_layer", {}).items()},
        **{f"locality/{key}": value for key, value in record.get("locality", {}).items()},
    }
    return {tag: float(value) for tag, value in values.items() if value is not None}


def filter_mosaic(kernel: np.ndarray, image_shape: Sequence[int], units: int = FILTER_UNITS) -> np.ndarray:
    """The first `units` filters of a dense first layer `[H*W*C, units]` as one RGB image `[rows*(H+1)-1,
    cols*(W+1)-1, 3]`: each |w| / max |w| in [0, 1], white lines between them; other than 3 channels, the max over them.
    """
    filters = normalised_filters(fc_filters_as_images(kernel[:, :units], image_shape))
    if filters.shape[-1] != 3:
        filters = np.repeat(filters.max(axis=-1, keepdims=True), 3, axis=-1)
    count, height, width, _ = filters.shape
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    tiles = np.ones((rows * cols, height + 1, width + 1, 3), np.float32)  # a white line right of and below each
    tiles[:, :height, :width] = 0.0  # empty cells black
    tiles[:count, :height, :width] = filters
    mosaic = tiles.reshape(rows, cols, height + 1, width + 1, 3).transpose(0, 2, 1, 3, 4)
    return mosaic.reshape(rows * (height + 1), cols * (width + 1), 3)[:-1, :-1]


@contextlib.contextmanager
def epoch_events(
    enabled: bool, workdir: Path, image_shape: Sequence[int], history: list[dict[str, Any]]
) -> Iterator[EpochWriter]:
    """Yields `write(record, params)`, which adds an epoch to `<workdir>/tensorboard` when `enabled` and does
    nothing otherwise; the event file is closed on leaving, however the epochs end.

    `write` adds the record's scalars and, when it holds a locality summary (dense first layers, every
    `locality_every` epochs and at the end), the first-layer `filter_mosaic`. Every process calls it alike (the
    filters are gathered from all of them); process 0 alone writes. A resumed run adds a new event file to the
    same directory, whose events TensorBoard shows in place of those an interrupted run wrote after `history`;
    a directory not there yet starts with `history`'s scalars, so a flag turned on at `--resume` shows the
    whole run.
    """
    if not enabled:
        yield lambda record, params: None
        return
    writer = _open_writer(workdir / DIRECTORY, history) if parallel.is_writer() else None

    def write(record: dict[str, Any], params: Any) -> None:
        kernel = parallel.fetch(params[FIRST_LAYER]["kernel"][:, :FILTER_UNITS]) if "locality" in record else None
        if writer is None:
            return
        _add_scalars(writer, record)
        if kernel is not None:
            writer.add_image("filters/layer1", filter_mosaic(kernel, image_shape), record["epoch"], dataformats="HWC")
        writer.flush()

    try:
        yield write
    finally:
        if writer is not None:
            writer.close()


def _open_writer(directory: Path, history: list[dict[str, Any]]) -> Any:
    """A tensorboardX `SummaryWriter` continuing after `history`, with `history`'s scalars if `directory` is new."""
    from tensorboardX import SummaryWriter  # imported only for runs that write events

    new = not directory.exists()
    first_epoch = history[-1]["epoch"] + 1 if history else 1
    # purge_step hides the events an interrupted run wrote from `first_epoch` on. File names hold the time in
    # seconds: the suffix in nanoseconds keeps a file opened in the same second from replacing the last one.
    writer = SummaryWriter(str(directory), purge_step=first_epoch, filename_suffix=f".{time.time_ns()}")
    for record in history if new else ():
        _add_scalars(writer, record)
    return writer


def _add_scalars(writer: Any, record: dict[str, Any]) -> None:
    for tag, value in epoch_scalars(record).items():
        writer.add_scalar(tag, value, record["epoch"])
