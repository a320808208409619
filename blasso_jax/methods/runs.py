"""What a config means as a run, which takes its method: the full check of a config, the run's directory name, and
whether two configs train the same run (the method fields their method does not read left out, defaults resolved).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blasso_jax.common import paper
from blasso_jax.config.train_config import METHOD_FIELDS, TrainConfig
from blasso_jax.data import nlgp
from blasso_jax.methods.registry import get


def validate(config: TrainConfig, device_count: int = 1) -> TrainConfig:
    """`config.validate(device_count)`, then its method's own checks (`Method.validate`); returns the config.

    Examples:
      >>> from blasso_jax.config import preset
      >>> validate(preset("smoke", method="magnitude", finetune_epochs=2, epochs=2))
      Traceback (most recent call last):
      ...
      ValueError: magnitude: finetune_epochs 2 leaves no epoch of training before pruning in 2 epochs; choose 1 to 1
    """
    config.validate(device_count)
    method = get(config.method)
    unknown = sorted(set(method.fields) - set(METHOD_FIELDS))
    if unknown:
        raise ValueError(f"method {config.method!r} reads {unknown}, which are not method fields: {METHOD_FIELDS}")
    method.validate(config)
    return config


def run_name(config: TrainConfig) -> str:
    """A run's directory name, '<dataset>-<model>-<method part>-seed<seed>', e.g. cifar10-s-fc-blasso-beta50-seed0.

    A local copy of a paper dataset is named after it ('cifar10' for a CIFAR-10 image folder); ResNet18
    runs name their kernel size too (cifar10-resnet18-k7-sgd-seed0).

    Examples:
      >>> from blasso_jax.config import preset
      >>> run_name(preset("cpu_locality", dataset="/data/cifar10.tar.gz", epochs=50))
      'cifar10-s-fc-blasso-beta1-seed0'
    """
    dataset = paper.paper_dataset(config.dataset) or (
        config.dataset if nlgp.is_spec(config.dataset) else Path(config.dataset).stem  # a spec's '.' is no suffix
    )
    model = f"{config.model}-k{config.kernel_size}" if config.model == "resnet18" else config.model
    return f"{dataset}-{model}-{get(config.method).run_name(config)}-seed{config.seed}"


def relevant_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict without the method fields its method does not read: what makes two runs the same run."""
    used = get(config["method"]).fields
    return {k: v for k, v in config.items() if k not in METHOD_FIELDS or k in used}


def resolve_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict with an unset momentum replaced by its method's default: unset and that value train alike."""
    if config.get("momentum") is None:
        config = {**config, "momentum": get(config["method"]).default_momentum}
    return config


def same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two config dicts train the same run: every field their method reads agrees, defaults resolved."""
    return relevant_config(resolve_defaults(a)) == relevant_config(resolve_defaults(b))
