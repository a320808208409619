"""An epoch's record (one line of `metrics.jsonl`) and where records go: the metrics file and TensorBoard.

`due` says when an every-k-epochs event falls; `EpochLog` is the one writer the trainer talks to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from blasso_jax.analysis import measures as analysis
from blasso_jax.common import files, parallel, rng
from blasso_jax.config.train_config import TrainConfig
from blasso_jax.data.datasets import Dataset
from blasso_jax.models.counting import FIRST_LAYER, kernel_sizes
from blasso_jax.training import step, tensorboard
from blasso_jax.training.run_state import RunState
from blasso_jax.training.selection import best_by_validation

Accuracy = Callable[[Any, str], "float | None"]


def due(epoch: int, every: int, last: int) -> bool:
    """Whether an every-`every`-epochs event falls on `epoch`: every multiple of it and the `last` epoch (0: never).

    Examples:
      >>> [e for e in range(1, 8) if due(e, 3, last=7)]
      [3, 6, 7]
    """
    return bool(every) and (epoch % every == 0 or epoch == last)


class NonFiniteLossError(RuntimeError):
    """The loss or the gradients became NaN or infinite."""


def make_accuracy(config: TrainConfig, mesh: jax.sharding.Mesh, dataset: Dataset) -> Accuracy:
    """`(state, 'val' | 'test') -> accuracy`, None for an empty split; the splits stay on device."""
    evaluate = step.make_evaluate(mesh, config.batch_size, dataset.mean, dataset.std, config.compute_dtype)
    splits = {
        name: tuple(
            parallel.put_replicated(a, mesh) for a in step.pad_for_eval(x, y.astype(np.int32), config.batch_size)
        )
        for name, (x, y) in {"val": (dataset.x_val, dataset.y_val), "test": (dataset.x_test, dataset.y_test)}.items()
        if len(x)
    }
    sizes = {"val": len(dataset.x_val), "test": len(dataset.x_test)}

    def accuracy(state: Any, split: str) -> float | None:
        if split not in splits:
            return None
        correct, _ = evaluate(state, *splits[split])
        return int(correct) / sizes[split]

    return accuracy


def best_record(history: list[dict[str, Any]], first_epoch: int = 1) -> dict[str, Any] | None:
    """The record of best validation accuracy from `first_epoch` on (the earliest among equals), or None without
    validation. A pruning method starts at its final structure (`Method.selectable_from`): never a denser model."""
    return best_by_validation([r for r in history if r["epoch"] >= first_epoch], lambda r: r.get("val_accuracy"))


def selectable(run: RunState, epoch: int) -> bool:
    """Whether `epoch`'s model may be selected: a pruning method's denser epochs never are."""
    return epoch >= run.first_selectable


def selected_record(run: RunState) -> dict[str, Any] | None:
    """The record that selection by validation picks among the run's selectable epochs."""
    return best_record(run.history, run.first_selectable)


def is_new_best(run: RunState, epoch: int, val: float | None) -> bool:
    """Whether validation accuracy `val` at `epoch` beats every selectable epoch so far."""
    best = selected_record(run)
    return val is not None and selectable(run, epoch) and (best is None or val > best["val_accuracy"])


def epoch_record(
    run: RunState, epoch: int, totals: step.EpochTotals | None, nonzero: dict, accuracy: Accuracy, tic: float
) -> dict[str, Any]:
    """The metrics line of one epoch: losses, accuracies (test when due or at a new best), non-zeros, lr, time.

    `totals` is None for an epoch rebuilt from its checkpoint (its training loss and accuracy are lost): the
    line then says `"rebuilt": true` and holds None for them.
    """
    config = run.config
    val = accuracy(run.state, "val")
    new_best = is_new_best(run, epoch, val)
    test_due = due(epoch, config.test_every, config.epochs) or new_best
    dense = sum(kernel_sizes(run.state.params).values())
    steps = run.steps_per_epoch
    record = {
        "epoch": epoch,
        "train_loss": None
        if totals is None
        else float(totals.loss) / max(int(totals.examples) // config.batch_size, 1),
        "train_accuracy": None if totals is None else int(totals.correct) / max(int(totals.examples), 1),
        "val_accuracy": val,
        "test_accuracy": accuracy(run.state, "test") if test_due else None,
        "nonzero_per_layer": {k: int(v) for k, v in nonzero.items()},
        "nonzero_fraction": sum(int(v) for v in nonzero.values()) / dense,
        "lr": float(run.method.schedule(config, steps)(epoch * steps)),
        "skipped_steps": None if totals is None else int(totals.skipped_steps),
        "epoch_seconds": time.time() - tic,
    }
    if totals is None:
        record["rebuilt"] = True
    if run.state.params[FIRST_LAYER]["kernel"].ndim == 2 and due(epoch, config.locality_every, config.epochs):
        record["locality"] = locality_summary(run.state.params[FIRST_LAYER]["kernel"], run.dataset, config.seed)
    return record


def locality_summary(kernel: Any, dataset: Dataset, seed: int) -> dict[str, Any]:
    """Locality of a dense first layer's units on the dataset's geometry (`analysis.first_layer_locality`, its
    permutation null drawn from the seed's own stream), summarised; NaN as None for JSON."""
    key = rng.child(jax.random.key(seed), "locality")
    summary = analysis.first_layer_locality(parallel.one_copy(kernel), dataset.image_shape, dataset.geometry, key)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}


def check_finite(config: TrainConfig, epoch: int, totals: step.EpochTotals, steps: int, last_good: str) -> None:
    """Raises NonFiniteLossError at a non-finite loss or gradient (on_nonfinite='stop'), or when every step of the
    epoch was skipped for one ('skip': nothing was trained, so going on would only report garbage)."""
    first_bad = int(totals.first_nonfinite_step)
    every_step = int(totals.skipped_steps) >= steps
    if first_bad < 0 or (config.on_nonfinite == "skip" and not every_step):
        return
    where = (
        f"every one of the {steps} steps of epoch {epoch} had a non-finite loss or gradient (skipped)"
        if config.on_nonfinite == "skip"
        else f"non-finite loss or gradient at epoch {epoch}, step {first_bad + 1} of {steps}"
    )
    raise NonFiniteLossError(
        f"{where}; the last good checkpoint is {last_good} (lower the learning rate, or set on_nonfinite='skip' to "
        "skip such steps)"
    )


class EpochLog:
    """Where each epoch's record goes: appended to `metrics.jsonl` (process 0) and, with `--tensorboard`, added to
    the run's event files. A context manager: the event file closes however the epochs end."""

    def __init__(self, config: TrainConfig, workdir: Path, image_shape: tuple[int, ...], history: list[dict]):
        self.path = workdir / "metrics.jsonl"
        self._events = tensorboard.epoch_events(config.tensorboard, workdir, image_shape, history)
        self._write_events: tensorboard.EpochWriter | None = None

    def __enter__(self) -> EpochLog:
        self._write_events = self._events.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._events.__exit__(*exc)

    def write(self, record: dict[str, Any], params: Any) -> None:
        """Appends `record` (flushed, so a crash loses at most the epoch in flight) and adds its events."""
        if parallel.is_writer():
            files.append_jsonl(self.path, record)
        self._write_events(record, params)

    def rewrite(self, history: list[dict[str, Any]]) -> None:
        """Replaces `metrics.jsonl` by `history` (a resumed run's lines up to its checkpoint)."""
        if parallel.is_writer():
            files.write_jsonl(self.path, history)
