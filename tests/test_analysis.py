"""Locality of first-layer filters and the description length bound (the sparse export: tests/test_sparse.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blasso_jax import create_model
from blasso_jax.analysis import measures as analysis

SHAPE = (32, 32, 3)
UNITS = 16 * 16  # S-FC at α=1


def place(kernel, unit, image):
    """Writes an [H, W, C] image into `unit`'s column of a [H*W*C, units] kernel."""
    kernel[:, unit] = image.reshape(-1)


def blob(center, rng, size=3):
    image = np.zeros(SHAPE, np.float32)
    r, c = center
    half = size // 2
    image[r - half : r + half + 1, c - half : c + half + 1] = rng.standard_normal((size, size, 3))
    return image


def blobs_at_random_positions(rng, units=UNITS, size=3):
    kernel = np.zeros((np.prod(SHAPE), units), np.float32)
    for unit in range(units):
        place(kernel, unit, blob(rng.integers(size // 2, 32 - size // 2, 2), rng, size))
    return kernel


def best_window_share_by_hand(image, window=9):
    """The largest share of |w| (summed over channels) inside any window×window square: a plain numpy loop."""
    weights = np.abs(image).sum(-1)
    best = max(
        weights[r : r + window, c : c + window].sum()
        for r in range(weights.shape[0] - window + 1)
        for c in range(weights.shape[1] - window + 1)
    )
    return best / weights.sum()


def test_blobs_at_random_positions_are_local_and_dense_noise_is_at_chance():
    rng = np.random.default_rng(0)
    kernel = blobs_at_random_positions(rng)
    place(kernel, 7, np.zeros(SHAPE, np.float32))
    place(kernel, 8, rng.standard_normal(SHAPE).astype(np.float32))
    result = analysis.locality(kernel, SHAPE)
    radius, share = result["radius"], result["window_share"]
    blobs = np.delete(np.arange(UNITS), [7, 8])
    np.testing.assert_allclose(share[blobs], 1.0, rtol=1e-6)
    assert radius[blobs].max() <= 2.0 and radius[8] >= 8.0
    assert share[8] == pytest.approx(best_window_share_by_hand(kernel[:, 8].reshape(SHAPE)), rel=1e-5)
    assert np.isnan(radius[7]) and np.isnan(share[7]) and np.isnan(result["centroid"][7]).all()
    summary = result["summary"]
    assert summary["units"] == UNITS - 1 and summary["units_zero"] == 1
    assert summary["radius_median"] == pytest.approx(np.median(np.delete(radius, 7)))
    assert summary["window_share_median"] == pytest.approx(1.0)
    # Chance: dense random filters. Their best 9x9 window holds about 81/1024 of |w| plus the max over windows.
    assert 81 / 1024 < summary["window_share_chance"] < 1.3 * 81 / 1024
    assert summary["radius_chance"] > 15.0
    # The same blobs with their pixels shuffled are no longer local: about 9 random pixels per unit.
    assert summary["window_share_shuffled"] < 0.5

    noise = analysis.locality(rng.standard_normal((np.prod(SHAPE), UNITS)).astype(np.float32), SHAPE)["summary"]
    assert noise["window_share_median"] == pytest.approx(noise["window_share_chance"], rel=0.05)
    assert noise["window_share_shuffled"] == pytest.approx(noise["window_share_chance"], rel=0.05)
    assert noise["radius_median"] == pytest.approx(noise["radius_chance"], rel=0.05)


def test_a_shifted_blob_moves_the_centroid_and_keeps_radius_and_share():
    rng = np.random.default_rng(1)
    values = blob((10, 14), rng)
    kernel = np.zeros((np.prod(SHAPE), 2), np.float32)
    place(kernel, 0, values)
    place(kernel, 1, np.roll(values, (10, -11), axis=(0, 1)))
    result = analysis.locality(kernel, SHAPE)
    np.testing.assert_allclose(result["centroid"][1] - result["centroid"][0], [10, -11], atol=1e-4)
    assert result["radius"][1] == pytest.approx(result["radius"][0], abs=1e-5)
    np.testing.assert_allclose(result["window_share"], 1.0, rtol=1e-6)


def test_scattered_sparse_filters_score_like_their_shuffled_chance():
    # 20 non-zeros at random pixels: the best window catches a few by luck, far above dense chance,
    # which is why the summary carries the shuffled level computed on the same weights.
    rng = np.random.default_rng(2)
    kernel = np.zeros((np.prod(SHAPE), UNITS), np.float32)
    for unit in range(UNITS):
        kernel[rng.choice(kernel.shape[0], 20, replace=False), unit] = rng.standard_normal(20)
    summary = analysis.locality(kernel, SHAPE)["summary"]
    assert summary["window_share_median"] > 2 * summary["window_share_chance"]
    assert summary["window_share_median"] == pytest.approx(summary["window_share_shuffled"], rel=0.15)


def test_permuting_hidden_units_changes_no_number():
    rng = np.random.default_rng(3)
    kernel = blobs_at_random_positions(rng)
    kernel[:, ::3] = rng.standard_normal((np.prod(SHAPE), len(range(0, UNITS, 3))))  # a mix of local and not
    kernel[:, 5] = 0.0
    order = rng.permutation(UNITS)
    result, permuted = analysis.locality(kernel, SHAPE), analysis.locality(kernel[:, order], SHAPE)
    assert permuted["summary"] == result["summary"]
    for key in ("centroid", "radius", "window_share", "window_share_shuffled"):
        np.testing.assert_array_equal(permuted[key], result[key][order])


def test_s_local_filters_placed_back_in_the_image_score_one():
    model = create_model("s-local", 1, 10, SHAPE)
    kernel = np.asarray(
        model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)), train=False)["params"]["layer1"]["kernel"]
    )
    out_rows, out_cols, taps, features = kernel.shape  # [16, 16, 9*9*3, 1]: input channel slowest
    dense = np.zeros((*SHAPE, out_rows, out_cols, features), np.float32)
    padded = np.zeros((32 + 8, 32 + 8, 3, out_rows, out_cols, features), np.float32)  # stride 2, padding 4
    for i in range(out_rows):
        for j in range(out_cols):
            taps_ij = kernel[i, j].reshape(3, 9, 9, features).transpose(1, 2, 0, 3)
            padded[2 * i : 2 * i + 9, 2 * j : 2 * j + 9, :, i, j] = taps_ij
    dense = padded[4:-4, 4:-4].reshape(np.prod(SHAPE), -1)
    result = analysis.locality(dense, SHAPE)
    np.testing.assert_allclose(result["window_share"], 1.0, rtol=1e-6)
    assert result["summary"]["window_share_median"] == pytest.approx(1.0)
    assert result["summary"]["radius_median"] < 5.0


