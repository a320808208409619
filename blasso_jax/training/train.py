"""One training run: check and prepare, restore, train epochs, summarise; and sweeps' run-or-read-back.

The compiled step and epoch live in `step`, the run directory in `rundir` and its checkpoints in `checkpoints`,
the epoch records in `records` (all in `blasso_jax.training`), the mesh and layouts in `blasso_jax.common.parallel`,
what a method does beyond its optimizer in `blasso_jax.methods`; this module strings them together. Under
`jax.distributed.initialize()` every process runs it alike (the mesh spans them all); process 0 alone writes the
run's files, and all take part in checkpoints, as orbax requires.

Order of writes, so that a run killed at any instant resumes: an epoch's metrics line is appended before its
checkpoint is written, and `--resume` continues after the newest intact checkpoint, dropping later lines
(and rebuilding that epoch's line if an older version of this code died between the two writes).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from blasso_jax.common import files, parallel, rng, stopping
from blasso_jax.common.progress import Progress, log
from blasso_jax.config.train_config import TrainConfig, model_from_config
from blasso_jax.data import augment
from blasso_jax.data import datasets as data_lib
from blasso_jax.data import permute as permute_lib
from blasso_jax.methods import registry as methods
from blasso_jax.methods.runs import same_run, validate
from blasso_jax.models.counting import kernel_sizes, nonzero_counts
from blasso_jax.training import rundir
from blasso_jax.training.checkpoints import Checkpoints, checkpointed_tree, latest_epoch, tree_bytes
from blasso_jax.training.records import EpochLog, check_finite, epoch_record, is_new_best, make_accuracy, selectable
from blasso_jax.training.run_state import RunState
from blasso_jax.training.rundir import WorkdirError
from blasso_jax.training.step import create_train_state, make_train_epoch
from blasso_jax.training.summary import summarise


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
      resume: continue from the newest intact checkpoint (bitwise as if never interrupted, on CPU); a finished
        run is left as it is and its results returned.
      overwrite: replace whatever `workdir` holds.
      stop_after: checkpoint and return None after this epoch, for jobs with a time limit; a later
        call with `resume=True` continues exactly where it stopped.

    Returns:
      The content of `results.json` (best-validation and final accuracies, non-zeros, locality,
      config, commit, device, wall time), or None after `stop_after`.
    """
    start_time, load_at_start = time.time(), os.getloadavg()
    if resume and (Path(workdir) / "results.json").is_file():
        rundir.check_resumed_config(Path(workdir).absolute(), config)
        log(f"the run in {workdir} is finished; its results are left as they are")
        return json.loads((Path(workdir) / "results.json").read_text())
    run = _start(config, workdir, resume=resume, overwrite=overwrite, stop_after=stop_after)
    try:
        if not _train_epochs(run, stop_after):
            return None
        return summarise(run, time.time() - start_time, load_at_start)
    finally:
        run.checkpoints.close()
        if run.lock is not None:
            run.lock.close()  # held until the last file of the run is written


def load_data(config: TrainConfig) -> data_lib.Dataset:
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


def _record_run_info(workdir: Path, config: TrainConfig, dataset: data_lib.Dataset, policy: str) -> None:
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
) -> RunState:
    """Checks every input and builds the initial state (and the method's start), then creates and locks the
    workdir and, with `resume`, restores the newest intact checkpoint and the metrics up to it."""
    validate(config, jax.device_count())
    method = methods.get(config.method)
    if stop_after is not None and not 1 <= stop_after <= config.epochs:
        raise ValueError(f"stop_after {stop_after} is outside the run's epochs 1 to {config.epochs}")
    workdir = rundir.check_workdir(workdir, resume=resume, overwrite=overwrite)
    done = latest_epoch(workdir) if resume else None
    if resume:
        rundir.check_resumed_config(workdir, config)
        if stop_after is not None and done is not None and stop_after <= done:
            raise ValueError(f"stop_after {stop_after} is not after the checkpoint of epoch {done} in {workdir}")
    dataset = load_data(config)
    policy = augment.resolve(config.augment, dataset.name, dataset.image_shape[-1], dataset.x_train.dtype == np.uint8)
    steps_per_epoch = len(dataset.x_train) // config.batch_size
    model = model_from_config(config, dataset.num_classes, dataset.image_shape)
    mesh = parallel.make_mesh(model_parallel=config.model_parallel)
    # Created in its sharded layout: no device ever holds a whole model-sharded kernel.
    state = parallel.init_sharded(
        lambda key: create_train_state(model, dataset.image_shape, methods.optimizer(config, steps_per_epoch), key),
        rng.init_key(config.seed),
        mesh,
    )
    if method.start is not None and done is None:
        state = parallel.shard_state(method.start(config, state, _source(method, config), dataset.image_shape), mesh)
    # Every input is checked: from here on the run writes to its workdir (process 0 its files, under its lock).
    parallel.sync("inputs checked")
    lock = None
    if parallel.is_writer():
        lock = rundir.create_workdir(workdir, overwrite=overwrite)
        _record_run_info(workdir, config, dataset, policy)
    parallel.sync("workdir created")
    checkpoints = Checkpoints(workdir, config.keep_checkpoints)
    run = RunState(config, method, workdir, dataset, policy, steps_per_epoch, mesh, state, checkpoints, lock)
    _log_start(run)
    if parallel.is_writer():
        checkpoints.warn_if_short(tree_bytes(checkpointed_tree(run.state)), config.epochs, log)
    if resume:
        _restore(run)
    return run


