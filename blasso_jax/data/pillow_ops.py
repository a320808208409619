"""The 15 image ops of Fast AutoAugment (Lim et al. 2019) in jax.numpy, each equal to the Pillow call the authors make.

Every op takes one uint8 image [H, W, C] (C = 3 for the colour ops) and a float magnitude already in the op's own
range, works under jit and vmap with the magnitude traced, and reproduces what the authors' code
(github.com/kakaobrain/fast-autoaugment, FastAutoAugment/augmentations.py) gets from Pillow:

- ShearX / ShearY (v in [-0.3, 0.3]): ``Image.transform(size, AFFINE, (1, v, 0, 0, 1, 0))`` / ``(1, 0, 0, v, 1, 0)``,
  NEAREST, fill 0, with Pillow's 16.16 fixed-point arithmetic: each coefficient becomes floor(a * 65536 + 0.5),
  the offsets absorb the pixel-centre half steps, and the source pixel is (integer sum) >> 16.
- TranslateX / TranslateY (v in [-0.45, 0.45], a fraction of the width / height): ``(1, 0, v * W, 0, 1, 0)`` /
  ``(1, 0, 0, 0, 1, v * H)``, Pillow's pure-scale path: source column floor(x + 0.5 + v * W), fill 0.
- Rotate (degrees in [-30, 30]): ``Image.rotate(v)``, i.e. an affine transform about (W / 2, H / 2) with
  matrix (cos, sin, ., -sin, cos, .) of -radians(v), through the same fixed-point path, NEAREST, fill 0.
- AutoContrast: ``ImageOps.autocontrast``: per channel, int(p * 255 / (hi - lo) - lo * 255 / (hi - lo)) evaluated
  in float64 as Pillow does, which lands 1 below the exact quotient in 12,094 (lo, hi, p) cases (e.g. lo = 0,
  hi = 25 maps 25 to 254); those cases are tabulated once in numpy float64 and subtracted.
- Invert: 255 - p. Solarize (threshold in [0, 256]): p if p < v else 255 - p. Posterize (v in [4, 8]): keep the
  top int(v) bits.
- Equalize: ``ImageOps.equalize``: per channel, step = (pixels - count of the last used level) // 255, and if step
  is not 0, p -> min(255, (step // 2 + pixels below p) // step).
- Contrast / Color / Brightness / Sharpness (factor in [0.1, 1.9]): ``ImageEnhance``, i.e. ``Image.blend(degenerate,
  image, f)`` = uint8(clip(d + f * (p - d), 0, 255)) in float32, truncated; the degenerate image is the
  rounded mean of the L image (Contrast), the L image (Color), black (Brightness), or ``ImageFilter.SMOOTH``
  (Sharpness: 3x3 kernel [1 1 1; 1 5 1; 1 1 1] / 13 summed in float32 as Pillow does, + 0.5, truncated; border
  rows and columns left as they are). L = (19595 R + 38470 G + 7471 B + 32768) >> 16.
- Cutout (v in [0, 0.2]): the authors' CutoutAbs with side s = v * W: centre (cx, cy) uniform in (1, W] x (1, H]
  (their ``np.random.uniform(w)`` draws between w and 1), x0 = int(max(0, cx - s / 2)), x1 = min(W, x0 + s),
  likewise in y, and ``ImageDraw.rectangle`` fills columns x0..int(x1), rows y0..int(y1) (inclusive, clipped)
  with (125, 123, 114); s = 0 leaves the image alone.

dm_pix is not used: its affine warp samples at round(.) of float32 pixel-centre coordinates, which differs from
Pillow's fixed-point floor at ties, and it has no PIL-rounded LUT, blend or SMOOTH ops; the warps here are a
direct gather, so nothing is gained from it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

CUTOUT_FILL = (125, 123, 114)

_FIXED_POINT_ONE = 65536


# --- geometry ------------------------------------------------------------------------------------------------------


def _gather_or_zero(image: jax.Array, source_row: jax.Array, source_column: jax.Array) -> jax.Array:
    """image[source_row, source_column] per output pixel, 0 where the source lies outside the image."""
    height, width = image.shape[:2]
    inside = (source_row >= 0) & (source_row < height) & (source_column >= 0) & (source_column < width)
    pixels = image[jnp.clip(source_row, 0, height - 1), jnp.clip(source_column, 0, width - 1)]
    return jnp.where(inside[..., None], pixels, jnp.zeros_like(pixels))


def _to_fixed_point(value: jax.Array) -> jax.Array:
    """Pillow's FIX(v) = floor(v * 65536 + 0.5) as int32."""
    return jnp.floor(value * _FIXED_POINT_ONE + 0.5).astype(jnp.int32)


