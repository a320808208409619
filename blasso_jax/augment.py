"""On-device augmentation and normalisation of uint8 image batches, called inside the jitted training step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

AUGMENT_POLICIES = ("crop_flip", "crop", "none")


def augment_batch(key: jax.Array, images: jax.Array, policy: str, padding: int = 4) -> jax.Array:
    """Randomly crop (from a zero padding of `padding` pixels) and maybe mirror each image of a batch.

    Jittable with `policy` and `padding` static; uint8 [B, H, W, C] in and out. 'crop_flip' crops
    and flips each image left-right with probability 1/2, 'crop' only crops, 'none' is the identity.
    """
    if policy not in AUGMENT_POLICIES:
        raise ValueError(f"unknown augmentation policy {policy!r}; choose one of {AUGMENT_POLICIES}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if policy == "none":
        return images
    batch, height, width, channels = images.shape
    crop_key, flip_key = jax.random.split(key)
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * padding + 1)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

    crops = jax.vmap(crop)(padded, offsets)
    if policy == "crop":
        return crops
    flip = jax.random.bernoulli(flip_key, shape=(batch, 1, 1, 1))
    return jnp.where(flip, crops[:, :, ::-1], crops)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float], dtype: Any = jnp.float32) -> jax.Array:
    """uint8 images -> (x / 255 - mean) / std per channel, computed in float32 and returned in `dtype`."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return ((images.astype(jnp.float32) / 255.0 - mean) / std).astype(dtype)
