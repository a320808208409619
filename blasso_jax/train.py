"""Training and evaluation: one jit-compiled program per epoch, data-parallel over every local device.

Parallelism follows the JAX documentation's recommendation over `pmap`: a 1-D device mesh named
"data", the train state replicated and each batch sharded along it (`NamedSharding`). XLA inserts
the gradient all-reduce, and BatchNorm sees the global batch, so statistics do not depend on the
device count. The uint8 training set lives on the devices; each epoch is shuffled, augmented and
normalised there inside a `lax.scan` over its steps, so the host syncs once per epoch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from blasso_jax import analysis, io
from blasso_jax import data as data_lib
from blasso_jax.config import TrainConfig
from blasso_jax.models import Network, create_model
from blasso_jax.optim import blasso, kernel_mask, kernel_sizes, layerwise_l1, nonzero_counts

PRECISION_DTYPES = {"bf16": jnp.bfloat16, "fp32": jnp.float32}


class TrainState(train_state.TrainState):
    """flax's TrainState plus BatchNorm statistics."""

    batch_stats: Any


class EpochTotals(NamedTuple):
    """Sums over one epoch's steps, reduced on device and fetched once."""

    loss: jax.Array
    correct: jax.Array
    examples: jax.Array
    first_nonfinite_step: jax.Array  # -1 when every step was finite
    skipped_steps: jax.Array


class NonFiniteLossError(RuntimeError):
    """The loss or the gradients became NaN or infinite."""


