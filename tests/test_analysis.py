"""Locality of first-layer filters, the description length bound and the sparse export."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blasso_jax import analysis, create_model

SHAPE = (32, 32, 3)
UNITS = 16 * 16  # S-FC at α=1: one unit per output position of a 16x16 map


def unit_at(i, j, per_position=1):
    """The first unit at output position (i, j) of an S-FC layer with `per_position` units per position."""
    return (i * 16 + j) * per_position


def place(kernel, unit, image):
    """Writes an [H, W, C] image into `unit`'s column of a [H*W*C, units] kernel."""
    kernel[:, unit] = image.reshape(-1)


def blob(center, rng, size=3):
    image = np.zeros(SHAPE, np.float32)
    r, c = center
    half = size // 2
    image[r - half : r + half + 1, c - half : c + half + 1] = rng.standard_normal((size, size, 3))
    return image


def test_locality_of_constructed_filters():
    rng = np.random.default_rng(0)
    kernel = np.zeros((np.prod(SHAPE), UNITS), np.float32)
    values = blob((10, 14), rng)
    place(kernel, unit_at(5, 7), values)  # the window of (5, 7) is rows 6..14, cols 10..18
    shifted = np.roll(values, (10, -11), axis=(0, 1))  # the same blob centred at (20, 3)
    place(kernel, unit_at(0, 0), shifted)  # far from the window of (0, 0): rows and cols 0..4
    place(kernel, unit_at(8, 8), rng.standard_normal(SHAPE).astype(np.float32))
    zero_unit = unit_at(3, 3)
    alive = [unit_at(5, 7), unit_at(0, 0), unit_at(8, 8)]
    for unit in set(range(UNITS)) - set(alive) - {zero_unit}:
        place(kernel, unit, blob((16, 16), rng))

    result = analysis.locality(kernel, SHAPE)
    radius, share = result["radius"], result["window_share"]
    assert radius[unit_at(5, 7)] <= 2.0
    assert radius[unit_at(8, 8)] >= 8.0
    # float32 on device: a shifted blob agrees to well under a thousandth of a pixel
    assert radius[unit_at(0, 0)] == pytest.approx(radius[unit_at(5, 7)], abs=1e-5)
    np.testing.assert_allclose(result["centroid"][unit_at(0, 0)] - result["centroid"][unit_at(5, 7)], [10, -11], atol=1e-9)
    assert share[unit_at(5, 7)] == pytest.approx(1.0)
    assert share[unit_at(0, 0)] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(radius[zero_unit]) and np.isnan(share[zero_unit]) and np.isnan(result["centroid"][zero_unit]).all()
    summary = result["summary"]
    counted = np.delete(radius, zero_unit)
    assert summary["units"] == UNITS - 1 and summary["units_zero"] == 1
    assert summary["radius_median"] == pytest.approx(np.median(counted))
    assert summary["radius_mean"] == pytest.approx(np.mean(counted))
    assert summary["window_share_median"] == pytest.approx(np.median(np.delete(share, zero_unit)))


def test_locality_with_several_units_per_position_and_without_a_grid():
    rng = np.random.default_rng(1)
    kernel = np.zeros((np.prod(SHAPE), 3 * UNITS), np.float32)
    place(kernel, unit_at(5, 7, per_position=3) + 2, blob((10, 14), rng))  # third unit at (5, 7)
    place(kernel, unit_at(5, 7, per_position=3) + 3, blob((10, 14), rng))  # first unit at (5, 8)
    share = analysis.locality(kernel, SHAPE)["window_share"]
    assert share[unit_at(5, 7, 3) + 2] == pytest.approx(1.0)
    assert share[unit_at(5, 7, 3) + 3] == pytest.approx(1.0)  # (5, 8)'s window, cols 12..20, holds it too
    result = analysis.locality(kernel[:, :100], SHAPE)  # 100 units do not tile a 16x16 map
    assert result["window_share"] is None and result["summary"]["window_share_median"] is None
    with pytest.raises(ValueError, match=r"\[3072, units\]"):
        analysis.locality(kernel[:100], SHAPE)


