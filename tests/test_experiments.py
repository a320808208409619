"""Sweep, Table 1, Figure 3 --launch and benchmark entry points, in-process on CPU-sized presets."""

import json
import shlex

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from entry_points import SMOKE, parse, run

import blasso_jax as bj
from blasso_jax import methods
from blasso_jax.common import files
from blasso_jax.config import train_config as config_lib
from blasso_jax.reporting import ladders
from blasso_jax.training import sweep
from experiments import benchmark, fig1, fig2, fig3, fig5, locality_table, table1, table2
from experiments import flags as train_flags


def test_table2_sweep_runs_each_cell_once_and_resumes(tmp_path, capsys):
    argv = [*SMOKE, "--epochs=1", "--sweep", "--datasets=synthetic", f"--workdir={tmp_path}"]
    run(table2, argv)
    table = (tmp_path / "table2.md").read_text()
    for method in ("β-LASSO β=0", "β-LASSO β=1", "β-LASSO β=50", "SGD"):
        assert f"| synthetic | {method} | 1 |" in table
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/results.json")}
    assert len(mtimes) == 4
    run(table2, argv)  # a rerun reads the finished cells back instead of training again
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/results.json")} == mtimes
    assert "| synthetic | SGD | 1 |" in capsys.readouterr().out


def test_grids_are_the_papers_values_crossed_with_dropout():
    blasso = methods.grid_configs(config_lib.preset("table2"), "paper")
    lambdas = {1e-6, 2e-6, 5e-6, 1e-5, 2e-5}
    assert len(blasso) == 5 * 5 * 2 and len(set(blasso)) == 50
    assert {c.l1_first for c in blasso} == {c.l1_rest for c in blasso} == lambdas
    assert {c.dropout for c in blasso} == {0.0, methods.GRID_DROPOUT}
    sgd = methods.grid_configs(config_lib.preset("table2", method="sgd", dropout=0.3), "paper")
    assert len(sgd) == 2 * 5 * 2 and {c.momentum for c in sgd} == {0.0, 0.9}
    assert {c.weight_decay for c in sgd} == {0.0, 1e-4, 2e-4, 5e-4, 1e-3} and {c.dropout for c in sgd} == {0.0, 0.3}
    small = methods.grid_configs(config_lib.preset("table2"), "small")
    assert set(small) <= set(blasso) and len(small) == 4  # a named subset of the paper's grid
    valid = "cpu_augment, cpu_augment_momentum, cpu_augment_variants, paper, small"
    with pytest.raises(ValueError, match=f"unknown grid 'huge'; valid: {valid}"):
        methods.grid_configs(config_lib.preset("table2"), "huge")


def test_cpu_augment_grids_are_the_issues_values_and_of_one_size():
    base = config_lib.preset("cpu_augment")
    sgd = methods.grid_configs(base.replace(method="sgd"), "cpu_augment")
    assert sorted(c.weight_decay for c in sgd) == [1e-4, 5e-4, 1e-3, 2e-3]
    assert {(c.momentum, c.dropout) for c in sgd} == {(0.9, 0.0)}
    blasso = methods.grid_configs(base, "cpu_augment_momentum")
    assert len(blasso) == len(sgd) == len(set(blasso))
    assert [c.l1_first for c in blasso] == [4e-5, 6e-5, 1e-4, 2e-4]
    assert {(c.l1_rest, c.momentum, c.dropout, c.decoupled_l1) for c in blasso} == {(1e-5, 0.9, 0.0, False)}
    for c in blasso:  # the threshold β·λ_first stays cpu_augment's 1e-3
        assert c.beta * c.l1_first == pytest.approx(base.beta * base.l1_first, rel=1e-6)
    # The rule's point is the pull-matched λ of cpu_augment's β-LASSO at momentum 0.9.
    assert blasso[0].l1_first == pytest.approx(bj.pull_matched_l1(base.l1_first, 0.9), rel=1e-12)
    variants = methods.grid_configs(base, "cpu_augment_variants")
    assert {(c.l1_first, c.l1_rest, c.beta, c.momentum) for c in variants} == {(4e-4, 1e-4, 2.5, 0.9)}
    assert [c.decoupled_l1 for c in variants] == [False, True]
    with pytest.raises(ValueError, match="method sgd has no grid 'cpu_augment_momentum'; its grids: paper, small"):
        methods.grid_configs(base.replace(method="sgd"), "cpu_augment_momentum")


