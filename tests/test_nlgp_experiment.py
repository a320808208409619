"""experiments.nlgp end to end on a tiny configuration: selection, main grid, gain sweep, tables, figures."""

import json

from entry_points import run

from experiments import nlgp as experiment


def test_the_benchmark_trains_every_cell_writes_one_record_per_run_and_reads_them_back(tmp_path, capsys):
    results, figures = tmp_path / "results", tmp_path / "figures"
    argv = [
        "--quick",
        "--epochs=2",
        "--train=400",
        "--validation_size=80",
        "--batch_size=64",
        "--arms=beta1",
        "--lambdas=1e-3",
        "--gains=1",
        "--nocompilation_cache",
        f"--workdir={tmp_path / 'runs'}",
        f"--results_dir={results}",
        f"--figures_dir={figures}",
    ]
    run(experiment, argv)
    # Main grid (g=10) and sweep (g=1): 2 datasets, one method, one seed; λ selection reuses NLGP g=10.
    records = {p.stem: json.loads(p.read_text()) for p in results.glob("*.json")}
    assert sorted(records) == sorted(
        f"{kind}-g{gain}-beta1-l0.001-seed0" for kind in ("nlgp", "nlgp_gaussian") for gain in (1, 10)
    )
    record = records["nlgp-g10-beta1-l0.001-seed0"]
    assert record["command"].startswith("python -m experiments.table2 ") and "--beta=1.0 " in record["command"]
    assert "--dataset=nlgp:dim=40,xi=1:3,ndim=1,train=400,test=5000,gain=10" in record["command"]
    assert [point["epoch"] for point in record["curve"]] == [0, 2]  # initialisation, then every 2 epochs
    assert record["curve"][0]["nonzeros_layer1"] == record["weights_layer1"] == 40 * 8
    assert record["locality"]["geometry"] == "ring" and record["locality"]["window"] == 3
    assert len(record["first_layer_kernel"]) == 40 and len(record["first_layer_kernel"][0]) == 8
    table = (results / "table.md").read_text()
    assert "| NLGP | 10 | β-LASSO β=1 | 0.001 | 1 |" in table and "| Gaussian control | 1 | β-LASSO β=1 |" in table
    assert "| β-LASSO β=1 | 0.001 |" in table  # the λ selection
    for name in ("nlgp_receptive_fields", "nlgp_locality_curves", "nlgp_gain_sweep"):
        assert (figures / f"{name}.png").stat().st_size > 0
    assert "results:" in capsys.readouterr().out
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/*/results.json")}
    assert len(mtimes) == 4
    run(experiment, argv)  # finished runs are read back, not trained again
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/*/results.json")} == mtimes
