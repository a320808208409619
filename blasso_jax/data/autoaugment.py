"""Fast AutoAugment (Lim et al. 2019) on device: the authors' ops as one table, their policies, batched application.

The ops themselves (Pillow-exact, one image at a time) are in `blasso_jax.data.pillow_ops`. ``apply_op`` is the
authors' ``apply_augment``: it flips the sign of the geometric ops' magnitude with probability 1/2 (their
``random_mirror``) and draws the Cutout centre, both from its key. ``augment_batch_fast_autoaugment`` is their
``Augmentation`` on every image of a batch: one sub-policy drawn uniformly per image, then its ops in order, each
applied when a uniform draw is <= its probability, with magnitude level * (high - low) + low in float32.

The batch is grouped by the op each image drew, so every op runs on its own images only: per image under vmap, a
lax.switch evaluates all 15 ops for every image (164 ms per 512 images on 2 CPU cores, docs/performance.md). The
result equals that per-image path bit for bit (tests/test_autoaugment.py keeps it as the reference).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from blasso_jax.data import pillow_ops


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


def _mirror(key: jax.Array, op_index: jax.Array, value: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The authors' random_mirror: (value, negated with probability 1/2 for the mirrored ops) and the op's own key."""
    mirror_key, op_key = jax.random.split(key)
    value = jnp.asarray(value, jnp.float32)
    is_mirrored = jnp.asarray([op.mirrored for op in OPS.values()])[op_index]
    return jnp.where(is_mirrored & jax.random.bernoulli(mirror_key), -value, value), op_key


def _switch(key: jax.Array, image: jax.Array, op_index: jax.Array, value: jax.Array) -> jax.Array:
    """Op OPS[op_index] at the signed magnitude `value`: one lax.switch, so one compile for all ops."""
    branches = [lambda image, value, op=op: _call(op, key, image, value) for op in OPS.values()]
    return jax.lax.switch(op_index, branches, image, value)


def apply_op(key: jax.Array, image: jax.Array, op_index: jax.Array, value: jax.Array) -> jax.Array:
    """The authors' apply_augment: op OP_NAMES[op_index] at magnitude value, the sign of the mirrored ops
    flipped with probability 1/2 and the Cutout centre drawn from key."""
    value, op_key = _mirror(key, op_index, value)
    return _switch(op_key, image, op_index, value)


