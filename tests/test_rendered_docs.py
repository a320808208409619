"""The evidence tables in README.md and docs/ are the committed JSONs rendered, and the rendering reads them: a
changed JSON changes its cells as an independent computation says, paired per seed."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from blasso_jax.reporting import evidence_tables, rendered_docs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


@pytest.mark.parametrize("document", rendered_docs.documents(ROOT), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_committed_document_equals_its_rendering_from_the_jsons(document):
    text = document.read_text()
    assert text.count("<!-- evidence:") > 0, f"{document} renders no table"
    assert rendered_docs.render(text, RESULTS) == text, "run: python -m experiments.evidence --render_docs"


def test_every_evidence_folder_has_a_rendered_table():
    folders = {p.parent for p in RESULTS.glob("*/*.json")}
    assert folders == {p.parent for p in rendered_docs.documents(ROOT) if p.name == "table.md"}


def _cell(table: str, row_start: str, header: str) -> str:
    lines = table.splitlines()
    headers = [c.strip() for c in lines[0].split("|")[1:-1]]
    row = next(line for line in lines if line.startswith(row_start))
    return [c.strip() for c in row.split("|")[1:-1]][headers.index(header)]


def test_a_changed_json_changes_its_cells_as_numpy_computes_them(tmp_path):
    shutil.copytree(RESULTS / "cpu_locality", tmp_path / "cpu_locality")
    sgd = tmp_path / "cpu_locality" / "sgd-s2.json"
    record = json.loads(sgd.read_text())
    record["test_accuracy"]["best"] = 0.4
    sgd.write_text(json.dumps(record))
    records = evidence_tables.read_folder(tmp_path / "cpu_locality")
    blasso = {r["seed"]: 100 * r["test_accuracy"]["best"] for r in records if r["method"] == "blasso"}
    sgd_best = {r["seed"]: 100 * r["test_accuracy"]["best"] for r in records if r["method"] == "sgd"}
    differences = np.array([blasso[s] - sgd_best[s] for s in (0, 1, 2)])
    expected = f"{differences.mean():+.2f} ± {differences.std(ddof=1):.2f}"
    table = rendered_docs.table("cpu_locality/methods", tmp_path)
    assert _cell(table, "| β-LASSO β=1 |", "− reference's, per seed") == expected
    sgd_mean = np.mean(list(sgd_best.values()))
    assert _cell(table, "| SGD (reference) |", "test % (best val)").startswith(f"{sgd_mean:.2f} ± ")
    committed = rendered_docs.table("cpu_locality/methods", RESULTS)
    assert committed != table


def test_a_difference_is_over_the_seeds_both_ran():
    def run(label, seed, best):
        return {"label": label, "seed": seed, "test_accuracy": {"best": best}}

    runs = [run("b", 0, 0.53), run("b", 1, 0.55), run("b", 3, 0.9)]
    reference = [run("a", 0, 0.52), run("a", 1, 0.52), run("a", 2, 0.1)]
    per_seed = np.array([1.0, 3.0])  # seeds 0 and 1; seed 3 has no partner, seed 2 no run
    expected = f"+{per_seed.mean():.2f} ± {per_seed.std(ddof=1):.2f}"
    assert evidence_tables.paired_difference(runs, reference, evidence_tables.best) == expected


def test_the_targets_count_the_seeds_that_meet_them():
    records = evidence_tables.read_folder(RESULTS / "cpu_locality")
    best = {(r["method"], r["seed"]): 100 * r["test_accuracy"]["best"] for r in records}
    gaps = np.array([best["blasso", s] - best["sgd", s] for s in (0, 1, 2)])
    radius = {(r["method"], r["seed"]): r["locality"]["radius_median"] for r in records}
    shrink = np.array([radius["blasso", s] / radius["sgd", s] for s in (0, 1, 2)])
    table = rendered_docs.table('cpu_locality/targets labels="β-LASSO β=1"', RESULTS)
    accuracy = _cell(table, "| β-LASSO β=1 |", "test % − reference's ≥ +1 (best val)")
    assert accuracy == f"{gaps.mean():.2f} ± {gaps.std(ddof=1):.2f}: {int((gaps >= 1).sum())} of 3"
    compact = _cell(table, "| β-LASSO β=1 |", "radius ÷ reference's ≤ 0.6")
    assert compact == f"{shrink.mean():.2f} ± {shrink.std(ddof=1):.2f}: {int((shrink <= 0.6).sum())} of 3"


def test_the_momentum_targets_read_layer_one_density_and_the_paired_gap():
    records = evidence_tables.read_folder(RESULTS / "cpu_locality")
    blasso = sorted((r for r in records if r["method"] == "blasso"), key=lambda r: r["seed"])
    first = [100 * r["nonzero_per_layer"]["layer1"] / r["dense_per_layer"]["layer1"] for r in blasso]
    best = {(r["method"], r["seed"]): 100 * r["test_accuracy"]["best"] for r in records}
    gaps = np.array([best["blasso", s] - best["sgd", s] for s in (0, 1, 2)])
    table = rendered_docs.table('cpu_locality/targets targets=momentum labels="β-LASSO β=1"', RESULTS)
    density = _cell(table, "| β-LASSO β=1 |", "layer-1 non-zero % ≤ 1")
    assert density == f"{np.mean(first):.2f} ± {np.std(first, ddof=1):.2f}: {sum(d <= 1 for d in first)} of 3"
    accuracy = _cell(table, "| β-LASSO β=1 |", "test % − reference's ≥ +1 (best val)")
    assert accuracy == f"{gaps.mean():.2f} ± {gaps.std(ddof=1):.2f}: {int((gaps >= 1).sum())} of 3"
    with pytest.raises(ValueError, match="unknown target set 'paper'; sets: cpu_locality, momentum"):
        rendered_docs.table("cpu_locality/targets targets=paper", RESULTS)


def test_the_grid_table_shows_the_validation_accuracy_that_chooses_a_cell():
    records = evidence_tables.read_folder(RESULTS / "cpu_locality")
    val = [100 * r["val_accuracy"]["best"] for r in records if r["method"] == "sgd"]
    test = [100 * r["test_accuracy"]["best"] for r in records if r["method"] == "sgd"]
    table = rendered_docs.table("cpu_locality/grid", RESULTS)
    assert _cell(table, "| SGD (reference) |", "val % (best)") == f"{np.mean(val):.2f} ± {np.std(val, ddof=1):.2f}"
    assert _cell(table, "| SGD (reference) |", "test % (best val)").startswith(f"{np.mean(test):.2f} ± ")
    assert _cell(table, "| SGD (reference) |", "radius px (÷ reference's)").endswith("(÷ 1.00)")


@pytest.mark.parametrize(
    "text, message",
    [
        ("<!-- evidence:cpu_locality/nonsense -->\n<!-- /evidence -->", "TABLE one of methods"),
        ("<!-- evidence:cpu_locality/methods colour=red -->\n<!-- /evidence -->", "unknown option 'colour'"),
        ('<!-- evidence:cpu_locality/methods labels="SGD;Adam" -->\n<!-- /evidence -->', r"labelled \['Adam'\]"),
        ("<!-- evidence:no_such_folder/methods -->\n<!-- /evidence -->", "holds no evidence JSON"),
        ("<!-- evidence:cpu_locality/methods -->\n| a table |\n", "without their closing line"),
    ],
)
def test_a_bad_marker_fails_naming_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        rendered_docs.render(text, RESULTS)
