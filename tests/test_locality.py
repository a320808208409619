"""Per-unit locality against each unit's own permutation null (blasso_jax.analysis.locality), checked against numpy."""

import math

import jax
import numpy as np
import pytest
from scipy import stats

from blasso_jax.analysis import measures as analysis
from blasso_jax.analysis.locality import best_window_share, random_unit_ipr, summarize, unit_locality
from blasso_jax.data.geometry import Geometry

KEY = jax.random.key(0)
U32 = 2.0**-24  # float32 unit roundoff
# The site maps are float32 sums of |w| over C <= 3 channels (relative error <= (C-1)·u each), so a share, a ratio
# of two sums of such sites, is off from a float64 reference by at most 2·2·u relative; the float64 box sums add
# nothing at this scale (S·2^-53 for S <= 4096 sites).
SHARE_RTOL = 4 * U32


def brute_force_share(site_maps: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The best window share of each map [..., sites], looping over every window start, with np.roll for the
    periodic geometries."""
    rows, cols = geometry.shape
    grid = site_maps.reshape(-1, rows, cols).astype(np.float64)
    k_rows, k_cols = (1, geometry.window) if geometry.kind in ("ring", "line") else (geometry.window, geometry.window)
    if geometry.kind in ("image", "line"):
        starts = [(r, c) for r in range(rows - k_rows + 1) for c in range(cols - k_cols + 1)]
        sums = [grid[:, r : r + k_rows, c : c + k_cols].sum((1, 2)) for r, c in starts]
    else:
        sums = [
            np.roll(grid, (-r, -c), axis=(1, 2))[:, :k_rows, :k_cols].sum((1, 2))
            for r in range(rows)
            for c in range(cols)
        ]
    return (np.max(sums, axis=0) / grid.sum((1, 2))).reshape(site_maps.shape[:-1])


def site_maps(kernel: np.ndarray, geometry: Geometry) -> np.ndarray:
    """[units, sites] |w| summed over channels, in float64: the reference's own reading of the kernel."""
    return np.abs(kernel.astype(np.float64)).reshape(geometry.sites, geometry.channels, -1).sum(1).T


GEOMETRIES = [
    Geometry("ring", (1, 23), window=4),
    Geometry("torus", (7, 9), window=3),
    Geometry("image", (8, 11), channels=3, window=5),
    Geometry("line", (1, 23), window=4),
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: g.kind)
def test_share_and_ipr_match_a_brute_force_numpy_reference(geometry):
    rng = np.random.default_rng(1)
    kernel = rng.standard_normal((geometry.sites * geometry.channels, 12)).astype(np.float32)
    kernel[rng.random(kernel.shape) < 0.7] = 0.0  # sparse, so the best window is somewhere in particular
    kernel[:, 0] = 0.0
    result = unit_locality(kernel, geometry, KEY)
    maps = site_maps(kernel, geometry)
    expected = [brute_force_share(m, geometry) if m.any() else np.nan for m in maps]
    np.testing.assert_allclose(result["share"], expected, rtol=SHARE_RTOL)
    ipr = [(m**4).sum() / (m**2).sum() ** 2 if m.any() else np.nan for m in maps]
    # IPR: float32 site sums (2u relative each) raised to the 4th power over squares: 8·2u relative at most.
    np.testing.assert_allclose(result["ipr"], ipr, rtol=16 * U32)
    np.testing.assert_array_equal(result["nonzeros"], (maps > 0).sum(1))
    assert np.isnan(result["share"][0]) and np.isnan(result["ratio"][0]) and np.isnan(result["null"][0])


def test_the_null_is_the_mean_share_over_uniform_permutations_of_the_units_own_sites():
    """Averaged over many keys, the null equals the permutation mean of the share, estimated independently with
    numpy's own shuffles; the tolerance is 5 standard errors of the difference of the two means."""
    geometry = Geometry("ring", (1, 60), window=5)
    rng = np.random.default_rng(2)
    unit = np.zeros(60, np.float32)
    unit[rng.choice(60, 12, replace=False)] = rng.uniform(0.5, 2.0, 12)
    keys = 200
    nulls = np.array([unit_locality(unit[:, None], geometry, jax.random.key(k))["null"][0] for k in range(keys)])
    reference = brute_force_share(np.array([rng.permutation(unit) for _ in range(5000)]), geometry)
    sigma = reference.std()
    standard_error = math.sqrt(sigma**2 / (5 * keys) + sigma**2 / len(reference))
    assert abs(nulls.mean() - reference.mean()) < 5 * standard_error
    # Each null is a mean of 5 independent draws: it varies from key to key (a missing permutation would not).
    assert nulls.std() > 0


def test_a_compact_blob_is_far_above_its_null():
    """A 5×5 blob of equal weights on a 64×64 torus fills one 5×5 window (share 1). Its shuffled copies scatter 25
    sites over 4096; a union bound over the 4096 windows, 5 draws and the units bounds how many share a window
    (hypergeometric tail), so the null is at most (c-1)/25 except with probability below 1e-6."""
    geometry = Geometry("torus", (64, 64), window=5)
    units = 20
    windows = geometry.sites
    tail = [units * 5 * windows * stats.hypergeom.sf(c - 1, geometry.sites, 25, 25) for c in range(1, 26)]
    c = next(count for count, p in enumerate(tail, start=1) if p < 1e-6)
    bound = 25 / (c - 1)
    assert bound > 3  # the guarantee itself is well above the "local" mark of 2
    rng = np.random.default_rng(3)
    kernel = np.zeros((64, 64, units), np.float32)
    for unit in range(units):
        r, c0 = rng.integers(0, 64, 2)
        rows, cols = np.arange(r, r + 5) % 64, np.arange(c0, c0 + 5) % 64
        kernel[np.ix_(rows, cols, [unit])] = 1.0
    result = unit_locality(kernel.reshape(-1, units), geometry, KEY)
    np.testing.assert_allclose(result["share"], 1.0, rtol=SHARE_RTOL)
    assert result["ratio"].min() >= bound
    assert result["summary"]["ratio_ge2_fraction"] == 1.0


def exchangeable_difference_is_zero_on_average(result) -> tuple[float, float]:
    """(mean, standard error) of share − null over units: for weights whose positions are a uniform permutation,
    share and each permuted share are exchangeable, so E[share − null] = 0 exactly."""
    difference = result["share"] - result["null"]
    return difference.mean(), difference.std(ddof=1) / math.sqrt(len(difference))


def test_dense_noise_and_sparse_random_positions_score_their_null():
    """Weights at uniformly random positions (dense noise, or 20 non-zeros scattered): share and null have the same
    expectation, so the mean of share − null is within 5 standard errors of 0 (a 1-in-3.5-million false alarm
    under the CLT), the summary ratio is near 1, and a blob-like ratio of 2 is rare."""
    geometry = Geometry.image((32, 32, 3), window=9)
    rng = np.random.default_rng(4)
    dense = rng.uniform(-1, 1, (3072, 400)).astype(np.float32)
    sparse = np.zeros((1024, 3, 400), np.float32)
    for unit in range(400):
        sparse[rng.choice(1024, 20, replace=False), :, unit] = rng.standard_normal((20, 3))
    for kernel in (dense, sparse.reshape(3072, 400)):
        result = unit_locality(kernel, geometry, KEY)
        mean, standard_error = exchangeable_difference_is_zero_on_average(result)
        assert abs(mean) < 5 * standard_error
        assert result["summary"]["units"] == 400
    # The blob test's counterpart: no structure, so no unit of the dense noise comes near 2 (its share is a max of
    # 576 sums of 81 |uniform| sites, within a few percent of its null).
    dense_result = unit_locality(dense, geometry, KEY)
    assert dense_result["summary"]["ratio_ge2_fraction"] == 0.0


def test_permuting_hidden_units_permutes_per_unit_values_and_keeps_the_summary():
    geometry = Geometry("torus", (12, 12), window=3)
    rng = np.random.default_rng(5)
    kernel = rng.standard_normal((144, 40)).astype(np.float32) * (rng.random((144, 40)) < 0.3)
    kernel[:, 3] = 0.0
    kernel[:7, 4] = 1.0  # a sparse unit (7 non-zeros, counted) and a very sparse one (3, left out)
    kernel[:, 5] = 0.0
    kernel[:3, 5] = 1.0
    order = rng.permutation(40)
    original = unit_locality(kernel, geometry, KEY)
    permuted = unit_locality(kernel[:, order], geometry, KEY)
    for name in ("share", "null", "ratio", "ipr", "nonzeros"):
        np.testing.assert_array_equal(permuted[name], original[name][order])
    assert permuted["summary"] == original["summary"]
    assert original["summary"]["units_zero"] == 1 and original["summary"]["units_sparse"] == 1
    counted = original["nonzeros"] >= 5
    assert original["summary"]["units"] == counted.sum() == 38
    assert original["summary"]["ratio_median"] == pytest.approx(np.median(original["ratio"][counted]))
    assert original["summary"]["ipr_median"] == pytest.approx(np.median(original["ipr"][counted]))


@pytest.mark.parametrize("geometry", [Geometry("ring", (1, 50), window=5), Geometry("torus", (20, 20), window=5)])
def test_ring_and_torus_windows_wrap_around_the_seam(geometry):
    """A blob split by the seam (on the torus, by both seams: a corner) is one blob on a ring or torus: the same
    share as the same blob in the middle, and far above its null; on a (non-periodic) image it is four pieces."""
    rows, cols = geometry.shape
    values = np.random.default_rng(6).uniform(0.5, 1.0, (min(rows, 5), 5))
    middle, seam = np.zeros((rows, cols)), np.zeros((rows, cols))
    middle_rows = np.arange(values.shape[0]) + rows // 2
    seam_rows = (np.arange(values.shape[0]) - 2) % rows if rows > 1 else np.zeros(1, int)
    middle[np.ix_(middle_rows % rows, np.arange(5) + cols // 2)] = values
    seam[np.ix_(seam_rows, (np.arange(5) - 2) % cols)] = values
    kernel = np.stack([middle.ravel(), seam.ravel()], axis=1).astype(np.float32)
    result = unit_locality(kernel, geometry, KEY)
    np.testing.assert_allclose(result["share"], 1.0, rtol=SHARE_RTOL)
    assert result["ratio"].min() > 2
    if rows > 1:
        split = best_window_share(kernel.T, Geometry("image", geometry.shape, window=5))
        assert split[0] == pytest.approx(1.0) and split[1] < 0.5  # the largest corner piece is 3x3 of 5x5 sites
    else:  # on an open line the seam blob is two pieces, of 3 and 2 sites
        split = best_window_share(kernel.T, Geometry("line", geometry.shape, window=5))
        assert split[0] == pytest.approx(1.0) and split[1] < 0.8


def test_ipr_does_not_depend_on_positions_so_its_null_is_itself():
    geometry = Geometry("ring", (1, 64), window=3)
    rng = np.random.default_rng(7)
    unit = rng.standard_normal(64).astype(np.float32) * (rng.random(64) < 0.2)
    shuffled = np.stack([unit, rng.permutation(unit), rng.permutation(unit)], axis=1)
    ipr = unit_locality(shuffled, geometry, KEY)["ipr"]
    # The same 64 numbers summed in another order: 64·u relative at most per sum, 8 such factors.
    np.testing.assert_allclose(ipr, ipr[0], rtol=8 * 64 * U32)


def test_summaries_without_counted_units_and_bad_inputs_say_what_is_wrong():
    per_unit = {name: np.array([np.nan, 1.0]) for name in ("share", "null", "ratio", "ipr")}
    per_unit["nonzeros"] = np.array([0, 3])
    summary = summarize(per_unit)
    assert summary["units"] == 0 and summary["ratio_median"] is None and summary["ratio_ge2_fraction"] is None
    with pytest.raises(ValueError, match=r"kernel shape \(10, 2\) is not \[inputs, units\] with inputs = 40 sites"):
        unit_locality(np.zeros((10, 2)), Geometry("ring", (1, 40)), KEY)
    with pytest.raises(ValueError, match="draws must be >= 5"):
        unit_locality(np.zeros((40, 2)), Geometry("ring", (1, 40)), KEY, draws=4)
    with pytest.raises(ValueError, match="unknown geometry kind 'sphere'; valid: ring, torus, image"):
        Geometry("sphere", (4, 4))
    with pytest.raises(ValueError, match=r"geometry window 9 must be 1 to 8 for a torus \(8, 8\)"):
        Geometry("torus", (8, 8), window=9)
    with pytest.raises(ValueError, match=r"shape \(2, 8\) must be \(rows, columns\) >= 1, \(1, D\) for a ring"):
        Geometry("ring", (2, 8))


def test_analysis_locality_adds_the_per_unit_null_to_its_image_summary():
    rng = np.random.default_rng(8)
    kernel = np.zeros((16, 16, 3, 6), np.float32)
    kernel[4:7, 5:8, :, :3] = rng.uniform(0.5, 1.0, (3, 3, 3, 3))  # three compact units
    kernel[..., 3:] = rng.standard_normal((16, 16, 3, 3))  # three dense ones
    kernel = kernel.reshape(-1, 6)
    result = analysis.locality(kernel, (16, 16, 3), window=5, key=KEY)
    unit = unit_locality(kernel, Geometry.image((16, 16, 3), 5), KEY)
    summary = result["summary"]
    assert summary["ratio_median"] == unit["summary"]["ratio_median"] and summary["ratio_units"] == 6
    assert summary["ratio_ge2_fraction"] == 0.5
    np.testing.assert_array_equal(result["ratio"], unit["ratio"])
    for field in ("radius_median", "window_share_median", "window_share_shuffled", "window_share_chance"):
        assert field in summary  # the fields committed results refer to are kept
    np.testing.assert_allclose(result["window_share"], unit["share"], rtol=81 * U32)


def test_ipr_is_one_for_a_one_hot_unit_and_one_over_sites_for_a_constant_unit():
    geometry = Geometry("torus", (6, 6), window=3)
    kernel = np.zeros((36, 2), np.float32)
    kernel[17, 0] = -2.5
    kernel[:, 1] = 0.3
    ipr = unit_locality(kernel, geometry, KEY)["ipr"]
    np.testing.assert_allclose(ipr, [1.0, 1 / 36], rtol=36 * U32)


def test_random_unit_ipr_is_three_over_sites_plus_two_and_the_summary_counts_units_against_it():
    """3/(D+2) is the exact mean IPR of a Gaussian unit (one channel); 4,000 drawn units must agree within the
    standard error of their mean (5 standard errors: a false alarm about once in 3 million runs)."""
    geometry = Geometry("ring", (1, 50), window=3)
    draws = np.random.default_rng(8).standard_normal((4000, 50))
    iprs = (draws**4).sum(1) / (draws**2).sum(1) ** 2
    expected = random_unit_ipr(geometry)
    assert expected == 3 / 52
    assert abs(iprs.mean() - expected) < 5 * iprs.std(ddof=1) / np.sqrt(len(iprs))
    # Three dense random units and three concentrated ones (two sites each: IPR 1/2 ≥ 4 × 3/52).
    kernel = np.concatenate([draws[:3].T, np.zeros((50, 3))], axis=1).astype(np.float32)
    for unit, site in zip((3, 4, 5), (0, 20, 40)):
        kernel[site : site + 2, unit] = 1.0
    kernel[:, 3:] += 1e-3 * (np.arange(50)[:, None] % 7 == 0)  # counted: at least 5 non-zero sites
    summary = unit_locality(kernel, geometry, KEY)["summary"]
    assert summary["ipr_random"] == expected and summary["ipr_ge4x_fraction"] == 0.5
    per_unit = unit_locality(kernel, geometry, KEY)["ipr"]
    assert summary["ipr_top_half_mean"] == pytest.approx(np.sort(per_unit)[3:].mean())
    # Several channels: |w| summed per site is less heavy-tailed than one Gaussian, so below 3/(D+2).
    assert random_unit_ipr(Geometry("image", (5, 10), channels=3, window=3)) < 3 / 52
