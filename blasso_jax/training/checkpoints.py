"""Checkpoints of a run (orbax): the last k and the one of best validation accuracy.

One orbax `CheckpointManager` keeps the last k checkpoints and the one of best validation accuracy: a
best epoch that is also a regular checkpoint is written once, and the best checkpoint is never newer
than the newest one, so resuming from the newest never has to delete it.

A checkpoint that cannot be written (a full disk) ends the run with one `files.WriteError` line; its partial
temporary directory is removed, and `--resume` continues from the newest complete checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from blasso_jax.common import files, parallel


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


def _os_error_code(error: BaseException) -> int | None:
    """The errno of an OS error: an OSError's own, or the `os_error_code` TensorStore writes into its message."""
    if isinstance(error, OSError):
        return error.errno
    found = re.search(r"os_error_code='?(\d+)", str(error))
    return int(found.group(1)) if found else None


class _DropThreadTracebacks(logging.Filter):
    """Drops orbax's logged tracebacks of its worker threads: the same exception reaches the caller of `save`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and "orbax" in record.pathname)


@contextlib.contextmanager
def _orbax_thread_errors_hidden() -> Iterator[None]:
    """While it lasts, orbax's threads log no tracebacks through absl (their exceptions are re-raised to us)."""
    absl_logger, quiet = logging.getLogger("absl"), _DropThreadTracebacks()
    absl_logger.addFilter(quiet)
    try:
        yield
    finally:
        absl_logger.removeFilter(quiet)


# `(old optimizer state as read, its step, today's optimizer state) -> the old one in today's layout`; raises if it
# cannot tell the old layout.
Upgrade = Callable[[Any, Any, Any], Any]


class CheckpointError(RuntimeError):
    """No intact checkpoint to resume from."""


class Checkpoints:
    """The last `keep` checkpoints of a run and the one of best validation accuracy, in `<workdir>/checkpoints`.

    Orbax writes each checkpoint into a temporary directory and renames it when complete, so a
    checkpoint half-written at a crash is never listed, never restored. One damaged afterwards (a
    truncated or bit-flipped file) is set aside by `restore`, which falls back to the newest intact one.
    """

    def __init__(self, workdir: Path, keep: int):
        self.workdir = workdir
        self.keep = keep
        self.manager = _manager(workdir / "checkpoints", keep)

    def save(self, epoch: int, state: Any, val_accuracy: float | None = None) -> None:
        """Saves `state` at `epoch`; `val_accuracy` ranks it for the best checkpoint (None: never the best).

        A write that fails with an OS error (a full disk) removes the partial checkpoint and raises
        `files.WriteError`; orbax's threads log nothing of it, the error carries what they would.
        """
        metrics = None if val_accuracy is None else {"val_accuracy": val_accuracy, "epoch": epoch}
        tree = checkpointed_tree(state)
        try:
            with _orbax_thread_errors_hidden():
                self.manager.save(epoch, args=_orbax().args.StandardSave(tree), metrics=metrics, force=True)
                self.manager.wait_until_finished()
        except Exception as error:  # TensorStore reports an OS error as a ValueError naming its code
            code = _os_error_code(error)
            if code is None:
                raise
            if parallel.is_writer():
                for partial in (self.workdir / "checkpoints").glob(f"{epoch}.orbax-checkpoint-tmp*"):
                    shutil.rmtree(partial, ignore_errors=True)
            raise files.write_error(self.workdir / "checkpoints" / str(epoch), tree_bytes(tree), code) from error

    def warn_if_short(self, size: int, epochs: int, log: Callable[[str], None]) -> None:
        """One line through `log` when the workdir's disk cannot hold what a run of `epochs` keeps at once: the
        last `keep` checkpoints, the best and the one being written (`size` bytes each; those there count)."""
        count = min(self.keep + 2, epochs) - len(self.manager.all_steps())
        free = shutil.disk_usage(self.workdir).free
        if count > 0 and free < count * size:
            log(
                f"warning: {free / 2**20:,.1f} MiB free in {self.workdir}, short of the {count * size / 2**20:,.1f} "
                f"MiB that {count} more checkpoints of {size / 2**20:,.1f} MiB need (the last {self.keep}, the best "
                "and the one being written); free space or choose another --workdir"
            )

    def restore(
        self, state: Any, log: Callable[[str], None] = print, upgrade: Upgrade | None = None
    ) -> tuple[int, Any]:
        """The newest intact checkpoint's epoch and `state` with its contents.

        A checkpoint in an older layout of the optimizer state is read as it was written and put in today's by
        `upgrade(old optimizer state, step, today's optimizer state)`. A checkpoint that cannot be read is moved
        (never deleted) to `<workdir>/damaged_checkpoints/`, with a one-line message through `log`, and the next
        newest is tried; CheckpointError if none can be read.
        """
        target = jax.tree.map(_orbax().utils.to_shape_dtype_struct, checkpointed_tree(state))
        for epoch in sorted(self.manager.all_steps(), reverse=True):
            try:
                restored = self.manager.restore(epoch, args=_orbax().args.StandardRestore(target))
            except Exception as error:  # orbax and TensorStore raise many kinds for a damaged file
                restored = self._upgraded(epoch, state, upgrade)
                if restored is not None:
                    log(f"checkpoint of epoch {epoch} holds an older optimizer-state layout; read into today's")
                    return epoch, state.replace(**restored)
                reason = (str(error).strip().splitlines() or [""])[0][:160]
                moved = self._set_aside(epoch)
                log(f"checkpoint of epoch {epoch} is damaged ({type(error).__name__}: {reason}); moved to {moved}")
                continue
            return epoch, state.replace(**restored)
        raise CheckpointError(
            f"no intact checkpoint in {self.workdir / 'checkpoints'} to resume from; start anew with --overwrite"
        )

    def _upgraded(self, epoch: int, state: Any, upgrade: Upgrade | None) -> dict[str, Any] | None:
        """Checkpoint `epoch` read as written, its optimizer state put in `state`'s layout; None if it cannot be."""
        if upgrade is None:
            return None
        try:
            # Read without a target, orbax commits every array to one device; on the host, the caller's
            # parallel.shard_state lays them out over the mesh like a checkpoint read into its shardings.
            raw = jax.tree.map(np.asarray, self.manager.restore(epoch, args=_orbax().args.StandardRestore()))
            opt_state = upgrade(raw["opt_state"], raw["step"], state.opt_state)
        except Exception:  # unreadable, or not a layout `upgrade` knows: damaged
            return None
        return {**raw, "opt_state": opt_state}

    def _set_aside(self, epoch: int) -> Path:
        """Moves checkpoint `epoch` out of the manager's directory, so the run can write that epoch again."""
        aside = self.workdir / "damaged_checkpoints" / f"{epoch}-{time.strftime('%Y%m%dT%H%M%S')}"
        if parallel.is_writer():
            aside.parent.mkdir(exist_ok=True)
            os.replace(self.workdir / "checkpoints" / str(epoch), aside)
        parallel.sync("damaged checkpoint set aside")
        self.manager.reload()
        return aside

    def close(self) -> None:
        self.manager.close()


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


def read_checkpoint(path: Path, *, best: bool = False) -> tuple[int, dict[str, Any]] | None:
    """The newest (or best by validation) checkpoint in the directory `path` as `(epoch, contents)`, or None."""
    manager = _manager(Path(path).absolute())
    try:
        epoch = manager.best_step() if best else manager.latest_step()
        if epoch is None:
            return None
        return epoch, manager.restore(epoch, args=_orbax().args.StandardRestore())
    finally:
        manager.close()
