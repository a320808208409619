"""One training run: check and prepare, restore, train epochs, summarise; and sweeps' run-or-read-back.

The compiled step and epoch live in `blasso_jax.step`, the run directory and its checkpoints in
`blasso_jax.checkpoints`, the mesh and layouts in `blasso_jax.parallel`; this module strings them
together and writes `metrics.jsonl` and `results.json`. Under `jax.distributed.initialize()` every
process runs it alike (the mesh spans them all); process 0 alone writes the run's files, and all
take part in checkpoints, as orbax requires.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from blasso_jax import analysis, files, methods, parallel, rng, stopping, tensorboard
from blasso_jax import data as data_lib
from blasso_jax import permute as permute_lib
from blasso_jax.checkpoints import Checkpoints, checkpointed_tree, latest_epoch, tree_bytes
from blasso_jax.config import TrainConfig, model_from_config
from blasso_jax.counting import FIRST_LAYER, kernel_sizes, nonzero_counts
from blasso_jax.progress import Progress, log
from blasso_jax.rundir import WorkdirError, check_resumed_config, check_workdir, create_workdir, git_commit
from blasso_jax.step import (
    EpochTotals,
    TrainState,
    create_train_state,
    learning_rate_schedule,
    make_evaluate,
    make_train_epoch,
    pad_for_eval,
)


class NonFiniteLossError(RuntimeError):
    """The loss or the gradients became NaN or infinite."""


# --------------------------------------------------------------------------------------------- #
# The run: prepare, restore, train epochs, summarise.
# --------------------------------------------------------------------------------------------- #


@dataclasses.dataclass
class _Run:
    """What the steps of one run share: its inputs, compiled functions, state and history."""

    config: TrainConfig
    workdir: Path
    dataset: data_lib.Dataset
    policy: str
    steps_per_epoch: int
    mesh: jax.sharding.Mesh
    state: TrainState
    checkpoints: Checkpoints
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def best_record(self) -> dict[str, Any] | None:
        """The record of best validation accuracy (the first among equals), or None without validation."""
        scored = [r for r in self.history if r.get("val_accuracy") is not None]
        return max(scored, key=lambda r: (r["val_accuracy"], -r["epoch"])) if scored else None


def _load_data(config: TrainConfig) -> data_lib.Dataset:
    """The config's dataset, split and checked against the batch size."""
    dataset = data_lib.load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        cache_dir=config.cache_dir,
        validation_size=config.validation_size,
        train_size=config.train_size,
        svhn_extra=config.svhn_extra,
        seed=config.seed,
        synthetic_shape=config.synthetic_shape,
        synthetic_classes=config.synthetic_classes,
        synthetic_train_size=config.synthetic_train_size,
        synthetic_test_size=config.synthetic_test_size,
    )
    if config.permute_pixels:
        dataset = permute_lib.permute_dataset(dataset)
    if len(dataset.x_train) < config.batch_size:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the {len(dataset.x_train)} training examples of {config.dataset}"
        )
    return dataset


def _record_run_info(workdir: Path, config: TrainConfig, dataset: data_lib.Dataset, policy: str, resume: bool) -> None:
    """Appends the config to `config.jsonl` and writes `dataset.json`, the run's description."""
    files.append_jsonl(workdir / "config.jsonl", config.to_dict())
    description = {
        "name": dataset.name,
        "image_shape": list(dataset.image_shape),
        "num_classes": dataset.num_classes,
        "class_names": list(dataset.class_names),
        "augment": policy,
    }
    if dataset.geometry is not None:
        description["geometry"] = dataset.geometry.to_dict()
    files.atomic_write_json(workdir / "dataset.json", description)


