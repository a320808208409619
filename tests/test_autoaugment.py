"""Fast AutoAugment's op table and policies against the authors' code; batched sampling against its definition."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from blasso_jax.data import autoaugment, pillow_ops

ARCHIVE_COPY = Path(__file__).parent / "data" / "fast_autoaugment_archive.py"
POLICY_JSON = Path(autoaugment.__file__).parent / "policies" / "fast_autoaugment.json"
# The authors' augment_list() (FastAutoAugment/augmentations.py at the commit of tests/data): name, low, high;
# the first five draw a random sign there (random_mirror).
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


AUTHORS_MIRRORED = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


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


# --- today's path before grouping, kept as the reference: per image under vmap, every op under lax.switch -------


def _reference_apply_op(key, image, op_index, value):
    mirror_key, cutout_key = jax.random.split(key)
    value = jnp.asarray(value, jnp.float32)
    is_mirrored = jnp.asarray(op_index) < len(AUTHORS_MIRRORED)
    value = jnp.where(is_mirrored & jax.random.bernoulli(mirror_key), -value, value)
    names = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate", "auto_contrast", "invert", "equalize")
    names += ("solarize", "posterize", "contrast", "color", "brightness", "sharpness")
    branches = [lambda image, value, name=name: getattr(pillow_ops, name)(image, value) for name in names]
    branches += [lambda image, value: pillow_ops.cutout(cutout_key, image, value)]
    return jax.lax.switch(op_index, branches, image, value)


def _reference_fast_autoaugment(key, image, policy):
    op_index, probability, level = (jnp.asarray(array) for array in policy)
    choice_key, *op_keys = jax.random.split(key, 1 + op_index.shape[1])
    chosen = jax.random.randint(choice_key, (), 0, op_index.shape[0])
    low, high = (jnp.asarray(bound, jnp.float32) for bound in list(zip(*AUTHORS_AUGMENT_LIST))[1:])
    for position, op_key in enumerate(op_keys):
        fire_key, apply_key = jax.random.split(op_key)
        op = op_index[chosen, position]
        value = level[chosen, position] * (high[op] - low[op]) + low[op]
        fires = jax.random.uniform(fire_key) <= probability[chosen, position]
        image = jax.lax.cond(fires, _reference_apply_op, lambda k, image, o, v: image, apply_key, image, op, value)
    return image


@jax.jit
def reference_augment_batch(key, images, policy):
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(_reference_fast_autoaugment, in_axes=(0, 0, None))(keys, images, policy)


def _jit_for(policy, **options):
    """augment_batch_fast_autoaugment compiled for one policy, which it reads as numbers (not traced)."""
    return jax.jit(lambda key, images: autoaugment.augment_batch_fast_autoaugment(key, images, policy, **options))


def _varied_images(count: int, seed: int) -> np.ndarray:
    """Noise of a random range per image and channel (so AutoContrast and Equalize see many histograms), uint8."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 200, (count, 1, 1, 3))
    high = low + rng.integers(1, 256 - low)
    return (low + rng.random((count, 32, 32, 3)) * (high - low + 1)).astype(np.uint8)


def _both_policies() -> tuple[np.ndarray, ...]:
    """The sub-policies of both packaged policies in one: every op either policy uses, each at both positions,
    checked by one compile of the grouped path and one of the reference instead of one each per policy."""
    policies = [autoaugment.load_policy(name) for name in autoaugment.POLICY_NAMES]
    return tuple(np.concatenate(arrays) for arrays in zip(*policies))


def test_the_two_policies_together_use_every_op_at_both_positions():
    op_index = _both_policies()[0]
    assert all(set(op_index[:, position].tolist()) == set(range(len(autoaugment.OPS))) for position in (0, 1))


