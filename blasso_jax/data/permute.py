"""One fixed random permutation of pixel positions (the paper's permuted-pixel experiment).

The same permutation, drawn from one seed, is applied to the training, validation and test images,
so a fully-connected model sees the same task while a convolution loses its spatial prior.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from blasso_jax.data.datasets import Dataset

PERMUTATION_SEED = 0  # one permutation for every run, so runs with different seeds see the same task


def pixel_permutation(seed: int, height: int, width: int) -> np.ndarray:
    """The permutation of the `height * width` pixel positions drawn from `seed`.

    Args:
      seed: the permutation's seed (one seed, one permutation, on every host).
      height: image height in pixels.
      width: image width in pixels.

    Returns:
      int64 [height * width]: output position i takes the pixel at input position `permutation[i]`.

    Examples:
      >>> sorted(pixel_permutation(0, 2, 2).tolist())
      [0, 1, 2, 3]
    """
    return np.random.default_rng(seed).permutation(height * width)


def permute_pixels(images: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """Move the pixels of every image by `permutation`, keeping each pixel's channels together.

    Args:
      images: [N, H, W, C] images of any dtype.
      permutation: a permutation of the H * W positions, from `pixel_permutation`.

    Returns:
      [N, H, W, C] images of the same dtype; `np.argsort(permutation)` undoes it.
    """
    count, height, width, channels = images.shape
    flat = images.reshape(count, height * width, channels)
    return flat[:, permutation].reshape(count, height, width, channels)


def permute_dataset(dataset: Dataset, seed: int = PERMUTATION_SEED) -> Dataset:
    """`dataset` with every split's pixels moved by the one permutation drawn from `seed`."""
    height, width, _ = dataset.image_shape
    permutation = pixel_permutation(seed, height, width)
    return dataclasses.replace(
        dataset,
        x_train=permute_pixels(dataset.x_train, permutation),
        x_val=permute_pixels(dataset.x_val, permutation),
        x_test=permute_pixels(dataset.x_test, permutation),
    )