def _source(method: methods.Method, config: TrainConfig) -> dict[str, Any] | None:
    """The finished run a method starts from (`Method.source_run`), read back: its model and final weights."""
    path = method.source_run(config)
    if path is None:
        return None
    source_config, _, variables = rundir.load_run(path)
    return {"model": source_config.model, **variables}


def _restore(run: RunState) -> None:
    """The newest intact checkpoint into `run.state` and the metrics lines up to it into `run.history` (later
    lines, from epochs trained after that checkpoint, are dropped from metrics.jsonl)."""
    if latest_epoch(run.workdir) is None:
        log("no checkpoint yet: training from epoch 1")  # stopped before its first checkpoint
        run.done = 0
    else:
        # In this run's layout, whichever saved it (an older optimizer-state layout upgraded by its method).
        run.done, state = run.checkpoints.restore(run.state, log=log, upgrade=run.method.upgrade_opt_state)
        run.state = parallel.shard_state(state, run.mesh)
        log(f"resumed from the checkpoint of epoch {run.done}")
    run.history = [r for r in files.read_jsonl(run.workdir / "metrics.jsonl") if r["epoch"] <= run.done]
    parallel.sync("metrics read")
    if parallel.is_writer():
        files.write_jsonl(run.workdir / "metrics.jsonl", run.history)


def _log_start(run: RunState) -> None:
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


def _train_epochs(run: RunState, stop_after: int | None) -> bool:
    """Trains from the epoch after `run.done` to the end (or `stop_after`); True when the run is complete."""
    config, dataset = run.config, run.dataset
    # The training set split by rows over "data": each device holds 1/D of it.
    x_train = parallel.put_rows(dataset.x_train, run.mesh)
    y_train = parallel.put_rows(dataset.y_train.astype(np.int32), run.mesh)
    train_epoch = make_train_epoch(
        run.mesh, len(dataset.x_train), run.policy, dataset.mean, dataset.std, **config.step_options()
    )
    accuracy = make_accuracy(config, run.mesh, dataset)
    count_nonzero = jax.jit(nonzero_counts)
    progress = Progress(config.epochs)
    with stopping.stop_on_signals() as stop, EpochLog(config, run.workdir, dataset.image_shape, run.history) as out:
        if run.done and (not run.history or run.history[-1]["epoch"] != run.done):
            # The checkpoint's own line is missing (written by a version that checkpointed first): rebuild it.
            # Its checkpoint exists already, so only the line is written.
            nonzero = parallel.fetch(count_nonzero(run.state.params))
            _append(run, epoch_record(run, run.done, None, nonzero, accuracy, time.time()), out)
        for epoch in range(run.done + 1, config.epochs + 1):
            tic = time.time()
            run.state, totals = train_epoch(run.state, x_train, y_train, rng.epoch_key(config.seed, epoch))
            totals = parallel.fetch(totals)
            check_finite(config, epoch, totals, run.steps_per_epoch, _last_good(run))
            event = epoch in run.method.prune_epochs(config)  # checkpointed: the model right after its pruning
            record = epoch_record(run, epoch, totals, parallel.fetch(count_nonzero(run.state.params)), accuracy, tic)
            signum = stop.agreed()
            _finish_epoch(run, record, out, checkpoint=epoch == stop_after or signum is not None or event)
            seconds = [r["epoch_seconds"] for r in run.history[-20:]]
            if parallel.is_writer():
                progress.update(record, float(np.median(seconds)) * (config.epochs - epoch))
            if signum is not None and epoch < config.epochs:
                raise stopping.StopRequested(signum, epoch, str(run.workdir))
            if epoch == stop_after:
                log(f"stopped after epoch {epoch} as asked; continue with --resume")
                return False
    return True


def _last_good(run: RunState) -> str:
    return f"epoch {latest_epoch(run.workdir)} in {run.workdir / 'checkpoints'}"


def _finish_epoch(run: RunState, record: dict, out: EpochLog, checkpoint: bool) -> None:
    """Appends the epoch's record, then checkpoints it when due, asked (`checkpoint`) or the best so far."""
    config, epoch = run.config, record["epoch"]
    new_best = is_new_best(run, epoch, record["val_accuracy"])
    rank = record["val_accuracy"] if selectable(run, epoch) else None  # a denser model is never the best checkpoint
    _append(run, record, out)
    if new_best or epoch % config.checkpoint_every == 0 or epoch == config.epochs or checkpoint:
        run.checkpoints.save(epoch, run.state, rank)


def _append(run: RunState, record: dict, out: EpochLog) -> None:
    """The epoch's line to metrics.jsonl (and TensorBoard) and to the run's history."""
    out.write(record, run.state.params)
    run.history.append(record)


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
        if not same_run(saved, config.to_dict()):
            raise WorkdirError(f"{workdir} holds a finished run of another config; choose another workdir")
        return results
    resume = latest_epoch(workdir) is not None
    return train_and_evaluate(config, workdir, resume=resume, overwrite=not resume)
