"""A run directory: its rules and lock, its saved config, and reading a run back.

A run directory holds `config.jsonl`, `dataset.json`, `metrics.jsonl`, `checkpoints/` (see
`blasso_jax.training.checkpoints`) and, once finished, `results.json` and `sparse_params.npz`.
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

from blasso_jax.common import files
from blasso_jax.config.train_config import RESUMABLE_FIELDS, TrainConfig, model_from_config
from blasso_jax.methods.runs import resolve_defaults
from blasso_jax.training.checkpoints import latest_epoch, read_checkpoint


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


def read_run_info(workdir: str | os.PathLike) -> tuple[TrainConfig, dict[str, Any]]:
    """A run's latest config and its `dataset.json` (name, image shape, classes, augmentation), without data."""
    workdir = Path(workdir)
    configs = files.read_jsonl(workdir / "config.jsonl")
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
    found = read_checkpoint(workdir / ("best" if older_layout else "checkpoints"), best=best and not older_layout)
    if found is None:
        raise WorkdirError(f"{workdir} holds no {'best' if best else 'latest'} checkpoint")
    restored = found[1]
    model = model_from_config(config, dataset["num_classes"], dataset["image_shape"])
    return config, model, {"params": restored["params"], "batch_stats": restored["batch_stats"]}


def saved_config(workdir: str | os.PathLike) -> TrainConfig | None:
    """The config the run in `workdir` last started with (its `config.jsonl`), or None if it has none."""
    saved = files.read_jsonl(Path(workdir) / "config.jsonl")
    return TrainConfig.from_dict(saved[-1]) if saved else None


def check_resumed_config(workdir: Path, config: TrainConfig) -> None:
    """Refuses, before anything is written, to resume the run in `workdir` with settings that change what it trains."""
    saved = saved_config(workdir)
    if saved is None:
        return
    previous = resolve_defaults(saved.to_dict())
    requested = resolve_defaults(config.to_dict())
    changed = {k: (previous.get(k), v) for k, v in requested.items() if previous.get(k) != v}
    changed = {k: values for k, values in changed.items() if k not in RESUMABLE_FIELDS}
    if changed:
        listing = "; ".join(f"{k}: saved {old!r}, requested {new!r}" for k, (old, new) in sorted(changed.items()))
        raise WorkdirError(
            f"--resume cannot change what the run in {workdir} trains ({listing}); start a new workdir, "
            "or pass --overwrite to replace this run"
        )


def git_commit(path: str | os.PathLike = Path(__file__).parent) -> str | None:
    """The commit of the code that ran, with "-dirty" when tracked files differ from it; None outside git."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = commit and git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit or None