def test_table2_grid_selects_each_cell_by_validation_and_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(table2, "SWEEP", (("blasso", {"beta": 50.0}), ("sgd", {})))
    argv = [*SMOKE, "--epochs=1", "--sweep", "--grid=small", "--datasets=synthetic", f"--workdir={tmp_path}"]
    run(table2, argv)
    assert "8 runs of grid 'small' over 2 cells and 1 seed(s)" in capsys.readouterr().out
    table = (tmp_path / "table2.md").read_text()
    for cell in ("synthetic-s-fc-blasso-beta50-seed0", "synthetic-s-fc-sgd-seed0"):
        runs = [json.loads(p.read_text()) for p in sorted((tmp_path / cell).glob("*/results.json"))]
        assert len(runs) == 4
        best = max(r["val_accuracy"]["best"] for r in runs)
        # Independently: the first grid point (in grid order) whose validation accuracy is the best.
        order = [
            sweep.grid_point_name(c, "small")
            for c in methods.grid_configs(config_lib.TrainConfig.from_dict(runs[0]["config"]), "small")
        ]
        by_name = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / cell).glob("*/results.json")}
        chosen = next(name for name in order if by_name[name]["val_accuracy"]["best"] == best)
        assert f"{100 * best:.2f} | {chosen} |" in table
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*/results.json")}
    run(table2, argv)  # finished grid points are read back
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*/results.json")} == mtimes


def test_table1_trains_each_architecture_with_sgd(tmp_path):
    run(table1, [*SMOKE, "--epochs=1", "--models=s-fc,s-conv,3-fc", f"--workdir={tmp_path}"])
    table = (tmp_path / "table1.md").read_text()
    assert "synthetic, SGD" in table
    for name in ("s-fc", "s-conv", "3-fc"):
        assert f"| {name} | 1 |" in table
        config = files.read_jsonl(tmp_path / f"synthetic-{name}-sgd-seed0" / "config.jsonl")[-1]
        assert config["method"] == "sgd" and config["model"] == name


def test_fig3_launches_runs_and_plots_nonzeros_and_locality(tmp_path):
    out = tmp_path / "fig3"
    run(
        fig3,
        [
            "--launch",
            *SMOKE,
            "--epochs=2",
            "--datasets=synthetic",
            f"--workdir={tmp_path / 'runs'}",
            f"--out={out}",
        ],
    )
    for name in ("fig3.png", "fig3.pdf", "fig3_locality.png", "fig3_locality.pdf"):
        assert (tmp_path / name).stat().st_size > 1000
    records = files.read_jsonl(tmp_path / "runs" / "synthetic-s-fc-blasso-beta50-seed0" / "metrics.jsonl")
    assert all("locality" in r for r in records)  # the smoke preset logs locality every epoch


def test_benchmark_smoke_writes_a_report(tmp_path):
    out = tmp_path / "bench.json"
    run(
        benchmark,
        [
            "--alpha=1",
            "--examples=256",
            "--batch_size=64",
            "--timed_epochs=1",
            "--precision=fp32",
            "--augment=crop_flip",
            f"--out={out}",
        ],
    )
    report = json.loads(out.read_text())
    assert report["model"] == "s-fc" and report["alpha"] == 1 and report["examples_per_epoch"] == 256
    assert report["augment"] == "crop_flip"
    for key in ("seconds_per_epoch", "images_per_second", "compile_seconds", "tflops", "matmul_peak_tflops"):
        assert report[key] > 0
    # XLA counts the matmuls the analytic figure counts, and the elementwise work besides.
    assert report["tflops"] <= report["xla_tflops"]
    assert 0 < report["share_of_matmul_peak"] and report["loss_finite"]


def test_locality_table_rows_carry_a_command_that_rebuilds_the_run(tmp_path, capsys):
    workdir = tmp_path / "run"
    run(table2, [*SMOKE, "--epochs=1", "--beta=1", "--l1_first=3e-4", f"--workdir={workdir}"])
    capsys.readouterr()
    run(locality_table, [f"--runs={workdir}", f"--out={tmp_path / 'table.md'}"])
    row = (tmp_path / "table.md").read_text().splitlines()[2]
    command = row.split("`")[1]
    assert command.startswith("python -m experiments.table2 ")
    # The command's flags, parsed by table2 over the default preset, give the run's config back exactly.
    parse(shlex.split(command)[3:])
    saved = files.read_jsonl(workdir / "config.jsonl")[-1]
    assert train_flags.config_from_flags().to_dict() == {**saved, "synthetic_shape": tuple(saved["synthetic_shape"])}
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "1" and float(cells[3]) > 0 and float(cells[5]) > 0  # epochs, share, dense-random chance
    parse([f"--runs={tmp_path / 'missing'}"])
    with pytest.raises(SystemExit) as exit_info:
        locality_table.main(["prog"])
    assert exit_info.value.code == 1
    assert "holds no finished run" in capsys.readouterr().err


