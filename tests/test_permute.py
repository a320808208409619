"""The permuted-pixel transform: fixed by its seed, a permutation, invertible, channels kept together."""

import numpy as np

from blasso_jax.data.permute import permute_pixels, pixel_permutation


def test_one_seed_gives_one_permutation_and_seeds_differ():
    np.testing.assert_array_equal(pixel_permutation(3, 32, 32), pixel_permutation(3, 32, 32))
    assert not np.array_equal(pixel_permutation(3, 32, 32), pixel_permutation(4, 32, 32))
    assert sorted(pixel_permutation(3, 32, 32).tolist()) == list(range(32 * 32))


def test_permutation_moves_whole_pixels_and_is_invertible():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 4, 6, 3), dtype=np.uint8)
    permutation = pixel_permutation(1, 4, 6)
    permuted = permute_pixels(images, permutation)
    assert permuted.dtype == np.uint8 and permuted.shape == images.shape
    # Independent reference: output pixel (i // W, i % W) is input pixel (p // W, p % W), p = permutation[i].
    for i, p in enumerate(permutation):
        np.testing.assert_array_equal(permuted[:, i // 6, i % 6], images[:, p // 6, p % 6])
    assert not np.array_equal(permuted, images)
    np.testing.assert_array_equal(permute_pixels(permuted, np.argsort(permutation)), images)


def test_permute_pixels_flag_permutes_every_split_alike():
    from blasso_jax.config import train_config as config_lib
    from blasso_jax.training import train

    plain = config_lib.TrainConfig(dataset="synthetic", validation_size=64, batch_size=64)
    original = train.load_data(plain)
    permuted = train.load_data(plain.replace(permute_pixels=True))
    permutation = pixel_permutation(0, *original.image_shape[:2])
    for split in ("x_train", "x_val", "x_test"):
        np.testing.assert_array_equal(getattr(permuted, split), permute_pixels(getattr(original, split), permutation))
    np.testing.assert_array_equal(permuted.y_train, original.y_train)