def _start(
    config: TrainConfig, workdir: str | os.PathLike, *, resume: bool, overwrite: bool, stop_after: int | None
) -> _Run:
    """Checks every input, then creates the workdir, the initial state and, with `resume`, restores the newest
    checkpoint and the metrics up to it."""
    config.validate(jax.device_count())
    if stop_after is not None and not 1 <= stop_after <= config.epochs:
        raise ValueError(f"stop_after {stop_after} is outside the run's epochs 1 to {config.epochs}")
    workdir = check_workdir(workdir, resume=resume, overwrite=overwrite)
    if resume:
        check_resumed_config(workdir, config)
        done = latest_epoch(workdir)
        if stop_after is not None and done is not None and stop_after <= done:
            raise ValueError(f"stop_after {stop_after} is not after the checkpoint of epoch {done} in {workdir}")
    dataset = _load_data(config)
    policy = data_lib.augment_policy(config.augment, dataset)
    steps_per_epoch = len(dataset.x_train) // config.batch_size
    model = model_from_config(config, dataset.num_classes, dataset.image_shape)
    # Every input is checked: from here on the run writes to its workdir (process 0 its files, under its lock).
    parallel.sync("inputs checked")
    lock = None
    if parallel.is_writer():
        lock = create_workdir(workdir, overwrite=overwrite)
        _record_run_info(workdir, config, dataset, policy, resume)
    parallel.sync("workdir created")
    mesh = parallel.make_mesh(model_parallel=config.model_parallel)
    key = rng.init_key(config.seed)
    # Created in its sharded layout: no device ever holds a whole model-sharded kernel.
    state = parallel.init_sharded(
        lambda key: create_train_state(config, model, dataset.image_shape, steps_per_epoch, key), key, mesh
    )
    checkpoints = Checkpoints(workdir, config.keep_checkpoints, lock)
    run = _Run(config, workdir, dataset, policy, steps_per_epoch, mesh, state, checkpoints)
    _log_start(run)
    if resume:
        # A run stopped before its first checkpoint (Ctrl-C, a non-finite loss) restarts from epoch 0.
        if latest_epoch(workdir) is not None:
            epoch, run.state = run.checkpoints.restore(run.state)  # in this run's layout, whichever mesh saved it
        else:
            epoch = 0
        run.history = [r for r in files.read_jsonl(workdir / "metrics.jsonl") if r["epoch"] <= epoch]
        parallel.sync("metrics read")
        if parallel.is_writer():
            files.write_jsonl(workdir / "metrics.jsonl", run.history)
        log(f"resumed from the checkpoint of epoch {epoch}" if epoch else "no checkpoint yet: training from epoch 1")
    return run


def _log_start(run: _Run) -> None:
    config, dataset = run.config, run.dataset
    log(
        f"{config.model} α={config.alpha} on {dataset.name} ({len(dataset.x_train)} train / "
        f"{len(dataset.x_val)} val / {len(dataset.x_test)} test, {dataset.num_classes} classes), "
        f"{methods.get(config.method).label(config)}, {config.precision}, "
        f"{jax.device_count()} {jax.devices()[0].device_kind} device(s) in {jax.process_count()} process(es), "
        f"mesh data={run.mesh.shape['data']} x model={run.mesh.shape['model']}; "
        f"{sum(kernel_sizes(run.state.params).values()):,} weights; "
        f"checkpoint size {tree_bytes(checkpointed_tree(run.state)) / 2**20:.1f} MiB "
        f"(params, BatchNorm statistics and optimizer state, each stored once)"
    )


def _train_epochs(run: _Run, stop_after: int | None) -> bool:
    """Trains from the epoch after the history to the end (or `stop_after`); True when the run is complete."""
    config, dataset = run.config, run.dataset
    # The training set split by rows over "data": each device holds 1/D of it.
    x_train = parallel.put_rows(dataset.x_train, run.mesh)
    y_train = parallel.put_rows(dataset.y_train.astype(np.int32), run.mesh)
    train_epoch = make_train_epoch(config, run.mesh, len(dataset.x_train), run.policy, dataset.mean, dataset.std)
    accuracy = _make_accuracy(run)
    count_nonzero = jax.jit(nonzero_counts)
    progress = Progress(config.epochs)
    first_epoch = run.history[-1]["epoch"] + 1 if run.history else 1
    events = tensorboard.epoch_events(config.tensorboard, run.workdir, dataset.image_shape, run.history)
    with stopping.stop_on_signals() as stop, events as write_events:
        for epoch in range(first_epoch, config.epochs + 1):
            tic = time.time()
            run.state, totals = train_epoch(run.state, x_train, y_train, rng.epoch_key(config.seed, epoch))
            totals, nonzero = parallel.fetch((totals, count_nonzero(run.state.params)))
            _check_finite(run, epoch, totals)
            record = _epoch_record(run, epoch, totals, nonzero, accuracy, tic)
            signum = stop.agreed()
            _finish_epoch(run, record, checkpoint=epoch == stop_after or signum is not None)
            write_events(record, run.state.params)
            seconds = [r["epoch_seconds"] for r in run.history[-20:]]
            if parallel.is_writer():
                progress.update(record, float(np.median(seconds)) * (config.epochs - epoch))
            if signum is not None and epoch < config.epochs:
                run.checkpoints.close()
                raise stopping.StopRequested(signum, epoch, str(run.workdir))
            if epoch == stop_after:
                run.checkpoints.close()
                log(f"stopped after epoch {epoch} as asked; continue with --resume")
                return False
    run.checkpoints.close()
    return True