def test_a_method_is_one_registry_entry(tmp_path, capsys):
    # SGD with an L1 subgradient on the kernels: one entry, and table2, run names and reports know it.
    methods.register(
        methods.Method(
            name="sgd_l1",
            make_optimizer=lambda config, params, schedule: optax.chain(
                bj.add_l1_sign(config.l1_first, mask=bj.kernel_mask), optax.sgd(schedule)
            ),
            label=lambda config: f"SGD+L1 λ={config.l1_first:g}",
            run_name=lambda config: "sgd-l1",
            fields=("l1_first",),
        )
    )
    try:
        run(table2, [*SMOKE, "--epochs=1", "--method=sgd_l1", "--l1_first=1e-3", f"--workdir={tmp_path}"])
        assert "| synthetic | SGD+L1 λ=0.001 | 1 |" in capsys.readouterr().out
        config = config_lib.TrainConfig.from_dict(files.read_jsonl(tmp_path / "config.jsonl")[-1])
        assert config.method == "sgd_l1" and methods.run_name(config) == "synthetic-s-fc-sgd-l1-seed0"
    finally:
        del methods.METHODS["sgd_l1"]
    with pytest.raises(ValueError, match="unknown method 'sgd_l1'; valid: blasso, sgd"):
        methods.validate(config)


def test_fig1_counts_the_real_models_and_meets_table1(tmp_path, capsys):
    run(fig1, ["--alphas=1,150", "--image_sides=32,64", f"--out={tmp_path / 'fig1'}"])
    assert (tmp_path / "fig1.png").stat().st_size > 1000
    by_alpha, by_side = fig1.sizes()
    # Table 1's weight counts: S-FC and S-CONV at α=150, D-FC at α=15, all on 32×32 images.
    assert by_alpha["s-fc"][150] == 256_240_800
    assert by_alpha["s-conv"][150] == 138_312_450
    assert by_side["d-fc"][32] == 282_203_520
    assert by_side["s-fc"][64] > 8 * by_side["s-fc"][32]  # its dense first layer grows as the image side⁴
    assert "s-fc: α=1: 792,816" in capsys.readouterr().out


def test_fig5_crosses_each_dataset_kernel_size_and_method_into_its_own_run():
    parse([*SMOKE, "--kernel_sizes=3,5,7", "--datasets=synthetic,svhn_cropped"])
    cells = fig5.cells(train_flags.config_from_flags())
    got = [(c.dataset, c.kernel_size, c.method, c.model, c.alpha) for c in cells]
    want = [(d, k, m, "resnet18", 1) for d in ("synthetic", "svhn_cropped") for k in (3, 5, 7) for m in fig5.METHODS]
    assert got == want  # ResNet18 at the smoke preset's α
    assert len({methods.run_name(c) for c in cells}) == len(cells)
    for argv, alpha in ((["--alpha=4"], 4), (["--config=table2", "--alpha=150"], 150), (["--config=table2"], 64)):
        parse(["--kernel_sizes=3", "--datasets=synthetic", *argv])
        assert {c.alpha for c in fig5.cells(train_flags.config_from_flags())} == {alpha}, argv


def test_fig5_trains_each_method_once_at_the_kernel_size_asked_for(tmp_path, capsys):
    # One kernel size trained end to end (each costs a ResNet18 compile per method); the crossing of kernel
    # sizes is the test above.
    argv = [
        *SMOKE,
        "--epochs=1",
        "--synthetic_train_size=192",
        "--validation_size=64",
        "--kernel_sizes=5",
        "--datasets=synthetic",
        f"--workdir={tmp_path}",
    ]
    run(fig5, argv)
    assert "2 runs (2 cells x 1 seeds), 2 epochs in all" in capsys.readouterr().out
    table = (tmp_path / "fig5.md").read_text()
    for method in ("β-LASSO β=50", "SGD"):
        assert f"| synthetic | 5 | {method} | 1 |" in table
    assert (tmp_path / "fig5.png").stat().st_size > 1000
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/results.json")}
    names = sorted(p.parent.name for p in mtimes)
    assert names == ["synthetic-resnet18-k5-blasso-beta50-seed0", "synthetic-resnet18-k5-sgd-seed0"]
    with np.load(tmp_path / names[1] / "sparse_params.npz") as weights:
        shapes = {array.shape[:2] for array in map(weights.get, weights.files) if array.ndim == 4}
    assert (5, 5) in shapes  # the kernel size reached the blocks
    run(fig5, argv)  # finished cells are read back, not trained again
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/results.json")} == mtimes


