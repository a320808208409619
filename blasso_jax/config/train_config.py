"""Training configuration: one frozen dataclass, named presets, and checks that fail before any work starts."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from blasso_jax.common import parallel
from blasso_jax.config.presets import PRESETS
from blasso_jax.data import augment
from blasso_jax.models.networks import KERNEL_SIZES, MODELS, create_model

PRECISION_DTYPES = {"bf16": jnp.bfloat16, "fp32": jnp.float32}
PRECISIONS = tuple(PRECISION_DTYPES)
AUGMENTS = augment.AUGMENT_NAMES
NONFINITE_POLICIES = ("stop", "skip")


def _field(default: Any, help: str, *, low: float | None = None, resumable: bool = False, method: bool = False):
    """A `TrainConfig` field and everything said of it, in one place: its `--help` text, its smallest valid
    value (`low`), whether `--resume` may change it (`resumable`: it does not change what the run trains) and
    whether it is a method's hyperparameter (`method`: runs of methods that do not read it ignore it)."""
    metadata = {"help": help, "low": low, "resumable": resumable, "method": method}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. The defaults ARE the paper's Table 2 setting for S-FC on CIFAR-10
    (the `table2` preset is empty); other presets are named overrides of them, in `PRESETS` below."""

    model: str = _field("s-fc", "architecture (blasso_jax.models.MODELS)")
    alpha: int = _field(150, "base channels α (Table 1's sizes imply 150 for the shallow models)", low=1)
    width: int | None = _field(None, "3-FC's hidden width (default: match S-FC's weight count)", low=1)
    kernel_size: int = _field(3, "ResNet18's block kernels (Figure 5): odd, 3 to 15")
    dataset: str = _field(
        "cifar10",
        "tfds name (cifar10, cifar100, svhn_cropped, …), 'synthetic', or a local image folder / .tar.gz / .npz",
    )
    data_dir: str | None = _field(None, "tfds data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    cache_dir: str | None = _field(None, "decoded local copies (default: $BLASSO_JAX_CACHE or ~/.cache/blasso_jax)")
    validation_size: int = _field(5000, "validation examples carved from the training split (selection)", low=0)
    train_size: int | None = _field(None, "a seeded subset of the rest of the training split (default: all)", low=1)
    svhn_extra: bool = _field(False, "add SVHN's 531,131 'extra' images to training (the paper does not say it did)")
    method: str = _field("blasso", "training method (blasso_jax.methods.METHODS)")
    beta: float = _field(50.0, "β of β-LASSO (threshold β·λ)", low=0, method=True)
    l1_first: float = _field(
        2e-5, "λ of the first (convolution-like) layer; the paper tunes it apart", low=0, method=True
    )
    l1_rest: float = _field(5e-6, "λ of the other weight layers", low=0, method=True)
    momentum: float | None = _field(
        None,
        "momentum of the optimizer's trace, in [0, 1); unset: the method's default (blasso_jax.methods)",
        low=0,
        method=True,
    )
    nesterov: bool = _field(False, "Nesterov momentum (needs a momentum above 0)", method=True)
    decoupled_l1: bool = _field(
        False, "β-LASSO with momentum: the L1 sign added after the momentum trace, not inside it", method=True
    )
    weight_decay: float = _field(5e-4, "SGD's weight decay, on kernels", low=0, method=True)
    mask_source: str | None = _field(
        None,
        "a finished run whose final first-layer mask the masked retraining keeps ({seed}: this run's seed)",
        method=True,
    )
    density_first: float = _field(
        0.01, "density the pruning baselines leave in the first layer, in (0, 1]", method=True
    )
    density_rest: float = _field(1.0, "density the pruning baselines leave in the other weight layers", method=True)
    finetune_epochs: int = _field(50, "magnitude pruning: epochs of fine-tuning after pruning", low=1, method=True)
    imp_rate: float = _field(
        0.5, "iterative magnitude pruning: share of the remaining weights pruned per round", method=True
    )
    rewind_epoch: int = _field(
        1, "iterative magnitude pruning: the epoch whose weights each round rewinds to", low=0, method=True
    )
    learning_rate: float = _field(0.1, "peak of the cosine schedule, stepped per batch")
    dropout: float = _field(
        0.0, "dropout on the inputs of the last two (dense) layers, in [0, 1); the paper gives no rate"
    )
    epochs: int = _field(4000, "training epochs (the cosine schedule is laid out over them)", low=1)
    batch_size: int = _field(512, "global batch size", low=1)
    augment: str = _field(
        "auto",
        f"{', '.join(AUGMENTS)}; auto: the dataset's default (Fast AutoAugment for the paper's datasets)",
    )
    permute_pixels: bool = _field(False, "apply one fixed permutation of pixel positions (seed 0) to every split")
    precision: str = _field("bf16", "bf16 (bf16 matmuls, fp32 params/BatchNorm/update) or fp32")
    seed: int = _field(
        0, "seed of the initialisation, the data order, the splits and the augmentation (0 to 2**32 - 1)"
    )
    model_parallel: int = _field(
        1, "K: kernels split K ways along their outputs; data parallel over devices / K", low=1
    )
    test_every: int = _field(
        1, "test accuracy every k epochs (and at every new best validation accuracy)", low=1, resumable=True
    )
    locality_every: int = _field(
        10, "first-layer locality of FC models every k epochs and at the end (0: never)", low=0, resumable=True
    )
    checkpoint_every: int = _field(
        10, "checkpoint every k epochs (and at the best validation accuracy)", low=1, resumable=True
    )
    keep_checkpoints: int = _field(
        2, "the last k checkpoints kept; the best by validation is kept apart", low=1, resumable=True
    )
    on_nonfinite: str = _field(
        "stop", "stop (exit non-zero) or skip (skip and count the step) on a NaN/inf loss", resumable=True
    )
    tensorboard: bool = _field(
        False, "also write each epoch as TensorBoard events in <workdir>/tensorboard", resumable=True
    )
    synthetic_train_size: int = _field(1024, "'synthetic' dataset: training examples", low=1)
    synthetic_test_size: int = _field(256, "'synthetic' dataset: test examples", low=1)
    synthetic_shape: tuple[int, int, int] = _field((32, 32, 3), "'synthetic' dataset: image shape H,W,C")
    synthetic_classes: int = _field(10, "'synthetic' dataset: classes", low=2)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes`, checked."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown config fields {unknown}; valid fields: {sorted(self.to_dict())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        values = dict(values)
        if "nesterov" not in values and values.get("method") == "blasso":
            # Written before β-LASSO read `momentum` (its 0.9 was SGD's default): the run had none.
            values["momentum"] = None
        if "synthetic_shape" in values:
            values["synthetic_shape"] = tuple(values["synthetic_shape"])
        return cls().replace(**values)

    @property
    def compute_dtype(self) -> Any:
        """The dtype of the weight layers' computation (`precision`)."""
        return PRECISION_DTYPES[self.precision]

    def step_options(self) -> dict[str, Any]:
        """The keyword arguments of `step.make_train_epoch` this config sets."""
        return {
            "batch_size": self.batch_size,
            "compute_dtype": self.compute_dtype,
            "skip_nonfinite": self.on_nonfinite == "skip",
        }

    def validate(self, device_count: int = 1) -> TrainConfig:
        """Raises ValueError naming the first bad value and the valid ones; returns self. The method's own fields
        are its to check: `blasso_jax.methods.validate` checks both."""
        _choice("model", self.model, tuple(MODELS))
        _choice("precision", self.precision, PRECISIONS)
        _choice("augment", self.augment, AUGMENTS)
        _choice("on_nonfinite", self.on_nonfinite, NONFINITE_POLICIES)
        _choice("kernel_size", self.kernel_size, KERNEL_SIZES)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{field.name} must be a finite number, got {value}")
            if field.metadata["low"] is not None and value is not None:
                _at_least(field.name, value, field.metadata["low"])
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be an integer from 0 to 2**32 - 1, got {self.seed}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a rate in [0, 1), got {self.dropout}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        parallel.check_layout(self.batch_size, self.model_parallel, device_count)
        return self


FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}
# The methods' hyperparameters: a run of a method that does not read one is the same run whatever its value.
METHOD_FIELDS = tuple(name for name, field in FIELDS.items() if field.metadata["method"])
# Settings that do not change the trained function, so a resumed run may change them. `epochs` is not one:
# the cosine learning-rate schedule is laid out over it, so a longer run is a different run.
RESUMABLE_FIELDS = frozenset(name for name, field in FIELDS.items() if field.metadata["resumable"])


def field_help(name: str) -> str:
    """The `--help` text of config field `name`."""
    return FIELDS[name].metadata["help"]


def _choice(name: str, value: Any, valid: tuple) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(str, valid))}")


def _at_least(name: str, value: float, low: float) -> None:
    if not value >= low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with `overrides` applied.

    Args:
      name: a key of `PRESETS`.
      **overrides: `TrainConfig` fields to set over the preset.

    Returns:
      The `TrainConfig` (not yet validated: see `blasso_jax.methods.validate`).

    Examples:
      >>> config = preset("cpu_locality", dataset="/data/cifar10.tar.gz", epochs=50)
      >>> (config.model, config.alpha, config.beta, config.l1_first, config.epochs)
      ('s-fc', 1, 1.0, 0.001, 50)
    """
    _choice("preset", name, tuple(PRESETS))
    return TrainConfig().replace(**{**PRESETS[name], **overrides})


def model_from_config(config: TrainConfig, num_classes: int, image_shape: tuple[int, ...]) -> nn.Module:
    """The flax model a config trains, for a dataset's class count and image shape."""
    return create_model(
        config.model,
        config.alpha,
        num_classes,
        tuple(image_shape),
        width=config.width,
        kernel_size=config.kernel_size,
        dropout=config.dropout,
        dtype=PRECISION_DTYPES[config.precision],
    )
