"""Figures 3 and 4: reference counts, filter images, the figure functions and the fig3/fig4 commands."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from entry_points import run as run_command

from blasso_jax import create_model
from blasso_jax.analysis import filters
from blasso_jax.common import files
from blasso_jax.config import train_config as config_lib
from blasso_jax.methods import registry as methods
from blasso_jax.reporting import figures, style
from blasso_jax.training import checkpoints, step, train
from experiments import fig3, fig4


def test_reference_counts_at_the_papers_alpha():
    counts = figures.reference_counts(150, (32, 32, 3), 10)
    assert counts == {
        "S-CONV": {"layer1": 81 * 3 * 150, "layer2": 38_400 * 3_600, "layer3": 3_600 * 10},
        "S-LOCAL": {"layer1": 256 * 243 * 150, "layer2": 38_400 * 3_600, "layer3": 3_600 * 10},
        "dense": {"layer1": 3_072 * 38_400, "layer2": 38_400 * 3_600, "layer3": 3_600 * 10},
    }
    assert counts["S-CONV"]["layer1"] == 36_450 and counts["S-LOCAL"]["layer1"] == 9_331_200


def first_layer(name, image_shape, seed=0):
    """An initialised model's layer-1 kernel and a function from images to its layer-1 outputs (before BatchNorm)."""
    model = create_model(name, alpha=2, image_shape=image_shape)
    variables = model.init(jax.random.key(seed), jnp.zeros((1, *image_shape)), train=False)

    def outputs(x):
        _, state = model.apply(variables, x, train=False, capture_intermediates=True, mutable=["intermediates"])
        return np.asarray(state["intermediates"]["layer1"]["__call__"][0]).reshape(len(x), -1)

    return np.asarray(variables["params"]["layer1"]["kernel"]), outputs


@pytest.mark.parametrize("name", ["s-fc", "s-local"])
def test_filter_images_are_what_each_unit_computes(name):
    # Unit u's output is the dot product of the input with its image, in S-FC's unit order.
    shape = (8, 8, 3)
    kernel, outputs = first_layer(name, shape)
    if name == "s-fc":
        images = filters.fc_filters_as_images(kernel, shape)
    else:
        images = filters.local_filters_as_images(kernel, shape, stride=2)
    assert images.shape == (4 * 4 * 2, *shape)
    x = np.asarray(jax.random.normal(jax.random.key(1), (3, *shape)))
    np.testing.assert_allclose(np.einsum("nhwc,uhwc->nu", x, images), outputs(x), rtol=1e-4, atol=1e-4)


