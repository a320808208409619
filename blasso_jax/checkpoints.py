"""A run directory: its rules, its checkpoints (orbax) and reading a run back.

A run directory holds `config.jsonl`, `dataset.json`, `metrics.jsonl`, `checkpoints/` and, once
finished, `results.json` and `sparse_params.npz`. One orbax `CheckpointManager` keeps the last k
checkpoints and the one of best validation accuracy: a best epoch that is also a regular
checkpoint is written once, and the best checkpoint is never newer than the newest one, so
resuming from the newest never has to delete it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import IO, Any

import flax.linen as nn
import jax
import numpy as np

from blasso_jax import io
from blasso_jax.config import TrainConfig, model_from_config


class WorkdirError(RuntimeError):
    """The workdir cannot be used as asked (exists without --resume, not writable, nothing to resume)."""


def check_workdir(workdir: str | os.PathLike, *, resume: bool, overwrite: bool) -> Path:
    """Checks, without writing anything, that `workdir` may be used as asked; returns it as an absolute Path."""
    workdir = Path(workdir).absolute()  # orbax needs absolute paths
    if resume and overwrite:
        raise WorkdirError("--resume and --overwrite contradict each other; pass one")
    if resume and latest_epoch(workdir) is None and not (workdir / "config.jsonl").is_file():
        raise WorkdirError(
            f"nothing to resume in {workdir}: it holds no run (start without --resume, or with --overwrite to "
            "replace what it holds)"
        )
    if not resume and not overwrite and workdir.is_dir() and any(p.name != LOCK_NAME for p in workdir.iterdir()):
        raise WorkdirError(
            f"workdir {workdir} already holds a run; pass --resume to continue it or --overwrite to replace it"
        )
    existing = next(p for p in (workdir, *workdir.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirError(f"workdir {workdir} is not writable: {existing} is not a writable directory")
    return workdir


LOCK_NAME = ".lock"


def lock_workdir(workdir: Path) -> IO[str]:
    """Takes the OS lock on `<workdir>/.lock` (pid written in it) for the run; raises WorkdirError if another
    process holds it. The OS releases it when the holder exits, so a killed run leaves no stale lock."""
    lock = open(workdir / LOCK_NAME, "a+")  # noqa: SIM115 -- held for the whole run, closed by Checkpoints.close
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise WorkdirError(
            f"workdir {workdir} is in use by another run (pid {holder}); wait for it or choose another workdir"
        ) from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def create_workdir(workdir: Path, *, overwrite: bool) -> IO[str]:
    """Creates and locks `workdir` (emptied first with `overwrite`), once the run's inputs have been checked;
    returns the held lock."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        lock = lock_workdir(workdir)
    except OSError as error:
        raise WorkdirError(f"workdir {workdir} is not writable: {error.strerror}") from error
    if overwrite:
        for path in workdir.iterdir():
            if path.name != LOCK_NAME:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    return lock


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


def checkpointed_tree(state: Any) -> dict[str, Any]:
    """The parts of a train state a checkpoint stores (the step function and optimizer are rebuilt from config)."""
    return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats, "opt_state": state.opt_state}


def _validation_rank(metrics: dict[str, Any]) -> tuple[float, int]:
    """Orders checkpoints by validation accuracy, the earliest epoch first among equals (as the history picks it)."""
    return (metrics["val_accuracy"], -metrics["epoch"])