# Overflow probability: the default (groups almost never overflow), 0.5 (capacities at the median count: in every
# batch some of the 30 groups overflow, so grouped and per-image images mix) and 1 (capacity 0: all per image).
# One xdist worker runs the three, so the jitted reference is traced and compiled once, not per case.
@pytest.mark.xdist_group("fast_autoaugment_reference")
@pytest.mark.parametrize("overflow_probability", [None, 0.5, 1.0])
def test_batch_equals_the_vmapped_switch_reference_bitwise(overflow_probability):
    policy = _both_policies()
    options = {} if overflow_probability is None else {"overflow_probability": overflow_probability}
    augment = _jit_for(policy, **options)
    images = _varied_images(256, seed=17)
    for seed in range(8 if overflow_probability is None else 2):  # 256 images per key, each with its own key
        key = jax.random.key(seed)
        got, want = np.asarray(augment(key, images)), np.asarray(reference_augment_batch(key, images, policy))
        np.testing.assert_array_equal(got, want, err_msg=f"overflow probability {overflow_probability}, key {seed}")
        assert (got != images).any(axis=(1, 2, 3)).mean() > 0.5  # most images changed: the ops did run


def test_bucket_capacities_are_binomial_quantiles():
    # Four sub-policies: [op 0 (probability 1), op 2 (probability 0)], then three times [op 1 (1/2), op 2 (1)].
    policy = (
        np.asarray([[0, 2], [1, 2], [1, 2], [1, 2]], np.int32),
        np.asarray([[1.0, 0.0], [0.5, 1.0], [0.5, 1.0], [0.5, 1.0]], np.float32),
    )
    batch, overflow_probability = 64, 1e-3

    def tail(rate: Fraction, capacity: int) -> Fraction:  # P(count > capacity), count ~ Binomial(batch, rate)
        terms = range(capacity + 1, batch + 1)
        return sum(math.comb(batch, k) * rate**k * (1 - rate) ** (batch - k) for k in terms) or Fraction(0)

    def quantile(rate: Fraction) -> int:
        return next(c for c in range(batch + 1) if tail(rate, c) <= overflow_probability)

    capacities = autoaugment.bucket_capacities(policy, batch, overflow_probability)
    expected = np.zeros((2, len(autoaugment.OPS)), int)
    expected[0, :2] = quantile(Fraction(1, 4)), quantile(Fraction(3, 8))
    expected[1, 2] = quantile(Fraction(3, 4))
    np.testing.assert_array_equal(capacities, expected)
    assert quantile(Fraction(1, 4)) > batch // 4  # the quantile leaves room above the mean
    rates_one = (np.asarray([[3, 3]], np.int32), np.asarray([[1.0, 1.0]], np.float32))
    assert (autoaugment.bucket_capacities(rates_one, batch, 1e-3)[:, 3] == batch).all()


def test_a_traced_policy_is_refused_with_a_clear_error():
    policy = autoaugment.load_policy("fa_reduced_svhn")
    with pytest.raises(TypeError, match="numpy"):
        jax.jit(autoaugment.augment_batch_fast_autoaugment)(jax.random.key(0), _varied_images(4, seed=1), policy)


def test_one_seed_one_result_and_images_draw_independently():
    augment = _jit_for(autoaugment.load_policy("fa_reduced_cifar10"))
    images = np.repeat(_varied_images(1, seed=0), 32, axis=0)
    first = np.asarray(augment(jax.random.key(7), images))
    second = np.asarray(augment(jax.random.key(7), images))
    other = np.asarray(augment(jax.random.key(8), images))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    assert first.dtype == np.uint8 and first.shape == images.shape
    assert len({output.tobytes() for output in first}) >= 16


