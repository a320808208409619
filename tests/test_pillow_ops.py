"""Fast AutoAugment's image ops against the Pillow calls the authors make, alone and through `apply_op`'s dispatch."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from blasso_jax.data import autoaugment, pillow_ops


def _test_images() -> np.ndarray:
    """Two uniform-noise images, a low-contrast one in [40, 200] and a smooth gradient, all 32x32x3 uint8."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    low_contrast = rng.integers(40, 201, (1, 32, 32, 3), dtype=np.uint8)
    rows, columns = np.mgrid[0:32, 0:32]
    gradient = np.stack([60 + 3 * columns, 50 + 4 * rows, 70 + 2 * (rows + columns)], axis=-1)[None]
    return np.concatenate([noise, low_contrast, gradient.astype(np.uint8)])


IMAGES = _test_images()
FUNCTION_NAMES = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate", "auto_contrast", "invert", "equalize")
FUNCTION_NAMES += ("solarize", "posterize", "contrast", "color", "brightness", "sharpness")
FUNCTION_OF_OP = dict(zip(autoaugment.OP_NAMES, FUNCTION_NAMES))
# The ops whose magnitude the authors negate with probability 1/2 (random_mirror in their augmentations.py).
AUTHORS_MIRRORED = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")

# op function, the authors' Pillow call, three magnitudes spanning the op's range, and the allowed difference:
# None = exact; (pixel fraction, levels) = at most that fraction of pixels differ, by at most that many levels.
# Shear and rotate go through Pillow's 16.16 fixed-point coefficients computed in float64; ours come from float32
# magnitudes (and float32 cos/sin), so a coefficient can land one fixed-point unit off and move a nearest-neighbour
# boundary: a few pixels may show a neighbour (any level). Sharpness sums 9 float32 products as Pillow does, but a
# compiler may reorder them, so a pixel may end 1 level off. (All three match exactly on these images today.)
OPS = {
    "shear_x": (lambda im, v: im.transform(im.size, Image.AFFINE, (1, v, 0, 0, 1, 0)), (-0.3, 0.07, 0.3), (0.01, 255)),
    "shear_y": (lambda im, v: im.transform(im.size, Image.AFFINE, (1, 0, 0, v, 1, 0)), (-0.3, -0.11, 0.3), (0.01, 255)),
    "translate_x": (
        lambda im, v: im.transform(im.size, Image.AFFINE, (1, 0, v * 32, 0, 1, 0)),
        (-0.45, 0.13, 0.45),
        None,
    ),
    "translate_y": (
        lambda im, v: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, v * 32)),
        (-0.45, -0.2, 0.45),
        None,
    ),
    "rotate": (lambda im, v: im.rotate(v), (-30.0, 7.3, 30.0), (0.01, 255)),
    "auto_contrast": (lambda im, v: ImageOps.autocontrast(im), (0.0,), None),
    "invert": (lambda im, v: ImageOps.invert(im), (0.0,), None),
    "equalize": (lambda im, v: ImageOps.equalize(im), (0.0,), None),
    "solarize": (lambda im, v: ImageOps.solarize(im, v), (0.0, 100.5, 256.0), None),
    "posterize": (lambda im, v: ImageOps.posterize(im, int(v)), (4.0, 5.7, 8.0), None),
    "contrast": (lambda im, v: ImageEnhance.Contrast(im).enhance(v), (0.1, 0.77, 1.9), None),
    "color": (lambda im, v: ImageEnhance.Color(im).enhance(v), (0.1, 1.3, 1.9), None),
    "brightness": (lambda im, v: ImageEnhance.Brightness(im).enhance(v), (0.1, 0.9, 1.9), None),
    "sharpness": (lambda im, v: ImageEnhance.Sharpness(im).enhance(v), (0.1, 0.6, 1.9), (0.01, 1)),
}


def _pillow(reference, image: np.ndarray, value: float) -> np.ndarray:
    return np.asarray(reference(Image.fromarray(image), float(np.float32(value))))


def _assert_close(got: np.ndarray, want: np.ndarray, tolerance: tuple[float, int] | None) -> None:
    if tolerance is None:
        np.testing.assert_array_equal(got, want)
        return
    pixel_fraction, levels = tolerance
    difference = np.abs(got.astype(int) - want.astype(int))
    assert difference.any(axis=-1).mean() <= pixel_fraction
    assert difference.max() <= levels


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_matches_pillow_under_jit_with_traced_magnitudes(name):
    reference, magnitudes, tolerance = OPS[name]
    images = np.repeat(IMAGES, len(magnitudes), axis=0)
    values = np.tile(np.asarray(magnitudes, np.float32), len(IMAGES))
    got = np.asarray(jax.jit(jax.vmap(getattr(pillow_ops, name)))(images, values))
    want = np.stack([_pillow(reference, image, value) for image, value in zip(images, values)])
    assert got.dtype == np.uint8
    _assert_close(got, want, tolerance)