def _manager(path: Path, keep: int | None = None):
    """One orbax manager: the last `keep` checkpoints plus the best by validation accuracy (None: read only)."""
    ocp = _orbax()
    policy = None
    if keep is not None:
        policy = ocp.checkpoint_managers.AnyPreservationPolicy(
            [
                ocp.checkpoint_managers.LatestN(n=keep),
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=_validation_rank, n=1, keep_checkpoints_without_metrics=False
                ),
            ]
        )
    options = ocp.CheckpointManagerOptions(
        best_fn=_validation_rank, preservation_policy=policy, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(path, options=options)


class Checkpoints:
    """The last `keep` checkpoints of a run and the one of best validation accuracy, in `<workdir>/checkpoints`.

    Orbax writes each checkpoint into a temporary directory and renames it when complete, so a
    checkpoint half-written at a crash is never listed, never restored.
    """

    def __init__(self, workdir: Path, keep: int, lock: IO[str] | None = None):
        self.manager = _manager(workdir / "checkpoints", keep)
        self.lock = lock  # the workdir lock, released with the checkpoints

    def save(self, epoch: int, state: Any, val_accuracy: float | None = None) -> None:
        """Saves `state` at `epoch`; `val_accuracy` ranks it for the best checkpoint (None: never the best)."""
        metrics = None if val_accuracy is None else {"val_accuracy": val_accuracy, "epoch": epoch}
        self.manager.save(epoch, args=_orbax().args.StandardSave(checkpointed_tree(state)), metrics=metrics, force=True)
        self.manager.wait_until_finished()

    def restore(self, state: Any) -> tuple[int, Any]:
        """The newest checkpoint's epoch and `state` with its contents."""
        epoch = self.manager.latest_step()
        target = jax.tree.map(_orbax().utils.to_shape_dtype_struct, checkpointed_tree(state))
        restored = self.manager.restore(epoch, args=_orbax().args.StandardRestore(target))
        return epoch, state.replace(**restored)

    def close(self) -> None:
        self.manager.close()
        if self.lock is not None:
            self.lock.close()


def latest_epoch(workdir: str | os.PathLike) -> int | None:
    """The epoch of the newest complete checkpoint in `workdir`, or None."""
    path = Path(workdir).absolute() / "checkpoints"
    if not path.is_dir():
        return None
    manager = _manager(path)
    try:
        return manager.latest_step()
    finally:
        manager.close()


def read_run_info(workdir: str | os.PathLike) -> tuple[TrainConfig, dict[str, Any]]:
    """A run's latest config and its `dataset.json` (name, image shape, classes, augmentation), without data."""
    workdir = Path(workdir)
    configs = io.read_jsonl(workdir / "config.jsonl")
    if not configs:
        raise WorkdirError(f"{workdir} holds no run: {workdir / 'config.jsonl'} is missing or empty")
    if not (workdir / "dataset.json").is_file():
        raise WorkdirError(f"{workdir} holds no run: {workdir / 'dataset.json'} is missing")
    return TrainConfig.from_dict(configs[-1]), json.loads((workdir / "dataset.json").read_text())


def load_run(workdir: str | os.PathLike, *, best: bool = False) -> tuple[TrainConfig, nn.Module, dict[str, Any]]:
    """A finished or running run's config, model and variables, rebuilt from its directory without data.

    Args:
      workdir: a run directory (`config.jsonl`, `dataset.json`, `checkpoints/`).
      best: load the checkpoint of best validation accuracy instead of the newest one. Runs written
        before the single checkpoint directory kept their best checkpoint in `best/`; it is read there.

    Returns:
      `(config, model, {'params': ..., 'batch_stats': ...})`, as numpy arrays; `model.apply` takes them.
    """
    workdir = Path(workdir).absolute()
    config, dataset = read_run_info(workdir)
    older_layout = best and (workdir / "best").is_dir()
    manager = _manager(workdir / ("best" if older_layout else "checkpoints"))
    epoch = manager.best_step() if best and not older_layout else manager.latest_step()
    if epoch is None:
        manager.close()
        raise WorkdirError(f"{workdir} holds no {'best' if best else 'latest'} checkpoint")
    restored = manager.restore(epoch, args=_orbax().args.StandardRestore())
    manager.close()
    model = model_from_config(config, dataset["num_classes"], dataset["image_shape"])
    return config, model, {"params": restored["params"], "batch_stats": restored["batch_stats"]}


# Settings that do not change the trained function, so a resumed run may change them. `epochs` is not one:
# the cosine learning-rate schedule is laid out over it, so a longer run is a different run.
RESUMABLE_CHANGES = frozenset(
    {"test_every", "locality_every", "checkpoint_every", "keep_checkpoints", "on_nonfinite", "tensorboard"}
)


def saved_config(workdir: str | os.PathLike) -> TrainConfig | None:
    """The config the run in `workdir` last started with (its `config.jsonl`), or None if it has none."""
    saved = io.read_jsonl(Path(workdir) / "config.jsonl")
    return TrainConfig.from_dict(saved[-1]) if saved else None


def check_resumed_config(workdir: Path, config: TrainConfig) -> None:
    """Refuses, before anything is written, to resume the run in `workdir` with settings that change what it trains."""
    saved = saved_config(workdir)
    if saved is None:
        return
    previous = saved.to_dict()
    changed = {k: (previous.get(k), v) for k, v in config.to_dict().items() if previous.get(k) != v}
    changed = {k: values for k, values in changed.items() if k not in RESUMABLE_CHANGES}
    if changed:
        listing = "; ".join(f"{k}: saved {old!r}, requested {new!r}" for k, (old, new) in sorted(changed.items()))
        raise WorkdirError(
            f"--resume cannot change what the run in {workdir} trains ({listing}); start a new workdir, "
            "or pass --overwrite to replace this run"
        )


def git_commit() -> str | None:
    """The commit of the code that ran, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
