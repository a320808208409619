"""First-layer filters as images: a dense layer's units and an S-LOCAL layer's positions as full-image filters,
normalised per filter. TensorBoard's filter mosaic (training) and Figure 4 (reporting) both draw them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

FILTER_NORMALISATION = "each filter shown as |w| / max |w| of that filter, channels as RGB (black = 0)"


def fc_filters_as_images(kernel: Any, image_shape: Sequence[int]) -> np.ndarray:
    """A dense first layer's kernel `[H*W*C, units]` as one `[H, W, C]` image per unit: `[units, H, W, C]`."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 2 or kernel.shape[0] != math.prod(image_shape):
        raise ValueError(f"kernel shape {kernel.shape} is not [H*W*C, units] for image_shape {tuple(image_shape)}")
    return kernel.T.reshape(kernel.shape[1], *image_shape)


def local_filters_as_images(kernel: Any, image_shape: Sequence[int], stride: int = 2) -> np.ndarray:
    """An S-LOCAL first layer's kernel `[oh, ow, kh*kw*C, F]` as full-image filters `[oh*ow*F, H, W, C]`.

    Each position's filter (input channel slowest: `[C, kh, kw]`) is placed at its receptive field
    (stride `stride`, zero padding kh//2) in a zero image; weights that fall on the padding are
    dropped, as they only ever multiply zeros. Units are ordered (row, col, channel), as S-FC's.
    """
    kernel = np.asarray(kernel)
    height, width, channels = image_shape
    if kernel.ndim != 4 or kernel.shape[2] % channels:
        raise ValueError(f"kernel shape {kernel.shape} is not [oh, ow, kh*kw*C, F] with C={channels}")
    out_rows, out_cols, taps, features = kernel.shape
    size = math.isqrt(taps // channels)
    if size * size * channels != taps:
        raise ValueError(f"kernel shape {kernel.shape}: {taps} taps is not kh*kw*C of a square kernel, C={channels}")
    pad = size // 2
    images = np.zeros((out_rows, out_cols, features, height, width, channels), kernel.dtype)
    for i in range(out_rows):
        top = stride * i - pad
        r0, r1 = max(top, 0), min(top + size, height)
        for j in range(out_cols):
            left = stride * j - pad
            c0, c1 = max(left, 0), min(left + size, width)
            filters = kernel[i, j].reshape(channels, size, size, features).transpose(3, 1, 2, 0)
            images[i, j, :, r0:r1, c0:c1] = filters[:, r0 - top : r1 - top, c0 - left : c1 - left]
    return images.reshape(out_rows * out_cols * features, height, width, channels)


def normalised_filters(filters: np.ndarray) -> np.ndarray:
    """|w| / max |w| of each filter of `[units, H, W, C]`, as float32 in [0, 1] (an all-zero filter stays 0)."""
    magnitude = np.abs(np.asarray(filters, np.float32))
    peak = magnitude.reshape(len(magnitude), -1).max(axis=1)
    return magnitude / np.maximum(peak, np.finfo(np.float32).tiny)[:, None, None, None]