class WorkdirError(RuntimeError):
    """The workdir cannot be used as asked (exists without --resume, not writable, nothing to resume)."""


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """A 1-D "data" mesh over `devices` (default: every device, all hosts' after `jax.distributed.initialize()`)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    """Cosine decay from `config.learning_rate` to 0, stepped per batch over the whole run."""
    return optax.cosine_decay_schedule(config.learning_rate, config.epochs * steps_per_epoch)


def make_optimizer(config: TrainConfig, params: Any, steps_per_epoch: int) -> optax.GradientTransformation:
    """β-LASSO (λ per layer, kernels only) or the SGD baseline, with a per-step cosine schedule."""
    schedule = learning_rate_schedule(config, steps_per_epoch)
    if config.method == "blasso":
        l1 = layerwise_l1(params, first=config.l1_first, rest=config.l1_rest)
        return blasso(schedule, l1, config.beta, mask=kernel_mask)
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=kernel_mask),
        optax.sgd(schedule, momentum=config.momentum or None),
    )


def create_train_state(
    config: TrainConfig, model: Network, image_shape: tuple[int, ...], steps_per_epoch: int, key: jax.Array
) -> TrainState:
    """Initial parameters, BatchNorm statistics and optimizer state from `key`."""
    variables = model.init(key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    tx = make_optimizer(config, variables["params"], steps_per_epoch)
    return TrainState.create(
        apply_fn=model.apply, params=variables["params"], batch_stats=variables["batch_stats"], tx=tx
    )


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def make_train_epoch(
    config: TrainConfig,
    mesh: jax.sharding.Mesh,
    num_examples: int,
    policy: str,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, EpochTotals]]:
    """A jitted `(state, x_uint8, y, key) -> (state, totals)` that runs one shuffled epoch on device.

    Batches that do not fill `batch_size` are dropped, as usual. A step with a non-finite loss or
    gradient is never applied: with 'skip' it is counted, with 'stop' the state freezes there and
    the caller stops the run.
    """
    batch_size = config.batch_size
    steps = num_examples // batch_size
    batch_sharding = NamedSharding(mesh, P("data"))
    compute_dtype = PRECISION_DTYPES[config.precision]
    skip = config.on_nonfinite == "skip"

    def epoch(state, x, y, key):
        def train_step(carry, inputs):
            state, totals = carry
            indices, key, step = inputs
            images = jax.lax.with_sharding_constraint(x[indices], batch_sharding)
            labels = jax.lax.with_sharding_constraint(y[indices], batch_sharding)
            images = data_lib.normalize(data_lib.augment_batch(key, images, policy), mean, std, compute_dtype)

            def loss_fn(params):
                logits, updates = state.apply_fn(
                    {"params": params, "batch_stats": state.batch_stats}, images, train=True, mutable=["batch_stats"]
                )
                return _cross_entropy(logits, labels).mean(), (logits, updates["batch_stats"])

            (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
            apply = finite if skip else finite & (totals.first_nonfinite_step < 0)
            new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
            state = jax.tree.map(lambda new, old: jnp.where(apply, new, old), new_state, state)
            totals = EpochTotals(
                loss=totals.loss + jnp.where(apply, loss, 0.0),
                correct=totals.correct + jnp.where(apply, jnp.sum(jnp.argmax(logits, -1) == labels), 0),
                examples=totals.examples + jnp.where(apply, batch_size, 0),
                first_nonfinite_step=jnp.where(
                    (totals.first_nonfinite_step < 0) & ~finite, step, totals.first_nonfinite_step
                ),
                skipped_steps=totals.skipped_steps + (~finite).astype(jnp.int32),
            )
            return (state, totals), None

        order_key, augment_key = jax.random.split(key)
        order = jax.random.permutation(order_key, num_examples)[: steps * batch_size].reshape(steps, batch_size)
        totals = EpochTotals(
            loss=jnp.zeros((), jnp.float32),
            correct=jnp.zeros((), jnp.int32),
            examples=jnp.zeros((), jnp.int32),
            first_nonfinite_step=jnp.full((), -1, jnp.int32),
            skipped_steps=jnp.zeros((), jnp.int32),
        )
        inputs = (order, jax.random.split(augment_key, steps), jnp.arange(steps))
        (state, totals), _ = jax.lax.scan(train_step, (state, totals), inputs)
        return state, totals

    replicated = NamedSharding(mesh, P())
    return jax.jit(epoch, donate_argnums=0, out_shardings=(replicated, replicated))


def pad_for_eval(x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pads an eval split to whole batches; padded labels are -1 and count for nothing."""
    padded = -(-len(x) // batch_size) * batch_size
    x_pad = np.zeros((padded, *x.shape[1:]), x.dtype)
    y_pad = np.full((padded,), -1, np.int32)
    x_pad[: len(x)], y_pad[: len(y)] = x, y
    return x_pad, y_pad


def make_evaluate(
    config: TrainConfig, mesh: jax.sharding.Mesh, batch_size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """A jitted `(state, x_padded, y_padded) -> (correct, loss_sum)` over a padded split."""
    batch_sharding = NamedSharding(mesh, P("data"))
    compute_dtype = PRECISION_DTYPES[config.precision]

    def evaluate(state, x, y):
        def body(totals, batch):
            images, labels = (jax.lax.with_sharding_constraint(a, batch_sharding) for a in batch)
            logits = state.apply_fn(
                {"params": state.params, "batch_stats": state.batch_stats},
                data_lib.normalize(images, mean, std, compute_dtype),
                train=False,
            )
            valid = labels >= 0
            correct = jnp.sum((jnp.argmax(logits, -1) == labels) & valid)
            loss = jnp.sum(jnp.where(valid, _cross_entropy(logits, jnp.maximum(labels, 0)), 0.0))
            return (totals[0] + correct, totals[1] + loss), None

        batches = (x.reshape(-1, batch_size, *x.shape[1:]), y.reshape(-1, batch_size))
        totals, _ = jax.lax.scan(body, (jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)), batches)
        return totals

    return jax.jit(evaluate)


# --------------------------------------------------------------------------------------------- #
# The run: workdir, checkpoints, metrics, results.
# --------------------------------------------------------------------------------------------- #


def check_workdir(workdir: str | os.PathLike, *, resume: bool, overwrite: bool) -> Path:
    """Checks, without writing anything, that `workdir` may be used as asked; returns it as an absolute Path."""
    workdir = Path(workdir).absolute()  # orbax needs absolute paths
    if resume and overwrite:
        raise WorkdirError("--resume and --overwrite contradict each other; pass one")
    if resume and latest_epoch(workdir) is None:
        raise WorkdirError(f"nothing to resume in {workdir}: it holds no complete checkpoint (start without --resume)")
    if not resume and not overwrite and workdir.is_dir() and any(workdir.iterdir()):
        raise WorkdirError(
            f"workdir {workdir} already holds a run; pass --resume to continue it or --overwrite to replace it"
        )
    existing = next(p for p in (workdir, *workdir.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirError(f"workdir {workdir} is not writable: {existing} is not a writable directory")
    return workdir


def create_workdir(workdir: Path, *, overwrite: bool) -> None:
    """Creates `workdir` (emptied first with `overwrite`), once the run's inputs have been checked."""
    if overwrite and workdir.exists():
        shutil.rmtree(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WorkdirError(f"workdir {workdir} is not writable: {error.strerror}") from error


def _orbax():
    """orbax.checkpoint, imported on first use so that benchmarks run where only JAX is installed."""
    import orbax.checkpoint

    return orbax.checkpoint


def tree_bytes(tree: Any) -> int:
    """Bytes of every array in a pytree (what a checkpoint of it stores)."""
    return sum(
        np.asarray(leaf).nbytes if np.isscalar(leaf) else leaf.size * leaf.dtype.itemsize
        for leaf in jax.tree.leaves(tree)
    )


class Checkpoints:
    """The last `keep` checkpoints and, apart, the best by validation accuracy (orbax, written atomically).

    Orbax writes each checkpoint into a temporary directory and renames it when complete, so a
    checkpoint half-written at a crash is never listed, never restored.
    """

    def __init__(self, workdir: Path, keep: int):
        options = _orbax().CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False)
        self.latest = _orbax().CheckpointManager(workdir / "checkpoints", options=options)
        self.best = _orbax().CheckpointManager(
            workdir / "best", options=_orbax().CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False)
        )

    def save(self, epoch: int, state: TrainState, *, best: bool = False) -> None:
        manager = self.best if best else self.latest
        manager.save(epoch, args=_orbax().args.StandardSave(_checkpointed(state)), force=True)
        manager.wait_until_finished()

    def restore(self, state: TrainState, *, best: bool = False) -> tuple[int, TrainState]:
        manager = self.best if best else self.latest
        epoch = manager.latest_step()
        target = jax.tree.map(_orbax().utils.to_shape_dtype_struct, _checkpointed(state))
        restored = manager.restore(epoch, args=_orbax().args.StandardRestore(target))
        return epoch, state.replace(**restored)

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def _checkpointed(state: TrainState) -> dict[str, Any]:
    return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats, "opt_state": state.opt_state}


def git_commit() -> str | None:
    """The commit of the code that ran, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class Progress:
    """One status line per epoch: redrawn in place on a terminal, plain lines otherwise."""

    def __init__(self, total_epochs: int, stream=None):
        self.total = total_epochs
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()

    def update(self, record: dict[str, Any], seconds_left: float) -> None:
        sparsity = record["nonzero_fraction"]
        parts = [
            f"epoch {record['epoch']}/{self.total}",
            f"loss {record['train_loss']:.4f}",
            f"train {record['train_accuracy']:.4f}",
        ]
        if record.get("val_accuracy") is not None:
            parts.append(f"val {record['val_accuracy']:.4f}")
        if record.get("test_accuracy") is not None:
            parts.append(f"test {record['test_accuracy']:.4f}")
        parts += [
            f"non-zero {100 * sparsity:.2f}%",
            f"{record['epoch_seconds']:.2f}s/epoch",
            f"left {_hms(seconds_left)}",
        ]
        line = " | ".join(parts)
        if self.tty:
            self.stream.write("\r\033[K" + line)
            if record["epoch"] == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def log(message: str) -> None:
    print(message, flush=True)


def train_and_evaluate(
    config: TrainConfig,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any] | None:
    """Trains per `config`, logging `metrics.jsonl` and checkpoints in `workdir`; returns `results.json`'s content.

    `stop_after=k` checkpoints and returns None after epoch k, for jobs with a time limit; a later
    call with `resume=True` continues exactly where it stopped.
    """
    start_time = time.time()
    config.validate(jax.device_count())
    workdir = check_workdir(workdir, resume=resume, overwrite=overwrite)
    dataset = data_lib.load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        cache_dir=config.cache_dir,
        validation_size=config.validation_size,
        seed=config.seed,
        synthetic_shape=config.synthetic_shape,
        synthetic_classes=config.synthetic_classes,
        synthetic_train_size=config.synthetic_train_size,
        synthetic_test_size=config.synthetic_test_size,
    )
    if len(dataset.x_train) < config.batch_size:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the {len(dataset.x_train)} training examples of {config.dataset}"
        )
    policy = dataset.augment if config.augment == "auto" else config.augment
    steps_per_epoch = len(dataset.x_train) // config.batch_size
    model = create_model(
        config.model,
        config.alpha,
        dataset.num_classes,
        dataset.image_shape,
        width=config.width,
        dtype=PRECISION_DTYPES[config.precision],
    )

    # Every input is checked: from here on the run writes to its workdir.
    create_workdir(workdir, overwrite=overwrite)
    if resume:
        saved = io.read_jsonl(workdir / "config.jsonl")
        previous = TrainConfig.from_dict(saved[-1]).to_dict() if saved else config.to_dict()
        if previous != config.to_dict():
            changed = {k for k, v in config.to_dict().items() if previous.get(k) != v}
            log(f"resuming with changed settings: {', '.join(sorted(changed))}")
    io.append_jsonl(workdir / "config.jsonl", config.to_dict())

    mesh = make_mesh()
    replicated = NamedSharding(mesh, P())
    io.atomic_write_json(
        workdir / "dataset.json",
        {
            "name": dataset.name,
            "image_shape": list(dataset.image_shape),
            "num_classes": dataset.num_classes,
            "class_names": list(dataset.class_names),
            "augment": policy,
        },
    )
    root_key = jax.random.key(config.seed)
    state = create_train_state(config, model, dataset.image_shape, steps_per_epoch, jax.random.fold_in(root_key, 0))
    state = jax.device_put(state, replicated)
    dense_weights = kernel_sizes(state.params)
    log(
        f"{config.model} α={config.alpha} on {dataset.name} ({len(dataset.x_train)} train / "
        f"{len(dataset.x_val)} val / {len(dataset.x_test)} test, {dataset.num_classes} classes), "
        f"{config.method}{f' β={config.beta:g}' if config.method == 'blasso' else ''}, {config.precision}, "
        f"{jax.device_count()} {jax.devices()[0].device_kind} device(s); "
        f"{sum(dense_weights.values()):,} weights; checkpoint size {tree_bytes(_checkpointed(state)) / 2**20:.1f} MiB "
        f"(params, BatchNorm statistics and optimizer state, each stored once)"
    )

    dense_first_layer = state.params["layer1"]["kernel"].ndim == 2
    checkpoints = Checkpoints(workdir, config.keep_checkpoints)
    metrics_path = workdir / "metrics.jsonl"
    first_epoch = 1
    if resume:
        epoch, state = checkpoints.restore(state)
        state = jax.device_put(state, replicated)
        first_epoch = epoch + 1
        for later in [step for step in checkpoints.best.all_steps() if step > epoch]:
            checkpoints.best.delete(later)  # re-reached deterministically, if it is still the best
        io.write_jsonl(metrics_path, [r for r in io.read_jsonl(metrics_path) if r["epoch"] <= epoch])
        log(f"resumed from the checkpoint of epoch {epoch}")
    history = io.read_jsonl(metrics_path)

    x_train = jax.device_put(dataset.x_train, replicated)
    y_train = jax.device_put(dataset.y_train.astype(np.int32), replicated)
    eval_batch = config.batch_size
    splits = {
        name: tuple(jax.device_put(a, replicated) for a in pad_for_eval(x, y.astype(np.int32), eval_batch))
        for name, (x, y) in {"val": (dataset.x_val, dataset.y_val), "test": (dataset.x_test, dataset.y_test)}.items()
        if len(x)
    }
    split_sizes = {"val": len(dataset.x_val), "test": len(dataset.x_test)}
    train_epoch = make_train_epoch(config, mesh, len(dataset.x_train), policy, dataset.mean, dataset.std)
    evaluate = make_evaluate(config, mesh, eval_batch, dataset.mean, dataset.std)
    count_nonzero = jax.jit(nonzero_counts)
    schedule = learning_rate_schedule(config, steps_per_epoch)

    def accuracy(split: str) -> float | None:
        if split not in splits:
            return None
        correct, _ = evaluate(state, *splits[split])
        return int(correct) / split_sizes[split]

    best_val = max((r["val_accuracy"] for r in history if r.get("val_accuracy") is not None), default=-1.0)
    best_record = max(history, key=lambda r: r.get("val_accuracy") or 0.0, default=None)
    progress = Progress(config.epochs)
    epoch_seconds_seen = [r["epoch_seconds"] for r in history]
    for epoch in range(first_epoch, config.epochs + 1):
        tic = time.time()
        state, totals = train_epoch(state, x_train, y_train, jax.random.fold_in(root_key, epoch))
        totals, nonzero = jax.device_get((totals, count_nonzero(state.params)))
        if int(totals.first_nonfinite_step) >= 0 and config.on_nonfinite == "stop":
            checkpoints.close()
            last = latest_epoch(workdir)
            raise NonFiniteLossError(
                f"non-finite loss or gradient at epoch {epoch}, step {int(totals.first_nonfinite_step) + 1} of "
                f"{steps_per_epoch}; the last good checkpoint is epoch {last} in {workdir / 'checkpoints'} "
                f"(lower the learning rate, or set on_nonfinite='skip' to skip such steps)"
            )
        val = accuracy("val")
        new_best = val is not None and val > best_val
        test = accuracy("test") if (epoch % config.test_every == 0 or new_best or epoch == config.epochs) else None
        seconds = time.time() - tic
        record = {
            "epoch": epoch,
            "train_loss": float(totals.loss) / max(int(totals.examples) // config.batch_size, 1),
            "train_accuracy": int(totals.correct) / max(int(totals.examples), 1),
            "val_accuracy": val,
            "test_accuracy": test,
            "nonzero_per_layer": {k: int(v) for k, v in nonzero.items()},
            "nonzero_fraction": sum(int(v) for v in nonzero.values()) / sum(dense_weights.values()),
            "lr": float(schedule(epoch * steps_per_epoch)),
            "skipped_steps": int(totals.skipped_steps),
            "epoch_seconds": seconds,
        }
        locality_due = config.locality_every and (epoch % config.locality_every == 0 or epoch == config.epochs)
        if dense_first_layer and locality_due:
            record["locality"] = _locality_summary(state, dataset.image_shape)
        if epoch % config.checkpoint_every == 0 or epoch in (config.epochs, stop_after):
            checkpoints.save(epoch, state)
        if new_best:
            best_val, best_record = val, record
            checkpoints.save(epoch, state, best=True)
        io.append_jsonl(metrics_path, record)
        history.append(record)
        epoch_seconds_seen.append(seconds)
        progress.update(record, float(np.median(epoch_seconds_seen[-20:])) * (config.epochs - epoch))
        if epoch == stop_after:
            checkpoints.close()
            log(f"stopped after epoch {epoch} as asked; continue with --resume")
            return None
    checkpoints.close()

    final = history[-1]
    params, batch_stats = jax.device_get((state.params, state.batch_stats))
    analysis.save_sparse(workdir / "sparse_params.npz", params, batch_stats)
    results = {
        "val_accuracy": {"best": best_record["val_accuracy"] if best_record else None, "final": final["val_accuracy"]},
        # "best" is the test accuracy at the epoch of best validation accuracy (model selection by
        # validation, as the paper); without a validation split it is the final one.
        "test_accuracy": {
            "best": best_record["test_accuracy"] if best_record and best_val >= 0 else final["test_accuracy"],
            "final": final["test_accuracy"],
        },
        "best_epoch": best_record["epoch"] if best_record and best_val >= 0 else final["epoch"],
        "nonzero_per_layer": final["nonzero_per_layer"],
        "dense_per_layer": dense_weights,
        "description_length": analysis.description_length(params),
        "locality": final.get("locality"),
        # The trained weights stored as (index, value) pairs against the dense float32 arrays.
        "sparse_export_bytes": (workdir / "sparse_params.npz").stat().st_size,
        "dense_bytes": tree_bytes((params, batch_stats)),
        "checkpoint_bytes": sum(
            f.stat().st_size for f in (workdir / "checkpoints" / str(final["epoch"])).rglob("*") if f.is_file()
        ),
        "epochs": final["epoch"],
        "config": config.to_dict(),
        "git_commit": git_commit(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "wall_seconds": time.time() - start_time,
    }
    io.atomic_write_json(workdir / "results.json", results)
    return results


def read_run_info(workdir: str | os.PathLike) -> tuple[TrainConfig, dict[str, Any]]:
    """A run's latest config and its `dataset.json` (name, image shape, classes, augmentation), without data."""
    workdir = Path(workdir)
    configs = io.read_jsonl(workdir / "config.jsonl")
    if not configs:
        raise WorkdirError(f"{workdir} holds no run: {workdir / 'config.jsonl'} is missing or empty")
    if not (workdir / "dataset.json").is_file():
        raise WorkdirError(f"{workdir} holds no run: {workdir / 'dataset.json'} is missing")
    return TrainConfig.from_dict(configs[-1]), json.loads((workdir / "dataset.json").read_text())


def load_run(workdir: str | os.PathLike, *, best: bool = False) -> tuple[TrainConfig, Network, dict[str, Any]]:
    """A finished or running run's config, model and variables (`{'params', 'batch_stats'}`).

    `best=True` loads the checkpoint of best validation accuracy, else the latest one. The model
    is rebuilt from the run's config and `dataset.json` (image shape, classes); no data is loaded.
    """
    workdir = Path(workdir).absolute()
    config, shape = read_run_info(workdir)
    manager = _orbax().CheckpointManager(workdir / ("best" if best else "checkpoints"))
    epoch = manager.latest_step()
    if epoch is None:
        raise WorkdirError(f"{workdir} holds no {'best' if best else 'latest'} checkpoint")
    restored = manager.restore(epoch, args=_orbax().args.StandardRestore())
    manager.close()
    model = create_model(
        config.model,
        config.alpha,
        shape["num_classes"],
        tuple(shape["image_shape"]),
        width=config.width,
        dtype=PRECISION_DTYPES[config.precision],
    )
    return config, model, {"params": restored["params"], "batch_stats": restored["batch_stats"]}


def run_once(config: TrainConfig, workdir: str | os.PathLike) -> dict[str, Any]:
    """Results of the run in `workdir`: read if finished, resumed if interrupted, trained otherwise.

    Sweeps (Tables 1 and 2, Figure 3) call this per cell, so an interrupted sweep restarts where it stopped.
    """
    workdir = Path(workdir)
    if (workdir / "results.json").exists():
        results = json.loads((workdir / "results.json").read_text())
        if TrainConfig.from_dict(results["config"]) != config:
            raise WorkdirError(f"{workdir} holds a finished run of another config; choose another workdir")
        return results
    resume = latest_epoch(workdir) is not None
    return train_and_evaluate(config, workdir, resume=resume, overwrite=not resume)


def _locality_summary(state: TrainState, image_shape: tuple[int, ...]) -> dict[str, Any]:
    """Locality of a dense first layer's units (see `analysis.locality`), summarised."""
    summary = analysis.locality(state.params["layer1"]["kernel"], image_shape)["summary"]
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}


def latest_epoch(workdir: str | os.PathLike) -> int | None:
    """The epoch of the newest complete checkpoint in `workdir`, or None."""
    path = Path(workdir).absolute() / "checkpoints"
    if not path.is_dir():
        return None
    manager = _orbax().CheckpointManager(path)
    try:
        return manager.latest_step()
    finally:
        manager.close()