def load_policy(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Fast AutoAugment policy from the packaged JSON as (op_index int32, probability float32, level float32),
    each [sub-policies, ops per sub-policy]."""
    if name not in POLICY_NAMES:
        raise ValueError(f"unknown Fast AutoAugment policy {name!r}; choose one of {POLICY_NAMES}")
    resource = importlib.resources.files("blasso_jax.data").joinpath("policies", "fast_autoaugment.json")
    sub_policies = json.loads(resource.read_text())["policies"][name]
    op_index = np.array([[OP_NAMES.index(op) for op, _, _ in ops] for ops in sub_policies], np.int32)
    probability = np.array([[p for _, p, _ in ops] for ops in sub_policies], np.float32)
    level = np.array([[lv for _, _, lv in ops] for ops in sub_policies], np.float32)
    return op_index, probability, level


def _magnitudes(policy: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Each sub-policy op's magnitude level * (high - low) + low in float32, [sub-policies, positions].

    Computed here in numpy rather than on device, where XLA fuses the multiply and add into one rounding or not
    depending on the surrounding program: one unit in the last place, enough to move a shear's fixed-point sampling.
    """
    op_index, _, level = (np.asarray(array) for array in policy)
    low, high = (
        np.asarray([getattr(op, bound) for op in OPS.values()], np.float32)[op_index] for bound in ("low", "high")
    )
    return level.astype(np.float32) * (high - low) + low


def _draw(key: jax.Array, policy: tuple[np.ndarray, ...], values: np.ndarray) -> tuple[jax.Array, ...]:
    """One image's draws in the authors' Augmentation: a uniform sub-policy, then per position `_draw_position`.
    Returns the op index (len(OPS) where it does not fire), signed magnitude and op key, each [positions]."""
    op_index, probability, values = (jnp.asarray(array) for array in (*policy[:2], values))
    choice_key, *op_keys = jax.random.split(key, 1 + op_index.shape[1])
    chosen = jax.random.randint(choice_key, (), 0, op_index.shape[0])
    # The positions side by side: each random draw below is then one call for all of them.
    return jax.vmap(_draw_position)(jnp.stack(op_keys), op_index[chosen], probability[chosen], values[chosen])


def _draw_position(key: jax.Array, op: jax.Array, probability: jax.Array, value: jax.Array) -> tuple[jax.Array, ...]:
    """Whether the op fires (uniform <= probability), its magnitude signed by `_mirror`, and its key."""
    fire_key, apply_key = jax.random.split(key)
    fires = jax.random.uniform(fire_key) <= probability
    value, op_key = _mirror(apply_key, op, value)
    return jnp.where(fires, op, len(OPS)), value, op_key


def bucket_capacities(policy: tuple[np.ndarray, ...], batch: int, overflow_probability: float) -> np.ndarray:
    """[positions, len(OPS)] images per op and position to make room for: the smallest c with P(count > c) <=
    `overflow_probability` when each of `batch` images draws the op with its rate in the policy (binomial)."""
    op_index, probability = (np.asarray(array) for array in policy[:2])
    capacities = np.zeros((op_index.shape[1], len(OPS)), np.int64)
    counts = np.arange(batch + 1)
    log_choose = np.asarray([math.lgamma(batch + 1) - math.lgamma(k + 1) - math.lgamma(batch - k + 1) for k in counts])
    for position, index in np.ndindex(capacities.shape):
        rate = float(np.sum(probability[:, position] * (op_index[:, position] == index))) / op_index.shape[0]
        if rate <= 0.0 or rate >= 1.0:
            capacities[position, index] = 0 if rate <= 0.0 else batch
            continue
        pmf = np.exp(log_choose + counts * math.log(rate) + (batch - counts) * math.log1p(-rate))
        above = np.cumsum(pmf[::-1])[::-1][1:]  # above[c] = P(count > c), c = 0 .. batch - 1
        capacities[position, index] = int(np.argmax(np.append(above, 0.0) <= overflow_probability))
    return capacities


def _apply_grouped(
    images: jax.Array, op: jax.Array, value: jax.Array, keys: jax.Array, capacities: np.ndarray
) -> jax.Array:
    """Each image's op (len(OPS): none) applied by op: the images are sorted by op, each op runs on a window of
    capacities[op] rows from its first image, and the images its window misses (overflow, rare by the choice of
    capacities) go through lax.switch one by one."""
    batch, none = images.shape[0], len(OPS)
    order = jnp.argsort(op, stable=True)
    position = jnp.zeros(batch, jnp.int32).at[order].set(jnp.arange(batch, dtype=jnp.int32))
    counts = jnp.bincount(op, length=none + 1)
    starts = (jnp.cumsum(counts) - counts)[:none]
    # A window that would run past the end starts earlier (as dynamic_slice clamps it); it still covers its first image.
    window_starts = jnp.minimum(starts, batch - jnp.asarray(capacities))
    sorted_images, sorted_value, sorted_keys = images[order], value[order], keys[order]
    # The ops read `sorted_images` and write into a separate array: when an op updated the array it reads, XLA:CPU
    # (jax 0.10.2) fused it into an in-place update that overwrote pixels a shear had still to read.
    done = jnp.zeros_like(images)
    for index, (spec, capacity) in enumerate(zip(OPS.values(), capacities.tolist())):
        if capacity == 0:
            continue
        start = window_starts[index]
        window = (jax.lax.dynamic_slice_in_dim(array, start, capacity) for array in (sorted_keys, sorted_images))
        result = jax.vmap(functools.partial(_call, spec))(
            *window, jax.lax.dynamic_slice_in_dim(sorted_value, start, capacity)
        )
        rows = start + jnp.arange(capacity)
        mine = (rows >= starts[index]) & (rows < starts[index] + counts[index])
        result = jnp.where(mine[:, None, None, None], result, jax.lax.dynamic_slice_in_dim(done, start, capacity))
        done = jax.lax.dynamic_update_slice_in_dim(done, result, start, 0)
    window_ends = jnp.append(window_starts + jnp.asarray(capacities), batch)
    overflow = (op < none) & (position >= window_ends[op])
    grouped = jnp.where(((op < none) & ~overflow)[:, None, None, None], done[position], images)

    def with_overflow() -> jax.Array:
        switched = jax.vmap(_switch)(keys, images, jnp.minimum(op, none - 1), value)
        return jnp.where(overflow[:, None, None, None], switched, grouped)

    return jax.lax.cond(overflow.any(), with_overflow, lambda: grouped)


def augment_batch_fast_autoaugment(
    key: jax.Array,
    images: jax.Array,
    policy: tuple[np.ndarray, np.ndarray, np.ndarray],
    overflow_probability: float = 1e-5,
) -> jax.Array:
    """Fast AutoAugment on a uint8 batch [B, H, W, C], one independent key (so sub-policy) per image.

    Images are grouped by the op they drew, so each op runs on its own images only (under vmap, a lax.switch per
    image runs all 15). `policy` must be numbers (numpy, as `load_policy` gives), not traced: the group sizes come
    from its rates (`bucket_capacities`); a group that overflows (probability `overflow_probability` each) takes
    the exact per-image path for its extra images, so the result does not depend on the sizes. That path costs
    about 20 grouped batches on 2 CPU cores; at 1e-5 a batch of the 30-group policies takes it with probability
    <= 3e-4 (0.6 % of a batch on average), for about 5 % more room than 1e-4, which takes it ten times as often.
    """
    if not 0.0 <= overflow_probability <= 1.0:
        raise ValueError(f"overflow_probability must be in [0, 1], got {overflow_probability}")
    try:
        capacities = bucket_capacities(policy, images.shape[0], overflow_probability)
    except jax.errors.TracerArrayConversionError as error:
        raise TypeError("pass the Fast AutoAugment policy as numpy arrays (load_policy), not traced arrays") from error
    keys = jax.random.split(key, images.shape[0])
    op, value, op_keys = jax.vmap(_draw, in_axes=(0, None, None))(keys, policy, _magnitudes(policy))
    for position in range(op.shape[1]):
        images = _apply_grouped(images, op[:, position], value[:, position], op_keys[:, position], capacities[position])
    return images
