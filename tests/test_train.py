"""The trainer and the `experiments.table2` command line, end to end on small data."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from entry_points import SMOKE, run_table2
from PIL import Image

from blasso_jax.common import files, parallel
from blasso_jax.config import train_config as config_lib
from blasso_jax.data import datasets as data_lib
from blasso_jax.methods import registry as methods
from blasso_jax.models import networks as models
from blasso_jax.training import checkpoints, rundir, step, train


def check_outputs(workdir, epochs, num_classes=10):
    records = files.read_jsonl(workdir / "metrics.jsonl")
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    for r in records:
        for key in ("train_accuracy", "val_accuracy"):
            assert 0.0 <= r[key] <= 1.0
        assert set(r) >= {
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_accuracy",
            "test_accuracy",
            "nonzero_per_layer",
            "lr",
            "epoch_seconds",
        }
        assert list(r["nonzero_per_layer"]) == ["layer1", "layer2", "layer3"]
    results = json.loads((workdir / "results.json").read_text())
    for key in ("val_accuracy", "test_accuracy"):
        assert 0.0 <= results[key]["best"] <= 1.0 and 0.0 <= results[key]["final"] <= 1.0
    assert results["config"]["epochs"] == epochs
    assert results["device_kind"] and results["wall_seconds"] > 0
    assert (workdir / "checkpoints").is_dir()
    assert results["checkpoint_bytes"] > 0 and results["sparse_export_bytes"] > 0
    assert results["description_length"]["nonzeros"] == sum(records[-1]["nonzero_per_layer"].values())
    assert json.loads((workdir / "dataset.json").read_text())["num_classes"] == num_classes
    return records, results


def test_smoke_preset_learns_synthetic_data(tmp_path, capsys):
    workdir = tmp_path / "run"
    run_table2(["--config=smoke", "--epochs=4", f"--workdir={workdir}", "--l1_first=1e-4", "--l1_rest=1e-4"])
    records, results = check_outputs(workdir, epochs=4)
    assert records[-1]["train_loss"] < 0.7 * records[0]["train_loss"]
    assert results["test_accuracy"]["final"] > 0.5  # 10 learnable classes; chance is 0.1
    # β-LASSO with λ·β = 5e-3 prunes some of the first layer.
    assert records[-1]["nonzero_per_layer"]["layer1"] < 32 * 32 * 3 * 16 * 16
    out = capsys.readouterr().out
    assert "| synthetic | β-LASSO β=50 |" in out


def write_image_folder(root, num_classes=3, per_class=40, size=8):
    rng = np.random.default_rng(0)
    templates = rng.integers(0, 256, (num_classes, size, size, 3))
    for split, count in (("train", per_class), ("test", per_class // 4)):
        for c in range(num_classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                noise = rng.integers(-20, 20, (size, size, 3))
                Image.fromarray(np.clip(templates[c] + noise, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")


@pytest.mark.parametrize("source", ["folder", "npz"])
def test_cli_on_local_copies(tmp_path, source):
    root = tmp_path / "images"
    write_image_folder(root)
    dataset = root
    if source == "npz":
        loaded = data_lib.load_dataset(str(root), validation_size=0, cache_dir=str(tmp_path / "cache"))
        dataset = tmp_path / "images.npz"
        np.savez(dataset, x_train=loaded.x_train, y_train=loaded.y_train, x_test=loaded.x_test, y_test=loaded.y_test)
    workdir = tmp_path / "run"
    run_table2(
        [
            "--config=smoke",
            f"--dataset={dataset}",
            f"--cache_dir={tmp_path / 'cache'}",
            "--validation_size=24",
            "--batch_size=16",
            "--epochs=3",
            f"--workdir={workdir}",
            "--model=s-fc",
            "--augment=none",
        ]
    )
    records, _ = check_outputs(workdir, epochs=3, num_classes=3)
    assert records[-1]["train_loss"] < records[0]["train_loss"]


def test_cli_on_tfds_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    workdir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=96):
        run_table2(
            [
                "--config=smoke",
                "--dataset=cifar10",
                "--augment=crop_flip",  # CIFAR's default, Fast AutoAugment, compiles for 8 s; its tests are its own
                "--validation_size=32",
                "--batch_size=32",
                "--epochs=2",
                f"--workdir={workdir}",
            ]
        )
    check_outputs(workdir, epochs=2)


def epoch_params(devices, steps=3, host_loop=None):
    """Parameters after `steps` epochs of the real epoch function on a mesh over `devices`."""
    # SGD, smooth in the weights: β-LASSO's threshold would turn reduction-order roundings into 2βλ jumps (see
    # tests/test_parallel.py for the tolerance's derivation and the thresholding checked on its own).
    config = config_lib.preset("smoke", batch_size=32, synthetic_train_size=128 + 64, validation_size=64, method="sgd")
    dataset = data_lib.load_dataset("synthetic", validation_size=64, synthetic_train_size=192, seed=0)
    mesh = parallel.make_mesh(devices)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    model = models.create_model("s-fc", 1, 10, dataset.image_shape)
    state = step.create_train_state(model, dataset.image_shape, methods.optimizer(config, 4), jax.random.key(0))
    state = jax.device_put(state, replicated)
    epoch = step.make_train_epoch(
        mesh, len(dataset.x_train), "crop_flip", dataset.mean, dataset.std, **config.step_options(), host_loop=host_loop
    )
    x, y = (jax.device_put(a, replicated) for a in (dataset.x_train, dataset.y_train.astype(np.int32)))
    for e in range(steps):
        state, totals = epoch(state, x, y, jax.random.key(e))
    assert int(totals.examples) == 128
    return jax.device_get(state.params), jax.device_get(state.batch_stats)


def test_four_devices_match_one_device():
    assert jax.device_count() == 4
    one = epoch_params(jax.devices()[:1])
    four = epoch_params(jax.devices())
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), one, four)
    changed = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), one[0], epoch_params(jax.devices()[:1], 1)[0])
    assert max(jax.tree.leaves(changed)) > 1e-3  # the epochs did move the parameters


def test_steps_dispatched_from_the_host_equal_one_scan():
    # On one CPU device the epoch dispatches its steps from Python (XLA:CPU runs convolutions slowly inside
    # a scan); several devices keep the scan (see step._loops_on_host).
    scanned, looped = (epoch_params(jax.devices()[:1], 2, host_loop=flag) for flag in (False, True))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), scanned, looped)
    assert step._loops_on_host(parallel.make_mesh(jax.devices()[:1]), None)
    assert not step._loops_on_host(parallel.make_mesh(jax.devices()), None)
    config = config_lib.preset("smoke")
    model = models.create_model("s-fc", 1, 10, (32, 32, 3))
    state = step.create_train_state(model, (32, 32, 3), methods.optimizer(config, 4), jax.random.key(0))
    x, y = step.pad_for_eval(
        np.random.default_rng(0).integers(0, 256, (100, 32, 32, 3), np.uint8), np.arange(100) % 10, 32
    )
    mesh = parallel.make_mesh(jax.devices()[:1])
    correct = [
        step.make_evaluate(mesh, 32, (0.5,) * 3, (0.25,) * 3, config.compute_dtype, host_loop=flag)(state, x, y)
        for flag in (False, True)
    ]
    assert int(correct[0][0]) == int(correct[1][0]) and 0 < int(correct[0][0]) < 100
    np.testing.assert_allclose(float(correct[0][1]), float(correct[1][1]), rtol=1e-6)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    # With dropout: its masks come from the step keys, so a resumed run draws the same ones.
    config = config_lib.preset("smoke", epochs=4, checkpoint_every=1, dropout=0.3, synthetic_shape=(8, 8, 3))
    straight = train.train_and_evaluate(config, tmp_path / "straight")
    assert train.train_and_evaluate(config, tmp_path / "resumed", stop_after=2) is None
    assert not (tmp_path / "resumed" / "results.json").exists()
    resumed = train.train_and_evaluate(config, tmp_path / "resumed", resume=True)
    _, _, a = rundir.load_run(tmp_path / "straight")
    _, _, b = rundir.load_run(tmp_path / "resumed")
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert straight["test_accuracy"] == resumed["test_accuracy"]
    records = files.read_jsonl(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    timeless = [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in records]
    assert timeless == [
        {k: v for k, v in r.items() if k != "epoch_seconds"}
        for r in files.read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    ]


def test_metrics_record_lr_schedule_and_checkpoint_size(tmp_path, capsys):
    config = config_lib.preset("smoke", epochs=2, synthetic_shape=(8, 8, 3))
    train.train_and_evaluate(config, tmp_path / "run")
    records = files.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert records[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # cosine reaches 0 at the end
    assert 0 < records[0]["lr"] < 0.1
    assert "checkpoint size" in capsys.readouterr().out
    assert not (tmp_path / "run" / "tensorboard").exists()  # no event files without --tensorboard
    config_loaded, model, variables = rundir.load_run(tmp_path / "run")
    assert config_loaded == config
    logits = model.apply(variables, jnp.zeros((2, 8, 8, 3)), train=False)
    assert logits.shape == (2, 10)


def test_cli_default_workdir_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_table2([*SMOKE, "--epochs=1"])
    assert (tmp_path / "runs" / "table2" / "synthetic-s-fc-blasso-beta50-seed0" / "results.json").exists()


def test_train_step_is_one_sgd_step_on_the_cross_entropy():
    config = config_lib.preset("smoke", method="sgd", momentum=0.0, weight_decay=0.0, learning_rate=0.05, epochs=1)
    model = models.create_model("s-fc", 1, 10, (8, 8, 3))
    state = step.create_train_state(model, (8, 8, 3), methods.optimizer(config, 4), jax.random.key(0))
    images = jax.random.normal(jax.random.key(1), (16, 8, 8, 3))
    labels = jnp.arange(16) % 10

    def loss(params):  # written out here: softmax cross-entropy of the model in training mode
        logits, updated = model.apply(
            {"params": params, "batch_stats": state.batch_stats}, images, train=True, mutable=["batch_stats"]
        )
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)), updated

    # One compiled reference rather than a few hundred eager ops, each compiled on its own.
    (expected_loss, updated), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(state.params)
    new_state, mean_loss, logits, finite = step.train_step(state, images, labels)
    assert bool(finite) and int(new_state.step) == 1
    np.testing.assert_allclose(mean_loss, expected_loss, rtol=1e-5)
    expected = jax.tree.map(lambda p, g: p - 0.05 * g, state.params, grads)  # the cosine schedule at step 0
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), new_state.params, expected)
    jax.tree.map(np.testing.assert_allclose, new_state.batch_stats, updated["batch_stats"])
    assert logits.shape == (16, 10)
    _, _, _, finite = step.train_step(state, images.at[0, 0, 0, 0].set(jnp.nan), labels)
    assert not bool(finite)


def test_a_finished_run_counts_for_a_sweep_with_tensorboard_on(tmp_path):
    config = config_lib.preset("smoke")
    files.atomic_write_json(tmp_path / "results.json", {"config": config.to_dict(), "epochs": 2})
    assert train.run_once(config.replace(tensorboard=True), tmp_path)["epochs"] == 2
    with pytest.raises(rundir.WorkdirError, match="another config"):
        train.run_once(config.replace(seed=1), tmp_path)


def test_a_blasso_runs_momentum_flag_reaches_its_optimizer_and_config_jsonl(tmp_path):
    def run(workdir, *extra):
        run_table2([*SMOKE, "--epochs=1", "--locality_every=0", f"--workdir={workdir}", *extra])
        _, saved = checkpoints.read_checkpoint(workdir / "checkpoints")
        return files.read_jsonl(workdir / "config.jsonl")[-1], saved

    config, saved = run(tmp_path / "momentum", "--momentum=0.9", "--nesterov")
    assert (config["momentum"], config["nesterov"], config["decoupled_l1"]) == (0.9, True, False)
    trace = optax.tree_utils.tree_get(saved["opt_state"], "trace")
    assert trace is not None and np.any(np.asarray(trace["layer1"]["kernel"]) != 0)  # a trace that moved
    config, saved = run(tmp_path / "paper")
    assert config["momentum"] is None  # unset: the method's default, none for β-LASSO
    assert optax.tree_utils.tree_get(saved["opt_state"], "trace") is None
