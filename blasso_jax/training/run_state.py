"""What the steps of one run share, typed: the trainer builds it, the epoch records and the summary read it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import IO, Any

import jax

from blasso_jax.config.train_config import TrainConfig
from blasso_jax.data.datasets import Dataset
from blasso_jax.methods.registry import Method
from blasso_jax.training.checkpoints import Checkpoints
from blasso_jax.training.step import TrainState


@dataclasses.dataclass
class RunState:
    """One run: its inputs, train state, history of epoch records, checkpoints and the workdir lock."""

    config: TrainConfig
    method: Method
    workdir: Path
    dataset: Dataset
    policy: str  # the augmentation policy the config's `augment` means for the dataset
    steps_per_epoch: int
    mesh: jax.sharding.Mesh
    state: TrainState
    checkpoints: Checkpoints
    lock: IO[str] | None
    done: int = 0  # the last epoch trained (restored from a checkpoint when resumed)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def first_selectable(self) -> int:
        """The first epoch whose model selection may pick: a pruning method's denser epochs never are."""
        return self.method.selectable_from(self.config)