def metrics(epochs, start, layers=("layer1", "layer2", "layer3"), with_locality=False):
    records = []
    for epoch in range(1, epochs + 1):
        record = {"epoch": epoch, "nonzero_per_layer": {layer: start // epoch for layer in layers}}
        if with_locality:
            record["locality"] = {
                "mass": 0.9,
                "window": 9,
                "radius_median": 15.0 / epoch,
                "radius_chance": 17.8,
                "window_share_median": 0.09 * epoch,
                "window_share_shuffled": 0.09 + 0.01 * epoch,
                "window_share_chance": 0.089,
            }
        records.append(record)
    return records


def lines_with_data(ax):
    return [line for line in ax.get_lines() if len(line.get_xdata())]


def test_plot_nonzeros_draws_a_panel_per_layer_and_only_the_references_it_has(tmp_path):
    runs = {"β-LASSO": metrics(5, 10_000), "SGD": metrics(5, 20_000, layers=("layer1", "layer2"))}
    references = {"S-CONV": {"layer1": 500}, "dense": {"layer1": 30_000, "layer2": 40_000, "layer3": 50_000}}
    fig = figures.plot_nonzeros(runs, references)
    assert [ax.get_title() for ax in fig.axes] == ["layer1", "layer2", "layer3"]
    assert [len(lines_with_data(ax)) for ax in fig.axes] == [4, 3, 2]  # runs + references per layer
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    paths = style.save_figure(fig, tmp_path / "out" / "fig3")
    assert [p.name for p in paths] == ["fig3.png", "fig3.pdf"]
    assert paths[0].read_bytes().startswith(b"\x89PNG") and paths[1].read_bytes().startswith(b"%PDF")
    with pytest.raises(ValueError, match="nonzero_per_layer"):
        figures.plot_nonzeros({"empty": [{"epoch": 1}]}, references)


def test_plot_filters_draws_k_eligible_filters_per_panel(tmp_path):
    shape = (8, 8, 3)
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((20, *shape))
    sparse = np.zeros((20, *shape))
    sparse[:2, 2:6, 2:6] = 1.0  # units 0 and 1: 48 non-zeros each; the rest are all zero
    gray = rng.standard_normal((10, 8, 8, 1))
    fig = figures.plot_filters({"dense": dense, "sparse": sparse}, shape, k=4, seed=0)
    assert filters.FILTER_NORMALISATION in fig._suptitle.get_text()
    panels = fig.subfigs
    assert [len([ax for ax in sub.axes if ax.images]) for sub in panels] == [4, 2]
    assert "4 of 20 units" in panels[0]._suptitle.get_text()
    assert "only 2 of 20" in panels[1]._suptitle.get_text()
    image = [ax for ax in panels[1].axes if ax.images][0].images[0].get_array()
    assert image.max() == 1.0 and image[0, 0].tolist() == [0.0, 0.0, 0.0]  # |w| / max |w|, zeros black
    again = figures.plot_filters({"dense": dense, "sparse": sparse}, shape, k=4, seed=0)
    titles = [[ax.get_title() for ax in sub.axes] for sub in panels]
    assert titles == [[ax.get_title() for ax in sub.axes] for sub in again.subfigs]  # the seed fixes the draw
    gray_fig = figures.plot_filters({"gray": gray}, (8, 8, 1), k=3, seed=1)
    assert sum(len(ax.images) for ax in gray_fig.axes) == 3
    paths = style.save_figure(fig, tmp_path / "fig4")
    assert all(p.stat().st_size > 0 for p in paths)
    with pytest.raises(ValueError, match="1 or 3 input channels"):
        figures.plot_filters({"x": rng.standard_normal((4, 8, 8, 2))}, (8, 8, 2))


def test_plot_locality_draws_window_share_and_radius_on_honest_axes(tmp_path):
    runs = {"a": metrics(4, 10, with_locality=True), "b": metrics(6, 10, with_locality=True) + [{"epoch": 7}]}
    fig = figures.plot_locality(runs, (32, 32, 3))
    share_ax, radius_ax = fig.axes
    # Per run a share curve and its dotted shuffled level, plus the dense-random level; radius: runs + level.
    assert [len(lines_with_data(ax)) for ax in fig.axes] == [5, 3]
    np.testing.assert_allclose(lines_with_data(share_ax)[1].get_ydata(), [0.1, 0.11, 0.12, 0.13])
    assert share_ax.get_ylim() == (0, 1)
    assert radius_ax.get_ylim() == pytest.approx((0, 16 * 2**0.5))  # the half diagonal of a 32x32 image
    assert all(p.stat().st_size > 0 for p in style.save_figure(fig, tmp_path / "locality"))
    with pytest.raises(ValueError, match="locality"):
        figures.plot_locality({"a": metrics(2, 10)}, (32, 32, 3))


def smoke_config(model):
    return config_lib.preset("smoke", model=model, synthetic_shape=(8, 8, 3))


def fabricate_run(workdir, model, sparsity=0.5):
    """A run directory as the trainer leaves it, with a pruned initial state as its only checkpoint (no training)."""
    config = smoke_config(model)
    network = create_model(model, config.alpha, 10, (8, 8, 3))
    state = step.create_train_state(network, (8, 8, 3), methods.optimizer(config, 1), jax.random.key(0))
    kernel = state.params["layer1"]["kernel"]
    keep = jax.random.uniform(jax.random.key(1), kernel.shape) >= sparsity
    state = state.replace(params={**state.params, "layer1": {"kernel": jnp.where(keep, kernel, 0.0)}})
    workdir.mkdir()
    files.append_jsonl(workdir / "config.jsonl", config.to_dict())
    files.atomic_write_json(workdir / "dataset.json", {"image_shape": [8, 8, 3], "num_classes": 10})
    saved = checkpoints.Checkpoints(workdir, keep=2)
    saved.save(1, state)
    saved.close()


def test_fig3_command_plots_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    config = config_lib.preset("smoke", alpha=3)
    run.mkdir()
    files.append_jsonl(run / "config.jsonl", config.to_dict())
    files.atomic_write_json(run / "dataset.json", {"image_shape": [32, 32, 3], "num_classes": 10})
    for record in metrics(3, 30_000):
        files.append_jsonl(run / "metrics.jsonl", record)
    out = tmp_path / "figures" / "fig3"
    run_command(fig3, [f"--runs={run}", "--labels=β-LASSO", f"--out={out}"])
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".pdf").stat().st_size > 0
    assert "fig3.png" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exit_info:
        run_command(fig3, [f"--runs={run},{tmp_path / 'missing'}", f"--out={out}"])
    assert exit_info.value.code == 1
    assert str(tmp_path / "missing") in capsys.readouterr().err


def test_fig3_combines_10_and_100_class_runs_with_a_classifier_reference_each(tmp_path, capsys):
    runs = []
    for name, classes in (("cifar10", 10), ("cifar100", 100)):
        run = tmp_path / name
        run.mkdir()
        files.append_jsonl(run / "config.jsonl", config_lib.preset("smoke", alpha=2).to_dict())
        files.atomic_write_json(run / "dataset.json", {"image_shape": [32, 32, 3], "num_classes": classes})
        for record in metrics(3, 30_000):
            files.append_jsonl(run / "metrics.jsonl", record)
        runs.append(run)
    references = figures.reference_counts(2, (32, 32, 3), [10, 100])
    # S-FC at α=2: layer 3 is fc 24α -> classes, the paper's Table 3; layers 1 and 2 do not depend on classes.
    assert references["dense"] == {"layer1": 3072 * 512, "layer2": 512 * 48}
    assert references["dense, 10 classes"] == {"layer3": 48 * 10}
    assert references["dense, 100 classes"] == {"layer3": 48 * 100}
    fig = figures.plot_nonzeros({"a": metrics(3, 30_000)}, references)
    layer3_levels = sorted(line.get_ydata()[0] for line in lines_with_data(fig.axes[2])[1:])
    assert layer3_levels == [480, 480, 480, 4800, 4800, 4800]  # S-CONV, S-LOCAL and S-FC share the classifier
    assert all(len(lines_with_data(ax)) == 4 for ax in fig.axes[:2])  # one run + three references, no class lines
    out = tmp_path / "fig3"
    run_command(fig3, [f"--runs={','.join(map(str, runs))}", f"--out={out}"])
    assert out.with_suffix(".png").stat().st_size > 0
    files.atomic_write_json(runs[1] / "dataset.json", {"image_shape": [16, 16, 3], "num_classes": 100})
    with pytest.raises(SystemExit):
        run_command(fig3, [f"--runs={','.join(map(str, runs))}", f"--out={out}"])
    assert "image shape" in capsys.readouterr().err


def test_fig4_command_plots_trained_runs(tmp_path, capsys):
    fabricate_run(tmp_path / "fc", "s-fc")
    train.train_and_evaluate(smoke_config("s-local").replace(epochs=1), tmp_path / "local")  # the real path
    out = tmp_path / "fig4"
    run_command(fig4, [f"--blasso_fc={tmp_path / 'fc'}", f"--sgd_local={tmp_path / 'local'}", f"--out={out}", "--k=4"])
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".pdf").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "S-FC (β-LASSO): 16 units" in printed and "S-LOCAL (SGD): 16 units" in printed
    assert "window share of |w|: 1.000" in printed  # S-LOCAL filters stay in their window

    with pytest.raises(SystemExit) as exit_info:
        run_command(fig4, [f"--sgd_fc={tmp_path / 'local'}", f"--out={out}"])  # an S-LOCAL run in an S-FC panel
    assert exit_info.value.code == 1
    assert "s-local run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_command(fig4, [f"--sgd_fc={tmp_path / 'missing'}", f"--out={out}"])
    assert str(tmp_path / "missing") in capsys.readouterr().err