def kernel_entries(name, alpha, image_shape, num_classes=10):
    """Weights of a model as the paper counts them, from its own initialisation (nothing allocated)."""
    model = bj.create_model(name, alpha, num_classes, image_shape)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_shape)), train=False))
    return bj.count_params(variables["params"])


def test_fig2_trains_each_model_and_alpha_once(tmp_path, capsys):
    argv = [
        "--config=smoke",
        "--epochs=1",
        "--synthetic_shape=8,8,3",
        "--synthetic_train_size=192",
        "--validation_size=64",
        "--models=s-conv,3-fc",
        "--alphas=1,2",
        "--datasets=synthetic",
        f"--workdir={tmp_path}",
    ]
    run(fig2, argv)
    out = capsys.readouterr().out
    assert "4 runs (4 cells x 1 seeds), 4 epochs in all" in out
    assert "synthetic: paper's order s-conv, 3-fc: fewest weights reaching 99% train" in out
    table = (tmp_path / "fig2.md").read_text()
    for name in ("s-conv", "3-fc"):
        for alpha in (1, 2):
            # The method is the base config's: the smoke preset's β-LASSO.
            workdir = tmp_path / f"alpha{alpha}" / f"synthetic-{name}-blasso-beta50-seed0"
            train = 100 * files.read_jsonl(workdir / "metrics.jsonl")[-1]["train_accuracy"]
            weights = kernel_entries(name, alpha, (8, 8, 3))
            assert f"| synthetic | {name} | {alpha} | {weights} | 1 | {train:.2f} |" in table
    assert kernel_entries("3-fc", 2, (8, 8, 3)) > kernel_entries("3-fc", 1, (8, 8, 3))  # 3-FC's width follows α
    assert (tmp_path / "fig2.png").stat().st_size > 1000
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*/results.json")}
    assert len(mtimes) == 4
    run(fig2, argv)  # finished cells are read back, not trained again
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*/results.json")} == mtimes


def test_fig2_mdl_takes_the_fewest_weights_that_fit_and_the_best_test_accuracy():
    rung = ladders.Rung
    s_conv = [rung(4, 1600, 1.0, 0.58), rung(1, 100, 0.8, 0.5), rung(2, 400, 0.995, 0.6)]
    assert ladders.smallest_fitting(s_conv, 0.99) == 400
    assert ladders.smallest_fitting(s_conv, 0.999) == 1600
    assert ladders.smallest_fitting(s_conv, 0.8) == 100  # reaching the threshold is enough
    assert ladders.smallest_fitting(s_conv, 1.0) == 1600
    assert ladders.smallest_fitting(s_conv[1:2], 0.99) is None
    assert ladders.smallest_fitting([], 0.99) is None
    never_fits = [rung(1, 300, 0.9, 0.4), rung(2, 1200, 0.95, 0.45)]
    assert ladders.mdl_points({"s-conv": s_conv, "3-fc": never_fits}, 0.99) == {"s-conv": (400, 0.6)}
    assert ladders.order_verdict({"s-conv": s_conv, "3-fc": never_fits}, 0.99) == (
        "paper's order s-conv, 3-fc: fewest weights reaching 99% train undetermined (3-fc never reach 99% train); "
        "best test accuracy holds"
    )
    fits_smaller = [rung(1, 300, 1.0, 0.4)]
    assert ladders.order_verdict({"3-fc": fits_smaller, "s-conv": s_conv}, 0.99) == (
        "paper's order s-conv, 3-fc: fewest weights reaching 99% train does not hold (measured 3-fc, s-conv); "
        "best test accuracy holds"
    )
    assert ladders.order_verdict({"s-conv": s_conv}, 0.99).startswith("paper's order: not compared")
