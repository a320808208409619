"""Tests for blasso_jax.data.augment: crop and flip against numpy references and their key streams, the policy
names, normalization, and Fast AutoAugment's Cutout size per dataset (16 pixels for CIFAR, 20 for SVHN)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blasso_jax.common import rng as streams
from blasso_jax.data import augment, autoaugment


def _random_images(shape, seed=0) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def _reference_matches(image: np.ndarray, output: np.ndarray, padding: int) -> set:
    """Every (dy, dx, flipped) whose crop of the zero-padded image (maybe mirrored) equals `output`."""
    height, width, _ = image.shape
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    matches = set()
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[dy : dy + height, dx : dx + width]
            for flip, view in ((False, crop), (True, crop[:, ::-1])):
                if np.array_equal(view, output):
                    matches.add((dy, dx, flip))
    return matches


@pytest.mark.parametrize("policy", augment.AUGMENT_POLICIES)
def test_augment_keeps_shape_dtype_and_is_deterministic(policy):
    images = _random_images((8, 10, 12, 3))
    key = jax.random.key(0)
    # Two separate traces lower to the same program, constants included: nothing is drawn while tracing, so the
    # batch is a function of the key and the images alone (an op-by-op call, compared before, cost 3x the time).
    programs = [jax.jit(lambda k, x: augment.augment_batch(k, x, policy)).lower(key, images) for _ in range(2)]
    assert programs[0].as_text() == programs[1].as_text()
    compiled = programs[0].compile()
    out = compiled(key, images)
    assert out.shape == images.shape and out.dtype == jnp.uint8
    np.testing.assert_array_equal(out, compiled(key, images))  # same key, same batch


def test_augment_none_is_identity():
    images = _random_images((4, 8, 8, 3))
    np.testing.assert_array_equal(augment.augment_batch(jax.random.key(1), images, "none"), images)


def test_crop_never_flips():
    images = jnp.zeros((32, 6, 8, 1), jnp.uint8).at[:, :, :4].set(200)  # left half bright, right half dark
    np.testing.assert_array_equal(augment.augment_batch(jax.random.key(2), images, "crop", padding=0), images)


def test_crop_flip_without_padding_mirrors_about_half():
    images = _random_images((64, 6, 8, 3))
    out = np.asarray(augment.augment_batch(jax.random.key(3), images, "crop_flip", padding=0))
    same = [np.array_equal(o, i) for o, i in zip(out, np.asarray(images))]
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, np.asarray(images))]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 10 < sum(mirrored) < 54 and 10 < sum(same) < 54


def test_crop_offsets_stay_within_padding():
    padding, images = 3, jnp.full((64, 10, 12, 3), 255, jnp.uint8)
    out = np.asarray(augment.augment_batch(jax.random.key(4), images, "crop_flip", padding=padding))
    for image in out:
        bright = (image == 255).all(axis=-1)
        rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
        # One 255 rectangle; zero bands at most `padding` wide, on one side per axis at most.
        top, bottom, left, right = rows[0], 9 - rows[-1], cols[0], 11 - cols[-1]
        assert max(top, bottom, left, right) <= padding and min(top, bottom) == 0 and min(left, right) == 0
        expected = np.zeros_like(image)
        expected[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = 255
        np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize("policy", ["crop", "crop_flip"])
def test_augment_matches_numpy_reference(policy):
    padding, images = 2, _random_images((256, 7, 9, 2), seed=5)
    out = np.asarray(augment.augment_batch(jax.random.key(5), images, policy, padding=padding))
    found = set()
    for image, output in zip(np.asarray(images), out):
        matches = _reference_matches(image, output, padding)
        assert matches, "output is no crop of the padded image"
        assert len(matches) == 1  # random pixels: the offset and flip are unique
        found |= matches
    offsets = {(dy, dx) for dy, dx, _ in found}
    assert offsets == {(dy, dx) for dy in range(5) for dx in range(5)}
    assert {flip for _, _, flip in found} == ({False, True} if policy == "crop_flip" else {False})


def test_augment_rejects_unknown_policy():
    with pytest.raises(ValueError, match=r"'flip'.*crop_flip.*none"):
        augment.augment_batch(jax.random.key(0), _random_images((1, 4, 4, 3)), "flip")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_normalize_matches_numpy(dtype):
    images = _random_images((3, 4, 5, 3))
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    out = augment.normalize(images, mean, std, dtype)
    expected = (np.asarray(images, np.float64) / 255 - np.array(mean)) / np.array(std)
    assert out.dtype == dtype and out.shape == images.shape
    tolerance = 1e-2 if dtype == jnp.bfloat16 else 1e-6
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("policy", ["crop", "crop_flip"])
def test_crop_flip_applies_the_drawn_offsets_and_flips(policy):
    """Each image is cropped at its own draw of the 'crop' stream and mirrored by its own draw of the 'flip'
    stream, as numpy pads, slices and reverses it: the implementation may change, the augmented batch
    of a given key may not (a run's numbers depend on it)."""
    padding, images = 4, np.asarray(_random_images((64, 32, 32, 3), seed=6))
    key = jax.random.key(6)
    out = np.asarray(jax.jit(augment.augment_batch, static_argnames="policy")(key, images, policy=policy))
    offsets = np.asarray(jax.random.randint(streams.child(key, "crop"), (64, 2), 0, 2 * padding + 1))
    flips = np.asarray(jax.random.bernoulli(streams.child(key, "flip"), shape=(64, 1, 1, 1))).ravel()
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    for image, output, (dy, dx), flip in zip(padded, out, offsets, flips):
        crop = image[dy : dy + 32, dx : dx + 32]
        np.testing.assert_array_equal(output, crop[:, ::-1] if flip and policy == "crop_flip" else crop)


@pytest.mark.parametrize("policy, side", [("fast_autoaugment_cifar", 16), ("fast_autoaugment_svhn", 20)])
def test_cutout_square_side_per_dataset(monkeypatch, policy, side):
    # The searched policy is not what is tested here: leave the images as they are.
    monkeypatch.setattr(autoaugment, "augment_batch_fast_autoaugment", lambda key, images, policy: images)
    images = jnp.full((256, 32, 32, 3), 255, jnp.uint8)  # 0.5 after normalising, the crop padding -0.5: never 0
    out = np.asarray(augment.prepare_batch(jax.random.key(0), images, policy, (0.5,) * 3, (1.0,) * 3))
    cut = (out == 0).all(axis=-1).sum(axis=(1, 2))
    # A square of side s around a uniform centre, clipped at the border: whole (s·s pixels) when the centre lies
    # s/2 or more inside every border, i.e. in (32 - s)² of the 32² centres (16², 12²); the chance that none of
    # 256 centres does is (1 - 144/1024)^256 < 1e-16.
    assert cut.max() == side * side
    assert cut.min() >= (side // 2) ** 2  # a centre in a corner keeps a (s/2)² quarter