def _check_finite(run: _Run, epoch: int, totals: EpochTotals) -> None:
    """Stops the run at a non-finite loss or gradient (on_nonfinite='stop'), or when every step of the epoch
    was skipped for one ('skip': nothing was trained, so going on would only report garbage)."""
    first_bad = int(totals.first_nonfinite_step)
    every_step = int(totals.skipped_steps) >= run.steps_per_epoch
    if first_bad < 0 or (run.config.on_nonfinite == "skip" and not every_step):
        return
    run.checkpoints.close()
    where = (
        f"every one of the {run.steps_per_epoch} steps of epoch {epoch} had a non-finite loss or gradient (skipped)"
        if run.config.on_nonfinite == "skip"
        else f"non-finite loss or gradient at epoch {epoch}, step {first_bad + 1} of {run.steps_per_epoch}"
    )
    raise NonFiniteLossError(
        f"{where}; the last good checkpoint is epoch {latest_epoch(run.workdir)} in {run.workdir / 'checkpoints'} "
        "(lower the learning rate, or set on_nonfinite='skip' to skip such steps)"
    )


def _make_accuracy(run: _Run) -> Callable[[TrainState, str], float | None]:
    """`(state, 'val' | 'test') -> accuracy`, None for an empty split; the splits stay on device."""
    config, dataset = run.config, run.dataset
    evaluate = make_evaluate(config, run.mesh, config.batch_size, dataset.mean, dataset.std)
    splits = {
        name: tuple(
            parallel.put_replicated(a, run.mesh) for a in pad_for_eval(x, y.astype(np.int32), config.batch_size)
        )
        for name, (x, y) in {"val": (dataset.x_val, dataset.y_val), "test": (dataset.x_test, dataset.y_test)}.items()
        if len(x)
    }
    sizes = {"val": len(dataset.x_val), "test": len(dataset.x_test)}

    def accuracy(state: TrainState, split: str) -> float | None:
        if split not in splits:
            return None
        correct, _ = evaluate(state, *splits[split])
        return int(correct) / sizes[split]

    return accuracy