def _affine_fixed_point(image: jax.Array, coefficients: tuple[jax.Array, ...]) -> jax.Array:
    """Pillow's NEAREST affine transform (affine_fixed): output (x, y) samples input (a x + b y + c, d x + e y + f)."""
    a, b, c, d, e, f = (jnp.asarray(v, jnp.float32) for v in coefficients)
    height, width = image.shape[:2]
    rows = jnp.arange(height, dtype=jnp.int32)[:, None]
    columns = jnp.arange(width, dtype=jnp.int32)[None, :]
    x_fixed = _to_fixed_point(c + a * 0.5 + b * 0.5) + rows * _to_fixed_point(b) + columns * _to_fixed_point(a)
    y_fixed = _to_fixed_point(f + d * 0.5 + e * 0.5) + rows * _to_fixed_point(e) + columns * _to_fixed_point(d)
    return _gather_or_zero(image, jnp.right_shift(y_fixed, 16), jnp.right_shift(x_fixed, 16))


def shear_x(image: jax.Array, value: jax.Array) -> jax.Array:
    """PIL ``transform(AFFINE, (1, v, 0, 0, 1, 0))``: row y shifts by v * (y + 0.5) pixels; v in [-0.3, 0.3]."""
    return _affine_fixed_point(image, (1.0, value, 0.0, 0.0, 1.0, 0.0))


def shear_y(image: jax.Array, value: jax.Array) -> jax.Array:
    """PIL ``transform(AFFINE, (1, 0, 0, v, 1, 0))``: column x shifts by v * (x + 0.5) pixels; v in [-0.3, 0.3]."""
    return _affine_fixed_point(image, (1.0, 0.0, 0.0, value, 1.0, 0.0))


def translate_x(image: jax.Array, value: jax.Array) -> jax.Array:
    """PIL ``transform(AFFINE, (1, 0, v * W, 0, 1, 0))``: output column x shows column floor(x + 0.5 + v W)."""
    return _translate(image, value, axis=1)


def translate_y(image: jax.Array, value: jax.Array) -> jax.Array:
    """PIL ``transform(AFFINE, (1, 0, 0, 0, 1, v * H))``: output row y shows row floor(y + 0.5 + v H)."""
    return _translate(image, value, axis=0)


def _translate(image: jax.Array, value: jax.Array, axis: int) -> jax.Array:
    """Pillow's pure-translation path along `axis` (0: rows, 1: columns) by `value` times that side, fill 0."""
    sources = [jnp.arange(size, dtype=jnp.int32) for size in image.shape[:2]]
    size = image.shape[axis]
    offset = jnp.asarray(value, jnp.float32) * size + 0.5
    sources[axis] = jnp.floor(offset + jnp.arange(size, dtype=jnp.float32)).astype(jnp.int32)
    return _gather_or_zero(image, sources[0][:, None], sources[1][None, :])


def rotate(image: jax.Array, value: jax.Array) -> jax.Array:
    """PIL ``Image.rotate(v)``: v degrees counter-clockwise about the image centre, NEAREST, corners filled with 0."""
    height, width = image.shape[:2]
    angle = -jnp.deg2rad(jnp.asarray(value, jnp.float32))
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    center_x, center_y = width / 2, height / 2
    offset_x = cos * -center_x + sin * -center_y + center_x
    offset_y = -sin * -center_x + cos * -center_y + center_y
    return _affine_fixed_point(image, (cos, sin, offset_x, -sin, cos, offset_y))