def test_random_window_share_is_a_uniform_filters_share():
    # 9-row windows at rows 0, 2, …, 30 of 32 keep 5, 7, 9 (x12), 8, 6 rows: 8.375 on average.
    assert analysis.random_window_share(SHAPE, 9, 2) == 8.375**2 / 1024
    uniform = analysis.locality(np.ones((np.prod(SHAPE), UNITS), np.float32), SHAPE)
    assert uniform["window_share"].mean() == pytest.approx(analysis.random_window_share(SHAPE, 9, 2), rel=1e-12)
    assert uniform["summary"]["window_share_random"] == analysis.random_window_share(SHAPE, 9, 2)


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


def sparse_variables():
    """An S-FC's variables with 90% of every kernel zeroed (and one -0.0 kept)."""
    model = create_model("s-fc", alpha=2, image_shape=(16, 16, 3))
    variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), train=False)
    rng = np.random.default_rng(0)

    def prune(path, leaf):
        leaf = np.array(leaf)
        if path[-1].key == "kernel":
            leaf[rng.random(leaf.shape) < 0.9] = 0.0
            leaf.reshape(-1)[0] = -0.0
        return leaf

    params = jax.tree_util.tree_map_with_path(prune, variables["params"])
    batch_stats = jax.tree.map(lambda x: np.asarray(x) + 0.5, variables["batch_stats"])
    return model, params, batch_stats


def assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_sparse_export_round_trip_is_bitwise_and_smaller(tmp_path):
    model, params, batch_stats = sparse_variables()
    path = tmp_path / "sparse.npz"
    analysis.save_sparse(path, params, batch_stats)
    loaded_params, loaded_stats = analysis.load_sparse(path)
    assert_bitwise_equal(loaded_params, params)
    assert_bitwise_equal(loaded_stats, batch_stats)
    assert np.signbit(loaded_params["layer1"]["kernel"].reshape(-1)[0])  # -0.0 kept
    with np.load(path) as archive:
        assert archive["params/layer1/kernel:indices"].dtype == np.uint32
    x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
    logits = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    reloaded = model.apply({"params": loaded_params, "batch_stats": loaded_stats}, x, train=False)
    assert np.array_equal(logits, reloaded)

    dense = tmp_path / "dense.npz"
    np.savez(dense, *jax.tree.leaves(params), *jax.tree.leaves(batch_stats))
    assert path.stat().st_size < 0.5 * dense.stat().st_size

    analysis.save_sparse(tmp_path / "params_only.npz", params)
    assert analysis.load_sparse(tmp_path / "params_only.npz")[1] is None


def test_sparse_export_keeps_bfloat16_and_rejects_other_files(tmp_path):
    params = {"layer1": {"kernel": jnp.array([[0.0, 1.5], [-2.0, 0.0]], jnp.bfloat16)}}
    analysis.save_sparse(tmp_path / "bf16.npz", params)
    assert_bitwise_equal(analysis.load_sparse(tmp_path / "bf16.npz")[0], params)
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="other.npz"):
        analysis.load_sparse(tmp_path / "other.npz")


def test_locality_is_fast_on_a_large_layer():
    # A quarter of S-FC's α=150 first layer (3072 x 38·256): the whole layer takes about 4 s on 2 cores.
    kernel = np.random.default_rng(0).standard_normal((3072, 38 * UNITS), dtype=np.float32)
    result = analysis.locality(kernel, SHAPE)
    assert result["summary"]["units"] == 38 * UNITS
    assert result["summary"]["window_share_median"] == pytest.approx(analysis.random_window_share(SHAPE), rel=0.1)
    assert math.isfinite(result["summary"]["radius_median"])