def test_locality_rejects_bad_shapes_and_settings():
    kernel = np.ones((np.prod(SHAPE), 4), np.float32)
    with pytest.raises(ValueError, match=r"\[3072, units\]"):
        analysis.locality(kernel[:100], SHAPE)
    with pytest.raises(ValueError, match="window"):
        analysis.locality(kernel, SHAPE, window=0)
    assert analysis.locality(kernel, SHAPE, window=33)["summary"]["window"] == 32  # clamped to the image
    with pytest.raises(ValueError, match="mass"):
        analysis.locality(kernel, SHAPE, mass=0.0)


def test_description_length_by_hand():
    params = {
        "layer1": {"kernel": np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)},
        "norm1": {"scale": np.ones(2, np.float32), "bias": np.zeros(2, np.float32)},
        "layer2": {"kernel": np.array([[0.0, 2.0], [3.0, 0.0]], np.float32), "bias": np.ones(2, np.float32)},
    }
    # k = 3 non-zeros of n = 8 kernel entries, b = 32: 3·32 + 3·log2(24) + 2·log2(8).
    result = analysis.description_length(params, bits=32)
    assert (result["nonzeros"], result["entries"], result["dense_bits"]) == (3, 8, 256)
    assert result["bits"] == pytest.approx(96 + 3 * 4.584962500721156 + 6)
    assert result["ratio"] == pytest.approx(115.75488750216347 / 256)
    zero = jax.tree.map(np.zeros_like, params)
    assert analysis.description_length(zero, bits=16)["bits"] == pytest.approx(6.0)  # only the 2·log2 n header
    with pytest.raises(ValueError, match="bits"):
        analysis.description_length(params, bits=0)


def test_locality_in_chunks_of_units_equals_one_pass_and_dense_noise_is_at_chance(monkeypatch):
    # A large layer is measured in fixed-size chunks of units (one compile serves all; the last chunk is padded):
    # 300 units in chunks of 128 (two full, one padded) give each unit's numbers as one pass over all 300 does, to
    # the rounding of a float32 sum over 1,024 pixels compiled for another chunk size: 1024 · 2⁻²³ ≈ 1.2e-4 of it.
    kernel = np.random.default_rng(0).standard_normal((3072, 300), dtype=np.float32)
    whole = analysis.locality(kernel, SHAPE)
    monkeypatch.setattr(analysis, "_LOCALITY_CHUNK_PIXELS", 128 * 32 * 32)
    chunked = analysis.locality(kernel, SHAPE)
    for name in ("centroid", "radius", "window_share", "window_share_shuffled", "ratio"):
        np.testing.assert_allclose(chunked[name], whole[name], rtol=1024 * 2.0**-23, err_msg=name)
    summary = chunked["summary"]
    assert summary["units"] == 300
    assert summary["window_share_median"] == pytest.approx(summary["window_share_chance"], rel=0.05)
    assert math.isfinite(summary["radius_median"])