# --- lookup-table ops --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _autocontrast_float64_shortfalls() -> tuple[np.ndarray, np.ndarray]:
    """Where Pillow's float64 int(p * scale + offset) is 1 below the exact floor((p - lo) * 255 / (hi - lo)).

    Always an exact-integer quotient rounded down: 12,094 levels p over 5,958 (lo, hi) pairs, at most 17 per pair.
    Returns the sorted pair keys lo * 256 + hi (int32 [pairs]) and each pair's levels p (int32 [pairs, 17],
    padded with -1), tabulated once in numpy float64, which rounds as Python does.
    """
    shortfalls = []
    for spread in range(1, 256):
        scale = 255.0 / spread
        low = np.arange(256 - spread)[:, None]
        level = low + np.arange(spread + 1)[None, :]
        pillow = (level * scale + (-low * scale)).astype(np.int64)
        exact = (level - low) * 255 // spread
        rows, columns = np.nonzero(pillow < exact)
        shortfalls += zip((rows * 256 + rows + spread).tolist(), level[rows, columns].tolist())
    pair_keys = np.unique([pair for pair, _ in shortfalls]).astype(np.int32)
    levels = np.full((pair_keys.size, 17), -1, np.int32)
    filled = np.zeros(pair_keys.size, np.int64)
    for pair, level in shortfalls:
        row = np.searchsorted(pair_keys, pair)
        levels[row, filled[row]] = level
        filled[row] += 1
    return pair_keys, levels


def auto_contrast(image: jax.Array, value: jax.Array | None = None) -> jax.Array:
    """PIL ``ImageOps.autocontrast``: stretch each channel's [min, max] to [0, 255] (value unused)."""
    del value
    pixels = image.astype(jnp.int32)
    low = pixels.min(axis=(0, 1))
    high = pixels.max(axis=(0, 1))
    spread = high - low
    pair_keys, shortfall_levels = (jnp.asarray(table) for table in _autocontrast_float64_shortfalls())
    pair = low * 256 + high
    row = jnp.clip(jnp.searchsorted(pair_keys, pair), 0, pair_keys.shape[0] - 1)
    shortfalls = jnp.where((pair_keys[row] == pair)[:, None], shortfall_levels[row], -1)  # [C, 17]
    # floor((p - lo) * 255 / (hi - lo)) in float32: a non-integer quotient lies >= 1 / 255 below the next integer,
    # so adding 1 / 512 absorbs the few-ulp error of a division that XLA may compute through a reciprocal.
    quotient = ((pixels - low) * 255).astype(jnp.float32) / jnp.maximum(spread, 1).astype(jnp.float32) + 2.0**-9
    is_shortfall = functools.reduce(jnp.logical_or, [pixels == shortfalls[:, j] for j in range(shortfalls.shape[1])])
    stretched = jnp.floor(quotient).astype(jnp.int32) - is_shortfall.astype(jnp.int32)
    return jnp.where(spread > 0, stretched, pixels).astype(jnp.uint8)


def invert(image: jax.Array, value: jax.Array | None = None) -> jax.Array:
    """PIL ``ImageOps.invert``: 255 - p (value unused)."""
    del value
    return 255 - image


@jax.custom_batching.custom_vmap
def _bin_counts(bins: jax.Array) -> jax.Array:
    """How often each value in [0, 256 * C) occurs in `bins` (int32 [..., C]): one scatter-add."""
    return jnp.zeros(256 * bins.shape[-1], jnp.int32).at[bins.ravel()].add(1)


@_bin_counts.def_vmap
def _bin_counts_batched(axis_size: int, in_batched: list[bool], bins: jax.Array) -> tuple[jax.Array, bool]:
    """Under vmap, one flat scatter-add with image i's bins moved up by i * 256 * C: XLA's own batching of the
    scatter writes an (image, bin) index pair per pixel first, which costs more on CPU than the scatter."""
    if not in_batched[0]:
        bins = jnp.broadcast_to(bins, (axis_size, *bins.shape))
    length = 256 * bins.shape[-1]
    flat = bins.reshape(axis_size, -1) + length * jnp.arange(axis_size, dtype=jnp.int32)[:, None]
    return jnp.zeros(axis_size * length, jnp.int32).at[flat.ravel()].add(1).reshape(axis_size, length), True