def _authors_cutout(image: np.ndarray, value: float, center_x: float, center_y: float) -> np.ndarray:
    """The authors' Cutout / CutoutAbs with the centre given instead of drawn."""
    img = Image.fromarray(image)
    if value <= 0.0:
        return image
    v = value * img.size[0]
    w, h = img.size
    x0 = int(max(0, center_x - v / 2.0))
    y0 = int(max(0, center_y - v / 2.0))
    x1 = min(w, x0 + v)
    y1 = min(h, y0 + v)
    img = img.copy()
    ImageDraw.Draw(img).rectangle((x0, y0, x1, y1), (125, 123, 114))
    return np.asarray(img)


def test_cutout_box_and_fill_match_the_authors_code_for_a_given_centre():
    cases = [
        (0.2, 16.5, 10.25),
        (0.2, 1.25, 1.5),
        (0.2, 32.0, 32.0),
        (0.07, 20.0, 5.75),
        (0.13, 3.5, 31.0),
        (0.0, 9, 9),
    ]
    values, center_x, center_y = (np.asarray(column, np.float32) for column in zip(*cases))
    images = np.repeat(IMAGES[:1], len(cases), axis=0)
    got = np.asarray(jax.jit(jax.vmap(pillow_ops.cutout_at))(images, values, center_x, center_y))
    for output, image, case in zip(got, images, cases):
        np.testing.assert_array_equal(output, _authors_cutout(image, *case))
    # Side 0.2 * 32 = 6.4 at centre (16.5, 10.25): x0 = int(13.3) = 13, x1 = 19.4; y0 = int(7.05) = 7, y1 = 13.4;
    # Pillow's rectangle fills both ends inclusive: columns 13..19, rows 7..13.
    expected = IMAGES[0].copy()
    expected[7:14, 13:20] = (125, 123, 114)
    np.testing.assert_array_equal(got[0], expected)


def test_apply_op_dispatches_in_op_names_order_and_mirrors_geometric_ops_half_the_time():
    values = {"ShearX": 0.2, "ShearY": -0.25, "TranslateX": 0.3, "TranslateY": 0.1, "Rotate": 20.0, "Solarize": 90.0}
    values |= {"AutoContrast": 0.0, "Invert": 0.0, "Equalize": 0.0, "Posterize": 5.0, "Contrast": 1.5}
    values |= {"Color": 0.4, "Brightness": 1.2, "Sharpness": 1.7}
    draws = 12
    op_index = np.repeat([autoaugment.OP_NAMES.index(name) for name in values], draws)
    magnitude = np.repeat(np.asarray(list(values.values()), np.float32), draws)
    keys = jax.random.split(jax.random.key(3), len(op_index))
    image = IMAGES[2]
    apply = jax.jit(jax.vmap(autoaugment.apply_op, in_axes=(0, None, 0, 0)))
    got = np.asarray(apply(keys, image, op_index, magnitude)).reshape(len(values), draws, *image.shape)
    for outputs, (name, value) in zip(got, values.items()):
        reference = OPS[FUNCTION_OF_OP[name]][0]
        if name in AUTHORS_MIRRORED:
            plus, minus = _pillow(reference, image, value), _pillow(reference, image, -value)
            is_plus = [np.array_equal(output, plus) for output in outputs]
            is_minus = [np.array_equal(output, minus) for output in outputs]
            assert all(p or m for p, m in zip(is_plus, is_minus)), name
            assert any(is_plus) and any(is_minus), name
        else:
            for output in outputs:
                np.testing.assert_array_equal(output, _pillow(reference, image, value), err_msg=name)


# The authors' augment_list() (FastAutoAugment/augmentations.py at the commit of tests/data): name, low, high.


def test_auto_contrast_reproduces_pillows_float64_rounding_down_of_exact_levels():
    # Channels spanning [lo, hi] for many (lo, hi): Pillow computes int(p * 255 / (hi - lo) - lo * 255 / (hi - lo))
    # in float64, which for some pairs maps hi to 254 (e.g. lo = 0, hi = 25) or an interior level 1 below.
    rng = np.random.default_rng(5)
    low = rng.integers(0, 200, (24, 3))
    high = low + rng.integers(1, 256 - low)
    low[0], high[0] = (0, 0, 0), (25, 29, 50)
    fraction = np.linspace(0, 1, 32 * 32).reshape(32, 32, 1)
    images = np.round(low[:, None, None, :] + fraction * (high - low)[:, None, None, :]).astype(np.uint8)
    got = np.asarray(jax.jit(jax.vmap(pillow_ops.auto_contrast))(images))
    want = np.stack([np.asarray(ImageOps.autocontrast(Image.fromarray(image))) for image in images])
    np.testing.assert_array_equal(got, want)
    assert (want.max(axis=(1, 2)) == 254).sum() >= 3  # the case this test is about does occur