def test_each_image_draws_its_own_sub_policy_and_ops_fire_with_their_probability():
    # Eight sub-policies [Brightness at level k / 7 (always), Invert (with probability 1/2)] on a flat grey image:
    # the output level identifies both the sub-policy and whether Invert fired (the candidates are >= 10 apart).
    levels = np.arange(8, dtype=np.float32) / 7
    op_index = np.tile(
        np.asarray([[autoaugment.OP_NAMES.index("Brightness"), autoaugment.OP_NAMES.index("Invert")]]), (8, 1)
    )
    probability = np.tile(np.asarray([[1.0, 0.5]], np.float32), (8, 1))
    level = np.stack([levels, np.zeros(8, np.float32)], axis=1)
    images = np.full((128, 32, 32, 3), 50, np.uint8)
    got = np.asarray(_jit_for((op_index.astype(np.int32), probability, level))(jax.random.key(0), images))
    assert (got == got[:, :1, :1]).all()  # every image stays flat
    grey = Image.fromarray(images[0])
    brighten = [ImageEnhance.Brightness(grey).enhance(float(np.float32(0.1 + 1.8 * k))) for k in levels]
    brightened = np.asarray([np.asarray(image)[0, 0, 0] for image in brighten], int)
    candidates = np.concatenate([brightened, 255 - brightened])
    assert np.diff(np.sort(candidates)).min() >= 10
    nearest = np.abs(got[:, 0, 0, 0].astype(int)[:, None] - candidates[None, :]).argmin(axis=1)
    chosen, inverted = nearest % 8, nearest >= 8
    assert len(set(chosen.tolist())) == 8
    assert 0.3 <= inverted.mean() <= 0.7


# --- Fast AutoAugment inside training ------------------------------------------------------------


def test_cutout_masks_follow_the_authors_cutout_default():
    from blasso_jax.common import rng
    from blasso_jax.data import augment

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
    from blasso_jax.common import parallel
    from blasso_jax.config import train_config as config_lib
    from blasso_jax.data import datasets as data
    from blasso_jax.methods import registry as methods
    from blasso_jax.models import networks as models
    from blasso_jax.training import step

    config = config_lib.preset("smoke", batch_size=32)
    dataset = data.load_dataset("synthetic", validation_size=0, synthetic_train_size=96)
    mesh = parallel.make_mesh(jax.devices()[:1])
    model = models.create_model("s-fc", 1, 10, dataset.image_shape)
    results = {}
    for policy in ("fast_autoaugment_cifar", "crop_flip"):
        state = step.create_train_state(model, dataset.image_shape, methods.optimizer(config, 3), jax.random.key(0))
        state = parallel.shard_state(state, mesh)
        x, y = (parallel.put_rows(a, mesh) for a in (dataset.x_train, dataset.y_train))
        epoch = step.make_train_epoch(
            mesh, 96, policy, dataset.mean, dataset.std, **config.step_options(), host_loop=False
        )
        for e in range(3):
            state, totals = epoch(state, x, y, jax.random.key(e))
        assert epoch._cache_size() == 1 and int(totals.examples) == 96 and np.isfinite(float(totals.loss))
        results[policy] = jax.device_get(state.params["layer1"]["kernel"])
    assert not np.allclose(results["fast_autoaugment_cifar"], results["crop_flip"])


def test_table2_defaults_to_fast_autoaugment_for_the_papers_datasets():
    from blasso_jax.config import train_config as config_lib
    from blasso_jax.data import augment
    from blasso_jax.data import datasets as data

    assert config_lib.preset("table2").augment == "auto"
    assert augment.resolve("auto", "cifar10") == "fast_autoaugment_cifar"
    cases = {
        "cifar10": "fast_autoaugment_cifar",
        "cifar100": "fast_autoaugment_cifar",
        "svhn_cropped": "fast_autoaugment_svhn",
        "/data/cifar10_jpeg_q75_images.tar.gz": "fast_autoaugment_cifar",
        "/data/my_photos": "crop_flip",
    }
    for name, expected in cases.items():
        assert augment.default_policy(name, 3) == expected
    synthetic = data.load_dataset("synthetic", validation_size=0)
    assert synthetic.augment == "none" == augment.resolve("auto", "synthetic")
    assert augment.resolve("fast_autoaugment", "synthetic") == "fast_autoaugment_cifar"
    assert augment.resolve("fast_autoaugment", "svhn_cropped") == "fast_autoaugment_svhn"
    assert augment.resolve("crop", "synthetic") == "crop"
    assert augment.resolve("fast_autoaugment_svhn", "cifar10") == "fast_autoaugment_svhn"  # a policy is itself
    with pytest.raises(ValueError, match=r"augment 'autoaugment' is not one of auto, fast_autoaugment, .*none"):
        augment.resolve("autoaugment", "cifar10")