def _epoch_record(run: _Run, epoch: int, totals: EpochTotals, nonzero: dict, accuracy: Callable, tic: float) -> dict:
    """The metrics line of one epoch: losses, accuracies (test when due or at a new best), non-zeros, lr, time."""
    config = run.config
    val = accuracy(run.state, "val")
    best = run.best_record
    new_best = val is not None and (best is None or val > best["val_accuracy"])
    test_due = epoch % config.test_every == 0 or new_best or epoch == config.epochs
    dense = sum(kernel_sizes(run.state.params).values())
    record = {
        "epoch": epoch,
        "train_loss": float(totals.loss) / max(int(totals.examples) // config.batch_size, 1),
        "train_accuracy": int(totals.correct) / max(int(totals.examples), 1),
        "val_accuracy": val,
        "test_accuracy": accuracy(run.state, "test") if test_due else None,
        "nonzero_per_layer": {k: int(v) for k, v in nonzero.items()},
        "nonzero_fraction": sum(int(v) for v in nonzero.values()) / dense,
        "lr": float(learning_rate_schedule(config, run.steps_per_epoch)(epoch * run.steps_per_epoch)),
        "skipped_steps": int(totals.skipped_steps),
        "epoch_seconds": time.time() - tic,
    }
    locality_due = config.locality_every and (epoch % config.locality_every == 0 or epoch == config.epochs)
    if run.state.params[FIRST_LAYER]["kernel"].ndim == 2 and locality_due:
        record["locality"] = _locality_summary(run.state, run.dataset, config.seed)
    return record


def _finish_epoch(run: _Run, record: dict, checkpoint: bool) -> None:
    """Checkpoints the epoch when due, asked (`checkpoint`) or the best so far, then appends its record."""
    config, epoch = run.config, record["epoch"]
    best = run.best_record
    new_best = record["val_accuracy"] is not None and (best is None or record["val_accuracy"] > best["val_accuracy"])
    if new_best or epoch % config.checkpoint_every == 0 or epoch == config.epochs or checkpoint:
        run.checkpoints.save(epoch, run.state, record["val_accuracy"])
    if parallel.is_writer():
        files.append_jsonl(run.workdir / "metrics.jsonl", record)
    run.history.append(record)


def train_and_evaluate(
    config: TrainConfig,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any] | None:
    """Trains per `config`, logging `metrics.jsonl` and checkpoints in `workdir`; returns `results.json`'s content.

    Args:
      config: the run; checked before anything is written.
      workdir: the run directory; refused if it holds a run, unless `resume` or `overwrite`.
      resume: continue from the newest complete checkpoint (bitwise as if never interrupted, on CPU).
      overwrite: replace whatever `workdir` holds.
      stop_after: checkpoint and return None after this epoch, for jobs with a time limit; a later
        call with `resume=True` continues exactly where it stopped.

    Returns:
      The content of `results.json` (best-validation and final accuracies, non-zeros, locality,
      config, commit, device, wall time), or None after `stop_after`.
    """
    start_time = time.time()
    run = _start(config, workdir, resume=resume, overwrite=overwrite, stop_after=stop_after)
    if not _train_epochs(run, stop_after):
        return None
    return _summarise(run, time.time() - start_time)


def _summarise(run: _Run, wall_seconds: float) -> dict[str, Any]:
    """Writes `sparse_params.npz` and `results.json` (atomically, process 0) and returns the results."""
    workdir, final, best = run.workdir, run.history[-1], run.best_record
    params, batch_stats = parallel.fetch((run.state.params, run.state.batch_stats))
    if parallel.is_writer():
        analysis.save_sparse(workdir / "sparse_params.npz", params, batch_stats)
    parallel.sync("sparse params written")
    selected = best or final  # model selection by validation accuracy, as the paper; else the final epoch
    results = {
        "val_accuracy": {"best": best["val_accuracy"] if best else None, "final": final["val_accuracy"]},
        # "best" is the test accuracy at the epoch of best validation accuracy.
        "test_accuracy": {"best": selected["test_accuracy"], "final": final["test_accuracy"]},
        "best_epoch": selected["epoch"],
        "nonzero_per_layer": final["nonzero_per_layer"],
        "dense_per_layer": kernel_sizes(params),
        "description_length": analysis.description_length(params),
        "locality": final.get("locality"),
        # The trained weights stored as (index, value) pairs against the dense float32 arrays.
        "sparse_export_bytes": (workdir / "sparse_params.npz").stat().st_size,
        "dense_bytes": tree_bytes((params, batch_stats)),
        "checkpoint_bytes": sum(
            f.stat().st_size for f in (workdir / "checkpoints" / str(final["epoch"])).rglob("*") if f.is_file()
        ),
        "epochs": final["epoch"],
        "config": run.config.to_dict(),
        "git_commit": git_commit(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "wall_seconds": wall_seconds,
    }
    if parallel.is_writer():
        files.atomic_write_json(workdir / "results.json", results)
    return results


def run_once(config: TrainConfig, workdir: str | os.PathLike) -> dict[str, Any]:
    """Results of the run in `workdir`: read if finished, resumed if interrupted, trained otherwise.

    Sweeps (Tables 1 and 2, Figure 3) call this per cell, so an interrupted sweep restarts where it
    stopped. A finished run counts as this config's when every field its method reads agrees (`tensorboard`
    aside: event files do not change a run).
    """
    workdir = Path(workdir)
    if (workdir / "results.json").exists():
        results = json.loads((workdir / "results.json").read_text())
        saved = TrainConfig.from_dict(results["config"]).replace(tensorboard=config.tensorboard).to_dict()
        if methods.relevant_config(saved) != methods.relevant_config(config.to_dict()):
            raise WorkdirError(f"{workdir} holds a finished run of another config; choose another workdir")
        return results
    resume = latest_epoch(workdir) is not None
    return train_and_evaluate(config, workdir, resume=resume, overwrite=not resume)


def best_by_validation(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The results of best validation accuracy, the first among equals: the paper's model selection."""
    if any(r["val_accuracy"]["best"] is None for r in results):
        raise ValueError("selection by validation accuracy needs a validation split; set validation_size above 0")
    return max(results, key=lambda r: r["val_accuracy"]["best"])


def _locality_summary(state: TrainState, dataset: data_lib.Dataset, seed: int) -> dict[str, Any]:
    """Locality of a dense first layer's units on the dataset's geometry (`analysis.first_layer_locality`)."""
    key = rng.child(jax.random.key(seed), "locality")
    kernel = state.params[FIRST_LAYER]["kernel"]
    summary = analysis.first_layer_locality(kernel, dataset.image_shape, dataset.geometry, key)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}