def equalize(image: jax.Array, value: jax.Array | None = None) -> jax.Array:
    """PIL ``ImageOps.equalize``: per-channel histogram equalisation with Pillow's integer LUT (value unused)."""
    del value
    height, width, channels = image.shape
    # One histogram of (channel, level) bins: a single scatter, several times faster on CPU than one per channel.
    bins = image.astype(jnp.int32) + 256 * jnp.arange(channels, dtype=jnp.int32)
    histogram = _bin_counts(bins).reshape(channels, 256)
    levels = jnp.arange(256, dtype=jnp.int32)
    # The last used level from the histogram (256 values), not the image's maximum (all its pixels).
    last_used_count = histogram[jnp.arange(channels), jnp.max(jnp.where(histogram > 0, levels, 0), axis=1)]
    step = (height * width - last_used_count) // 255  # [C]
    below = jnp.cumsum(histogram, axis=1) - histogram
    lut = jnp.minimum((step[:, None] // 2 + below) // jnp.maximum(step, 1)[:, None], 255)
    lut = jnp.where(step[:, None] > 0, lut, levels)
    return jnp.take(lut.ravel(), bins).astype(jnp.uint8)


def solarize(image: jax.Array, value: jax.Array) -> jax.Array:
    """PIL ``ImageOps.solarize(threshold=v)``: invert the pixels >= v; v in [0, 256]."""
    pixels = image.astype(jnp.float32)
    return jnp.where(pixels < value, image, 255 - image)


def posterize(image: jax.Array, value: jax.Array) -> jax.Array:
    """PIL ``ImageOps.posterize(bits=int(v))``: zero all but the top int(v) bits; v in [4, 8]."""
    dropped_bits = 8 - jnp.asarray(value, jnp.float32).astype(jnp.int32)
    pixels = image.astype(jnp.int32)
    return jnp.left_shift(jnp.right_shift(pixels, dropped_bits), dropped_bits).astype(jnp.uint8)


# --- ImageEnhance ------------------------------------------------------------------------------------------------


def _split_mantissa(factor: jax.Array) -> tuple[jax.Array, jax.Array]:
    """factor = high + low exactly, each with at most 12 significant bits (high: the top 12 of the mantissa)."""
    factor = jnp.asarray(factor, jnp.float32)
    bits = jax.lax.bitcast_convert_type(factor, jnp.uint32)
    high = jax.lax.bitcast_convert_type(bits & jnp.uint32(0xFFFFF000), jnp.float32)
    return high, factor - high


def _rounded_product(small_integers: jax.Array, factor: jax.Array) -> jax.Array:
    """float32 round(x * factor) for integer-valued x with |x| < 4096, whether or not XLA fuses it into an FMA.

    Pillow multiplies and then adds, rounding twice; XLA may contract a * b + c into one fused multiply-add,
    rounding once. Here both partial products are exact, so their sum is rounded once to the true product.
    """
    high, low = _split_mantissa(factor)
    return small_integers * high + small_integers * low


def _blend(degenerate: jax.Array, image: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL ``Image.blend(degenerate, image, factor)``: uint8(clip(d + f * (p - d), 0, 255)) in float32, truncated."""
    start = degenerate.astype(jnp.float32)
    difference = image.astype(jnp.float32) - start
    blended = start + _rounded_product(difference, factor)
    return jnp.floor(jnp.clip(blended, 0.0, 255.0)).astype(jnp.uint8)


def _luminance(image: jax.Array) -> jax.Array:
    """PIL ``convert("L")`` of an RGB image as int32 [H, W]: (19595 R + 38470 G + 7471 B + 32768) >> 16."""
    pixels = image.astype(jnp.int32)
    weighted = pixels[..., 0] * 19595 + pixels[..., 1] * 38470 + pixels[..., 2] * 7471 + 32768
    return jnp.right_shift(weighted, 16)


def contrast(image: jax.Array, value: jax.Array) -> jax.Array:
    """PIL ``ImageEnhance.Contrast(v)``: blend with the rounded mean grey level; v in [0.1, 1.9]."""
    luminance = _luminance(image)
    count = luminance.size
    mean = (2 * luminance.sum() + count) // (2 * count)
    return _blend(jnp.broadcast_to(mean, image.shape), image, value)


def color(image: jax.Array, value: jax.Array) -> jax.Array:
    """PIL ``ImageEnhance.Color(v)``: blend with the grey (L) image; v in [0.1, 1.9]."""
    grey = jnp.broadcast_to(_luminance(image)[..., None], image.shape)
    return _blend(grey, image, value)


def brightness(image: jax.Array, value: jax.Array) -> jax.Array:
    """PIL ``ImageEnhance.Brightness(v)``: blend with black; v in [0.1, 1.9]."""
    return _blend(jnp.zeros_like(image), image, value)


_SMOOTH_EDGE = np.float32(1) / np.float32(13)
_SMOOTH_CENTRE = np.float32(5) / np.float32(13)


def _smooth(image: jax.Array) -> jax.Array:
    """PIL ``filter(ImageFilter.SMOOTH)`` of the interior, uint8 [H, W] (border pixels: anything, Pillow keeps them):
    3x3 [1 1 1; 1 5 1; 1 1 1] / 13 with Pillow's float32 summation order (0.5 + row below + row + row above, each
    left + centre + right), truncated."""
    pixels = jnp.pad(image, ((1, 1), (1, 1), (0, 0))).astype(jnp.float32)
    height, width = image.shape[:2]

    def row_sum(row_offset: int, centre_weight: np.float32) -> jax.Array:
        rows = pixels[1 + row_offset : height + 1 + row_offset]
        left, centre, right = rows[:, :width], rows[:, 1 : width + 1], rows[:, 2:]
        edge = _rounded_product(left, _SMOOTH_EDGE) + _rounded_product(centre, centre_weight)
        return edge + _rounded_product(right, _SMOOTH_EDGE)

    total = np.float32(0.5) + row_sum(1, _SMOOTH_EDGE)
    total = total + row_sum(0, _SMOOTH_CENTRE)
    total = total + row_sum(-1, _SMOOTH_EDGE)
    return jnp.floor(jnp.clip(total, 0.0, 255.0)).astype(jnp.uint8)


def sharpness(image: jax.Array, value: jax.Array) -> jax.Array:
    """PIL ``ImageEnhance.Sharpness(v)``: blend with the SMOOTH-filtered image; v in [0.1, 1.9].

    SMOOTH leaves the border as it is and a pixel blended with itself stays, so the border is the input's
    (selected with a mask: writing the interior into the image with .at[].set runs 6x slower on CPU).
    """
    height, width = image.shape[:2]
    rows, columns = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
    interior = (rows > 0) & (rows < height - 1) & (columns > 0) & (columns < width - 1)
    return jnp.where(interior[..., None], _blend(_smooth(image), image, value), image)


# --- Cutout ------------------------------------------------------------------------------------------------------


def cutout_at(image: jax.Array, value: jax.Array, center_x: jax.Array, center_y: jax.Array) -> jax.Array:
    """The authors' Cutout with a given centre: a (v W)-pixel box of colour (125, 123, 114); v in [0, 0.2]."""
    height, width = image.shape[:2]
    side = jnp.asarray(value, jnp.float32) * width
    x0 = jnp.floor(jnp.maximum(0.0, center_x - side / 2))
    y0 = jnp.floor(jnp.maximum(0.0, center_y - side / 2))
    x1 = jnp.floor(jnp.minimum(float(width), x0 + side))
    y1 = jnp.floor(jnp.minimum(float(height), y0 + side))
    columns = jnp.arange(width, dtype=jnp.float32)[None, :]
    rows = jnp.arange(height, dtype=jnp.float32)[:, None]
    inside = (columns >= x0) & (columns <= x1) & (rows >= y0) & (rows <= y1) & (side > 0)
    fill = jnp.asarray(CUTOUT_FILL[: image.shape[2]], image.dtype)
    return jnp.where(inside[..., None], fill, image)


def cutout(key: jax.Array, image: jax.Array, value: jax.Array) -> jax.Array:
    """The authors' Cutout: centre uniform in (1, W] x (1, H] (their np.random.uniform(w)), then ``cutout_at``."""
    height, width = image.shape[:2]
    uniform_x, uniform_y = jax.random.uniform(key, (2,))
    return cutout_at(image, value, width + (1 - width) * uniform_x, height + (1 - height) * uniform_y)
