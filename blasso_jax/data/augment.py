"""On-device augmentation and normalisation of uint8 image batches, called inside the jitted training step.

Fast AutoAugment follows the authors' CIFAR training (kakaobrain/fast-autoaugment, FastAutoAugment/data.py),
in this order: the searched policy on each image (`blasso_jax.data.autoaugment`), a random crop from a 4-pixel zero
padding, a random horizontal flip (not for SVHN: a mirrored digit is another symbol), normalisation, then
Cutout 16x16 (zeros after normalisation, i.e. the mean colour; the authors' `CutoutDefault`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from blasso_jax.common import rng
from blasso_jax.common.paper import paper_dataset
from blasso_jax.data import autoaugment

# Fast AutoAugment per dataset kind: (the authors' searched policy, the crop/flip that follows it, the side of
# the Cutout square: `cutout: 16` in the authors' CIFAR configurations, e.g. confs/wresnet28x10_cifar.yaml, and
# `cutout: 20` in confs/wresnet28x10_svhn.yaml, kakaobrain/fast-autoaugment at commit 2424224).
FAST_AUTOAUGMENT = {
    "fast_autoaugment_cifar": ("fa_reduced_cifar10", "crop_flip", 16),
    "fast_autoaugment_svhn": ("fa_reduced_svhn", "crop", 20),
}
AUGMENT_POLICIES = (*FAST_AUTOAUGMENT, "crop_flip", "crop", "none")
# What a config's `augment` may say: a policy by its kind, or 'auto' for the data's default (`resolve`).
AUGMENT_NAMES = ("auto", "fast_autoaugment", "crop_flip", "crop", "none")


def resolve(requested: str, dataset: str, channels: int = 3, images: bool = True) -> str:
    """The policy an augmentation name means for data named `dataset`, the one meaning that training and every
    benchmark use: 'auto' is the data's default (`default_policy`), 'fast_autoaugment' the authors' policy for
    it, a policy's own name itself. Float signals (`images` False, NLGP) take none: crops and flips are image
    operations."""
    if requested not in (*AUGMENT_NAMES, *AUGMENT_POLICIES):
        raise ValueError(
            f"augment {requested!r} is not one of {', '.join(dict.fromkeys(AUGMENT_NAMES + AUGMENT_POLICIES))}"
        )
    if not images:
        if requested not in ("auto", "none"):
            raise ValueError(f"augment {requested!r} does not apply to {dataset!r} (float signals); use auto or none")
        return "none"
    if requested == "auto":
        return default_policy(dataset, channels)
    if requested == "fast_autoaugment":
        return "fast_autoaugment_svhn" if paper_dataset(dataset) == "svhn_cropped" else "fast_autoaugment_cifar"
    return requested


def default_policy(dataset: str, channels: int) -> str:
    """What 'auto' means: the paper's Fast AutoAugment for its datasets (CIFAR-10/100, SVHN, or a local copy named
    after one), else crop+flip, with no flips for digits (a mirrored digit is another symbol)."""
    if paper_dataset(dataset) is not None and channels == 3:
        return resolve("fast_autoaugment", dataset)
    if dataset == "synthetic":
        # Synthetic classes are pixel-aligned templates: shifting or mirroring them would only blur
        # the signal a smoke run needs to see its loss fall.
        return "none"
    if "svhn" in dataset.lower() or "mnist" in dataset.lower() or channels != 3:
        # Grayscale data of unknown kind is often digits or letters, which a flip changes.
        return "crop"
    return "crop_flip"


def prepare_batch(
    key: jax.Array,
    images: jax.Array,
    policy: str,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: Any = jnp.float32,
) -> jax.Array:
    """A uint8 training batch augmented by `policy`, normalised, and for Fast AutoAugment cut out."""
    if policy not in FAST_AUTOAUGMENT:
        return normalize(augment_batch(key, images, policy), mean, std, dtype)
    normalized = normalize(augment_batch(rng.child(key, "fast_autoaugment"), images, policy), mean, std, dtype)
    cutout = cutout_masks(rng.child(key, "cutout"), images.shape[:3], FAST_AUTOAUGMENT[policy][2])
    return normalized * cutout[..., None].astype(dtype)


def cutout_masks(key: jax.Array, shape: tuple[int, int, int], size: int) -> jax.Array:
    """[B, H, W] masks, 0 in a size x size square (clipped at the border) around a uniform centre per image.

    The authors' `CutoutDefault`: rows clip(y - size // 2, 0, H) to clip(y + size // 2, 0, H), exclusive.
    """
    batch, height, width = shape
    centre_y = jax.random.randint(rng.child(key, "cutout_row"), (batch, 1, 1), 0, height)
    centre_x = jax.random.randint(rng.child(key, "cutout_column"), (batch, 1, 1), 0, width)
    rows = jnp.arange(height)[None, :, None]
    columns = jnp.arange(width)[None, None, :]
    inside_y = (rows >= centre_y - size // 2) & (rows < centre_y + size // 2)
    inside_x = (columns >= centre_x - size // 2) & (columns < centre_x + size // 2)
    return ~(inside_y & inside_x)


def augment_batch(key: jax.Array, images: jax.Array, policy: str, padding: int = 4) -> jax.Array:
    """Randomly crop (from a zero padding of `padding` pixels) and maybe mirror each image of a batch.

    Jittable with `policy` and `padding` static; uint8 [B, H, W, C] in and out. 'crop_flip' crops
    and flips each image left-right with probability 1/2, 'crop' only crops, 'none' is the identity;
    the Fast AutoAugment policies apply their searched policy per image first, then their crop/flip
    (their Cutout comes after normalisation: `prepare_batch`).
    """
    if policy not in AUGMENT_POLICIES:
        raise ValueError(f"unknown augmentation policy {policy!r}; choose one of {AUGMENT_POLICIES}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if policy in FAST_AUTOAUGMENT:
        searched, then, _ = FAST_AUTOAUGMENT[policy]
        policy_key, key = rng.child(key, "policy"), rng.child(key, "after_policy")
        images = autoaugment.augment_batch_fast_autoaugment(policy_key, images, autoaugment.load_policy(searched))
        policy = then
    if policy == "none":
        return images
    batch, height, width, _ = images.shape
    crop_key, flip_key = rng.child(key, "crop"), rng.child(key, "flip")
    offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * padding + 1)
    columns = jnp.arange(width)
    if policy == "crop_flip":
        flip = jax.random.bernoulli(flip_key, shape=(batch, 1, 1, 1))
        columns = jnp.where(flip[:, 0, 0], width - 1 - columns, columns)
    # Output pixel (i, j) is image pixel (i + dy - padding, j' + dx - padding), j' = j or, mirrored,
    # width - 1 - j, and zero where that lies in the padding: one gather from the images. Padding, slicing
    # each crop and selecting it or its mirror gave the same pixels, but XLA fused them into one loop that
    # evaluated both crops and the random draws for every pixel (a third of a 512-image step's time
    # beside α=8 S-FC's non-matmul work on CPU; docs/performance.md).
    rows = offsets[:, :1] + jnp.arange(height) - padding
    columns = columns + offsets[:, 1:] - padding
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((columns >= 0) & (columns < width))[:, None, :]
    picked = images[
        jnp.arange(batch)[:, None, None],
        jnp.clip(rows, 0, height - 1)[:, :, None],
        jnp.clip(columns, 0, width - 1)[:, None, :],
    ]
    return jnp.where(inside[..., None], picked, jnp.zeros((), images.dtype))


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float], dtype: Any = jnp.float32) -> jax.Array:
    """uint8 images -> (x / 255 - mean) / std per channel, computed in float32 and returned in `dtype`.

    Float inputs (NLGP signals) are already in their units: (x - mean) / std, without the / 255.
    """
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    scale = 255.0 if images.dtype == jnp.uint8 else 1.0
    return ((images.astype(jnp.float32) / scale - mean) / std).astype(dtype)
