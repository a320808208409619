"""A run's configuration: `TrainConfig`, each field declared once with its help, bound and resumability
(`train_config`), and the named presets (`presets`). May import `blasso_jax.common`, `blasso_jax.models` and
`blasso_jax.data`."""

from blasso_jax.config.presets import PRESETS
from blasso_jax.config.train_config import (
    AUGMENTS,
    FIELDS,
    METHOD_FIELDS,
    NONFINITE_POLICIES,
    PRECISION_DTYPES,
    PRECISIONS,
    RESUMABLE_FIELDS,
    TrainConfig,
    field_help,
    model_from_config,
    preset,
)

__all__ = [
    "AUGMENTS",
    "FIELDS",
    "METHOD_FIELDS",
    "NONFINITE_POLICIES",
    "PRECISIONS",
    "PRECISION_DTYPES",
    "PRESETS",
    "RESUMABLE_FIELDS",
    "TrainConfig",
    "field_help",
    "model_from_config",
    "preset",
]
