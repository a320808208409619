"""The accuracy-locality frontier: cells over seeds, the tuned SGD as the radius reference, and the figure."""

import statistics

import pytest

from blasso_jax.reporting import frontier


def record(label, method, seed, test, val, ratio, radius):
    return {
        "label": label,
        "method": method,
        "seed": seed,
        "test_accuracy": {"best": test},
        "val_accuracy": {"best": val},
        "locality": {"ratio_median": ratio, "radius_median": radius},
        "nonzero_per_layer": {"layer1": 5},
        "dense_per_layer": {"layer1": 1000},
    }


RECORDS = [
    record("SGD", "sgd", 0, 0.65, 0.66, 1.6, 18.0),
    record("SGD", "sgd", 1, 0.66, 0.67, 1.7, 17.0),
    record("SGD, weight decay 0.001", "sgd", 0, 0.60, 0.70, 1.5, 20.0),  # best validation: the tuned SGD
    record("β-LASSO β=25, momentum 0.9", "blasso", 0, 0.655, 0.65, 1.9, 14.0),
    record("β-LASSO β=25, momentum 0.9", "blasso", 2, 0.665, 0.66, 2.1, 10.0),
]


def test_cells_are_means_and_sample_stds_over_seeds_and_the_reference_is_sgds_best_validation():
    cells = {c.label: c for c in frontier.cells(RECORDS)}
    blasso = cells["β-LASSO β=25, momentum 0.9"]
    assert blasso.seeds == (0, 2) and blasso.method == "blasso"
    assert blasso.test == pytest.approx((66.0, statistics.stdev([65.5, 66.5])))
    assert blasso.ratio == pytest.approx((2.0, statistics.stdev([1.9, 2.1])))
    assert blasso.radius == pytest.approx((12.0, statistics.stdev([14.0, 10.0])))
    assert blasso.density_first == pytest.approx(0.005)
    assert cells["SGD, weight decay 0.001"].test == pytest.approx((60.0, 0.0))  # one seed: no spread
    # Chosen by validation (70 % against 66.5 %), not by test accuracy (60 % against 65.5 %).
    assert frontier.tuned_reference(list(cells.values())).label == "SGD, weight decay 0.001"


def test_a_seed_given_twice_or_no_sgd_cell_is_refused_and_the_figure_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"cell 'SGD' holds seeds \[0, 0, 1\]"):
        frontier.cells([*RECORDS, RECORDS[0]])
    with pytest.raises(ValueError, match="no sgd cell among"):
        frontier.tuned_reference(frontier.cells(RECORDS[3:]))
    paths = frontier.plot_frontier(RECORDS, tmp_path / "frontier")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_a_label_of_an_earlier_folder_is_not_drawn_again_from_a_later_one():
    grid = [record("SGD", "sgd", 0, 0.64, 0.65, 1.6, 18.0), record("SGD, weight decay 0.002", "sgd", 0, 0.6, 0.6, 1, 9)]
    kept = frontier.first_seen([RECORDS, grid])
    assert kept == [*RECORDS, grid[1]]
