"""Fast AutoAugment (Lim et al. 2019) on device: the authors' ops as one table, their policies, batched application.

The ops themselves (Pillow-exact, one image at a time) are in `blasso_jax.pillow_ops`. ``apply_op`` is the
authors' ``apply_augment``: it flips the sign of the geometric ops' magnitude with probability 1/2 (their
``random_mirror``) and draws the Cutout centre, both from its key. ``augment_batch_fast_autoaugment`` is their
``Augmentation`` on every image of a batch: one sub-policy drawn uniformly per image, then its ops in order, each
applied when a uniform draw is <= its probability, with magnitude level * (high - low) + low in float32.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from blasso_jax import pillow_ops


class Op(NamedTuple):
    """One op of the table: its function, magnitude range (value = level * (high - low) + low), whether the authors
    negate the magnitude with probability 1/2 (random_mirror), and whether it draws from a key (Cutout's centre)."""

    function: Callable[..., jax.Array]
    low: float
    high: float
    mirrored: bool = False
    takes_key: bool = False


# The authors' augment_list() in its order: a policy names ops, and lax.switch dispatches on the index in this table.
OPS = {
    "ShearX": Op(pillow_ops.shear_x, -0.3, 0.3, mirrored=True),
    "ShearY": Op(pillow_ops.shear_y, -0.3, 0.3, mirrored=True),
    "TranslateX": Op(pillow_ops.translate_x, -0.45, 0.45, mirrored=True),
    "TranslateY": Op(pillow_ops.translate_y, -0.45, 0.45, mirrored=True),
    "Rotate": Op(pillow_ops.rotate, -30.0, 30.0, mirrored=True),
    "AutoContrast": Op(pillow_ops.auto_contrast, 0.0, 1.0),
    "Invert": Op(pillow_ops.invert, 0.0, 1.0),
    "Equalize": Op(pillow_ops.equalize, 0.0, 1.0),
    "Solarize": Op(pillow_ops.solarize, 0.0, 256.0),
    "Posterize": Op(pillow_ops.posterize, 4.0, 8.0),
    "Contrast": Op(pillow_ops.contrast, 0.1, 1.9),
    "Color": Op(pillow_ops.color, 0.1, 1.9),
    "Brightness": Op(pillow_ops.brightness, 0.1, 1.9),
    "Sharpness": Op(pillow_ops.sharpness, 0.1, 1.9),
    "Cutout": Op(pillow_ops.cutout, 0.0, 0.2, takes_key=True),
}
OP_NAMES = tuple(OPS)  # the table's order, i.e. the op index a policy array holds
POLICY_NAMES = ("fa_reduced_cifar10", "fa_reduced_svhn")


def _call(op: Op, key: jax.Array, image: jax.Array, value: jax.Array) -> jax.Array:
    """`op` on one image at magnitude `value`, handing it `key` if it draws."""
    return op.function(key, image, value) if op.takes_key else op.function(image, value)


def apply_op(key: jax.Array, image: jax.Array, op_index: jax.Array, value: jax.Array) -> jax.Array:
    """The authors' apply_augment: op OP_NAMES[op_index] at magnitude value, the sign of the mirrored ops
    flipped with probability 1/2 and the Cutout centre drawn from key; one lax.switch, so one compile for all."""
    mirror_key, op_key = jax.random.split(key)
    value = jnp.asarray(value, jnp.float32)
    is_mirrored = jnp.asarray([op.mirrored for op in OPS.values()])[op_index]
    value = jnp.where(is_mirrored & jax.random.bernoulli(mirror_key), -value, value)
    branches = [lambda image, value, op=op: _call(op, op_key, image, value) for op in OPS.values()]
    return jax.lax.switch(op_index, branches, image, value)


def load_policy(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Fast AutoAugment policy from the packaged JSON as (op_index int32, probability float32, level float32),
    each [sub-policies, ops per sub-policy]."""
    if name not in POLICY_NAMES:
        raise ValueError(f"unknown Fast AutoAugment policy {name!r}; choose one of {POLICY_NAMES}")
    resource = importlib.resources.files("blasso_jax").joinpath("policies", "fast_autoaugment.json")
    sub_policies = json.loads(resource.read_text())["policies"][name]
    op_index = np.array([[OP_NAMES.index(op) for op, _, _ in ops] for ops in sub_policies], np.int32)
    probability = np.array([[p for _, p, _ in ops] for ops in sub_policies], np.float32)
    level = np.array([[lv for _, _, lv in ops] for ops in sub_policies], np.float32)
    return op_index, probability, level


def _unchanged(key: jax.Array, image: jax.Array, op_index: jax.Array, value: jax.Array) -> jax.Array:
    """The image as it is: the branch of an op that does not fire."""
    del key, op_index, value
    return image


def fast_autoaugment(key: jax.Array, image: jax.Array, policy: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
    """The authors' Augmentation on one uint8 image: a uniformly drawn sub-policy, its ops in order, each applied
    with its probability at magnitude level * (high - low) + low."""
    op_index, probability, level = (jnp.asarray(array) for array in policy)
    choice_key, *op_keys = jax.random.split(key, 1 + op_index.shape[1])
    chosen = jax.random.randint(choice_key, (), 0, op_index.shape[0])
    low, high = (jnp.asarray([getattr(op, bound) for op in OPS.values()], jnp.float32) for bound in ("low", "high"))
    for position, op_key in enumerate(op_keys):
        fire_key, apply_key = jax.random.split(op_key)
        op = op_index[chosen, position]
        value = level[chosen, position] * (high[op] - low[op]) + low[op]
        fires = jax.random.uniform(fire_key) <= probability[chosen, position]
        image = jax.lax.cond(fires, apply_op, _unchanged, apply_key, image, op, value)
    return image


def augment_batch_fast_autoaugment(
    key: jax.Array, images: jax.Array, policy: tuple[jax.Array, jax.Array, jax.Array]
) -> jax.Array:
    """Fast AutoAugment on a uint8 batch [B, H, W, C], one independent key (so sub-policy) per image."""
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(fast_autoaugment, in_axes=(0, 0, None))(keys, images, policy)
