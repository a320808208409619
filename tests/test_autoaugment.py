"""Fast AutoAugment ops against the Pillow calls the authors make, and the policy sampling against its definition."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from blasso_jax import autoaugment, pillow_ops

ARCHIVE_COPY = Path(__file__).parent / "data" / "fast_autoaugment_archive.py"
POLICY_JSON = Path(autoaugment.__file__).parent / "policies" / "fast_autoaugment.json"


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
AUTHORS_AUGMENT_LIST = (
    ("ShearX", -0.3, 0.3),
    ("ShearY", -0.3, 0.3),
    ("TranslateX", -0.45, 0.45),
    ("TranslateY", -0.45, 0.45),
    ("Rotate", -30, 30),
    ("AutoContrast", 0, 1),
    ("Invert", 0, 1),
    ("Equalize", 0, 1),
    ("Solarize", 0, 256),
    ("Posterize", 4, 8),
    ("Contrast", 0.1, 1.9),
    ("Color", 0.1, 1.9),
    ("Brightness", 0.1, 1.9),
    ("Sharpness", 0.1, 1.9),
    ("Cutout", 0, 0.2),
)


def test_op_table_is_the_authors_augment_list():
    assert [(name, op.low, op.high) for name, op in autoaugment.OPS.items()] == list(AUTHORS_AUGMENT_LIST)
    assert tuple(name for name, op in autoaugment.OPS.items() if op.mirrored) == AUTHORS_MIRRORED
    assert [name for name, op in autoaugment.OPS.items() if op.takes_key] == ["Cutout"]
    assert autoaugment.OP_NAMES == tuple(name for name, _, _ in AUTHORS_AUGMENT_LIST)


def test_load_policy_shapes_and_unknown_name():
    for name in autoaugment.POLICY_NAMES:
        op_index, probability, level = autoaugment.load_policy(name)
        assert op_index.dtype == np.int32 and probability.dtype == np.float32 and level.dtype == np.float32
        assert op_index.shape == probability.shape == level.shape and op_index.shape[1] == 2
        assert 0 <= op_index.min() and op_index.max() < len(autoaugment.OP_NAMES)
        assert (0 <= probability).all() and (probability <= 1).all() and (0 <= level).all() and (level <= 1).all()
    with pytest.raises(ValueError, match="fa_reduced_cifar10.*fa_reduced_svhn"):
        autoaugment.load_policy("fa_reduced_imagenet")


def test_policy_json_equals_the_authors_archive():
    """The packaged JSON holds exactly the two policy functions of the authors' archive.py (a verbatim copy in
    tests/data, whose header names the commit the JSON says it came from)."""
    source = ARCHIVE_COPY.read_text()
    document = json.loads(POLICY_JSON.read_text())
    namespace: dict = {}
    exec(compile(source, str(ARCHIVE_COPY), "exec"), namespace)
    for name in autoaugment.POLICY_NAMES:
        assert document["policies"][name] == namespace[name](), name
    assert f"FastAutoAugment/archive.py at commit {document['source']['commit']}" in source
    assert document["source"]["repository"] == "https://github.com/kakaobrain/fast-autoaugment"
    assert document["license"] == {"name": "MIT", "copyright": "Copyright (c) 2019 Ildoo Kim"}
    assert "# " + document["license"]["copyright"] in source.splitlines()


@pytest.fixture(scope="module")
def augment_batch():
    return jax.jit(autoaugment.augment_batch_fast_autoaugment)


def test_one_seed_one_result_and_images_draw_independently(augment_batch):
    policy = autoaugment.load_policy("fa_reduced_cifar10")
    images = np.repeat(IMAGES[:1], 32, axis=0)
    first = np.asarray(augment_batch(jax.random.key(7), images, policy))
    second = np.asarray(augment_batch(jax.random.key(7), images, policy))
    other = np.asarray(augment_batch(jax.random.key(8), images, policy))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    assert first.dtype == np.uint8 and first.shape == images.shape
    assert len({output.tobytes() for output in first}) >= 16


def test_each_image_draws_its_own_sub_policy_and_ops_fire_with_their_probability(augment_batch):
    # Eight sub-policies [Brightness at level k / 7 (always), Invert (with probability 1/2)] on a flat grey image:
    # the output level identifies both the sub-policy and whether Invert fired (the candidates are >= 10 apart).
    levels = np.arange(8, dtype=np.float32) / 7
    op_index = np.tile(
        np.asarray([[autoaugment.OP_NAMES.index("Brightness"), autoaugment.OP_NAMES.index("Invert")]]), (8, 1)
    )
    probability = np.tile(np.asarray([[1.0, 0.5]], np.float32), (8, 1))
    level = np.stack([levels, np.zeros(8, np.float32)], axis=1)
    images = np.full((128, 32, 32, 3), 50, np.uint8)
    got = np.asarray(augment_batch(jax.random.key(0), images, (op_index.astype(np.int32), probability, level)))
    assert (got == got[:, :1, :1]).all()  # every image stays flat
    brightened = np.asarray([_pillow(OPS["brightness"][0], images[0], 0.1 + 1.8 * k)[0, 0, 0] for k in levels], int)
    candidates = np.concatenate([brightened, 255 - brightened])
    assert np.diff(np.sort(candidates)).min() >= 10
    nearest = np.abs(got[:, 0, 0, 0].astype(int)[:, None] - candidates[None, :]).argmin(axis=1)
    chosen, inverted = nearest % 8, nearest >= 8
    assert len(set(chosen.tolist())) == 8
    assert 0.3 <= inverted.mean() <= 0.7


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


# --- Fast AutoAugment inside training ------------------------------------------------------------


def test_cutout_masks_follow_the_authors_cutout_default():
    from blasso_jax import augment, rng

    key = jax.random.key(3)
    masks = np.asarray(augment.cutout_masks(key, (64, 32, 32), 16))
    y_key, x_key = rng.child(key, "cutout_row"), rng.child(key, "cutout_column")
    centre_y = np.asarray(jax.random.randint(y_key, (64, 1, 1), 0, 32)).ravel()
    centre_x = np.asarray(jax.random.randint(x_key, (64, 1, 1), 0, 32)).ravel()
    for mask, y, x in zip(masks, centre_y, centre_x):
        expected = np.ones((32, 32), bool)  # FastAutoAugment/data.py CutoutDefault, in numpy
        y1, y2 = np.clip(y - 8, 0, 32), np.clip(y + 8, 0, 32)
        x1, x2 = np.clip(x - 8, 0, 32), np.clip(x + 8, 0, 32)
        expected[y1:y2, x1:x2] = False
        np.testing.assert_array_equal(mask, expected)
    assert len(set(zip(centre_y, centre_x))) > 32  # centres differ per image


def test_a_fast_autoaugment_epoch_compiles_once_inside_the_scan():
    from blasso_jax import config as config_lib
    from blasso_jax import data, models, parallel, step

    config = config_lib.preset("smoke", batch_size=32)
    dataset = data.load_dataset("synthetic", validation_size=0, synthetic_train_size=96)
    mesh = parallel.make_mesh(jax.devices()[:1])
    model = models.create_model("s-fc", 1, 10, dataset.image_shape)
    results = {}
    for policy in ("fast_autoaugment_cifar", "crop_flip"):
        state = step.create_train_state(config, model, dataset.image_shape, 3, jax.random.key(0))
        state = parallel.shard_state(state, mesh)
        x, y = (parallel.put_rows(a, mesh) for a in (dataset.x_train, dataset.y_train))
        epoch = step.make_train_epoch(config, mesh, 96, policy, dataset.mean, dataset.std, host_loop=False)
        for e in range(3):
            state, totals = epoch(state, x, y, jax.random.key(e))
        assert epoch._cache_size() == 1 and int(totals.examples) == 96 and np.isfinite(float(totals.loss))
        results[policy] = jax.device_get(state.params["layer1"]["kernel"])
    assert not np.allclose(results["fast_autoaugment_cifar"], results["crop_flip"])


def test_table2_defaults_to_fast_autoaugment_for_the_papers_datasets():
    from blasso_jax import config as config_lib
    from blasso_jax import data

    assert config_lib.preset("table2").augment == "auto"
    cases = {
        "cifar10": "fast_autoaugment_cifar",
        "cifar100": "fast_autoaugment_cifar",
        "svhn_cropped": "fast_autoaugment_svhn",
        "/data/cifar10_jpeg_q75_images.tar.gz": "fast_autoaugment_cifar",
        "/data/my_photos": "crop_flip",
    }
    for name, expected in cases.items():
        assert data._default_augment(name, 3) == expected
    svhn = data.load_dataset("synthetic", validation_size=0)
    assert data.augment_policy("fast_autoaugment", svhn) == "fast_autoaugment_cifar"
    assert data.augment_policy("auto", svhn) == "none" and data.augment_policy("crop", svhn) == "crop"
