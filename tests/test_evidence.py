"""Window cropping and the evidence table: against a brute-force reference, and on layers known to be local."""

import numpy as np
import pytest

from blasso_jax.reporting import evidence, evidence_tables


def _brute_force_crop(kernel, shape, window):
    """Every window of every unit tried in turn (row-major, first best kept), then everything outside zeroed."""
    height, width, channels = shape
    maps = np.abs(kernel).reshape(height, width, channels, -1).sum(axis=2)
    out = np.zeros_like(kernel).reshape(height, width, channels, -1)
    source = kernel.reshape(height, width, channels, -1)
    for unit in range(kernel.shape[1]):
        sums = {
            (r, c): maps[r : r + window, c : c + window, unit].sum()
            for r in range(height - window + 1)
            for c in range(width - window + 1)
        }
        r, c = max(sums, key=lambda rc: (sums[rc], -rc[0], -rc[1]))
        out[r : r + window, c : c + window, :, unit] = source[r : r + window, c : c + window, :, unit]
    return out.reshape(kernel.shape)


@pytest.mark.parametrize("shape, window", [((8, 8, 3), 3), ((6, 10, 1), 4), ((5, 5, 2), 5)])
def test_window_crop_equals_a_brute_force_search(shape, window):
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(int(np.prod(shape)), 7)).astype(np.float32)
    kernel[rng.random(kernel.shape) < 0.6] = 0.0
    np.testing.assert_array_equal(evidence.window_crop(kernel, shape, window), _brute_force_crop(kernel, shape, window))


def test_a_local_layer_survives_cropping_and_a_scattered_one_does_not():
    rng = np.random.default_rng(1)
    shape, units = (32, 32, 3), 16
    local = np.zeros((*shape, units), np.float32)
    for unit in range(units):
        r, c = rng.integers(0, 32 - 7, size=2)
        local[r : r + 7, c : c + 7, :, unit] = rng.normal(size=(7, 7, 3))
    local = local.reshape(-1, units)
    np.testing.assert_array_equal(evidence.window_crop(local, shape, 9), local)  # a 7x7 blob fits a 9x9 window
    scattered = rng.normal(size=local.shape).astype(np.float32)  # dense: 81 of 1024 pixels survive
    kept = np.abs(evidence.window_crop(scattered, shape, 9)).sum() / np.abs(scattered).sum()
    assert kept < 2 * 81 / 1024


def _record(label, seed, ratio, radius):
    return {
        "label": label,
        "seed": seed,
        "test_accuracy": {"best": 0.5 + seed / 100, "final": 0.5},
        "nonzero_per_layer": {"layer1": 10, "layer2": 50},
        "dense_per_layer": {"layer1": 1000, "layer2": 100},
        "locality": {"ratio_median": ratio, "ratio_ge2_fraction": 0.5, "radius_median": radius},
        "final_test_accuracy_uncropped": 0.5,
        "final_test_accuracy_window_cropped": 0.25,
        "unit_ratios": [ratio, ratio + 1],
    }


def test_the_table_gives_mean_and_std_per_method_and_the_radius_against_sgds():
    records = [_record("SGD", s, 1.0, 17.0) for s in range(3)] + [_record("β-LASSO β=5", s, 3.0, 8.5) for s in (0, 1)]
    records[1]["test_accuracy"]["best"] = 0.40  # SGD seed 1: β-LASSO's seed-1 difference is +11, seed 0's 0
    lines = evidence_tables.methods_table([("folder", records)]).splitlines()
    assert lines[2].startswith("| SGD (reference) | 0, 1, 2 |")
    blasso = next(line for line in lines if line.startswith("| β-LASSO"))
    cells = [c.strip() for c in blasso.split("|")[1:-1]]
    assert cells[1] == "0, 1" and cells[2] == "50.50 ± 0.71"
    assert cells[3] == "+5.50 ± 7.78"  # per seed: 0 and +11 (SGD's seed 2 has no partner)
    assert cells[5] == "1.00 / 50.00" and cells[6] == "3.00 ± 0.00"
    assert cells[8] == "8.5 ± 0.0 (÷ 0.50)"
    assert cells[9] == "50.00 ± 0.00 → 25.00 ± 0.00"
