"""The paper's Figure 4: first-layer filters of S-FC (SGD), S-FC (β-LASSO) and S-LOCAL (SGD), as full images.

    python -m experiments.fig4 --sgd_fc=runs/sgd --blasso_fc=runs/blasso --sgd_local=runs/local --best

Filters are drawn at random among units with at least 20 non-zero weights, as in the paper. The
locality of each panel's filters is printed: the median largest |w| share inside any 9×9 window
(an S-LOCAL unit's receptive field) next to the same weights with their pixels shuffled and dense
random filters, and the median radius holding 90% of |w|.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import app, flags

from blasso_jax.analysis import filters
from blasso_jax.analysis import measures as analysis
from blasso_jax.models.counting import FIRST_LAYER
from blasso_jax.models.networks import layer_specs
from blasso_jax.reporting import figures, style
from blasso_jax.training import rundir
from experiments import flags as train_flags

# (flag, panel title, the model the run must be)
PANELS = (
    ("sgd_fc", "S-FC (SGD)", "s-fc"),
    ("blasso_fc", "S-FC (β-LASSO)", "s-fc"),
    ("sgd_local", "S-LOCAL (SGD)", "s-local"),
)


for _flag, _title, _model in PANELS:
    train_flags.define_once(flags.DEFINE_string, _flag, None, f"run directory of the {_title} panel ({_model} run)")
train_flags.define_once(flags.DEFINE_integer, "k", 8, "filters drawn per panel")
train_flags.define_once(flags.DEFINE_integer, "draw_seed", 0, "seed of the random draw of filters shown per panel")
train_flags.define_once(
    flags.DEFINE_bool, "best", False, "load the checkpoint of best validation accuracy, not the latest"
)
train_flags.define_shared_flags("out")
FLAGS = flags.FLAGS


def first_layer_filters(run_dir: Path, model_name: str, *, best: bool) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A run's first-layer filters as full images `[units, H, W, C]`, and the image shape."""
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    config, _, variables = rundir.load_run(run_dir, best=best)
    if config.model != model_name:
        raise ValueError(f"{run_dir} is a {config.model} run; this panel takes a {model_name} run")
    image_shape = tuple(rundir.read_run_info(run_dir)[1]["image_shape"])
    kernel = np.asarray(variables["params"][FIRST_LAYER]["kernel"])
    if model_name == "s-fc":
        return filters.fc_filters_as_images(kernel, image_shape), image_shape
    local = layer_specs("s-local", config.alpha, image_shape)[0]
    return filters.local_filters_as_images(kernel, image_shape, stride=local.stride), image_shape


def describe(title: str, summary: dict) -> str:
    """One line of locality numbers for a panel."""
    if not summary["units"]:
        return f"{title}: every unit is all-zero"
    window = summary["window"]
    return (
        f"{title}: {summary['units']} units ({summary['units_zero']} all-zero left out); "
        f"median best {window}x{window}-window share of |w|: {summary['window_share_median']:.3f} "
        f"(pixels shuffled: {summary['window_share_shuffled']:.3f}, "
        f"dense random: {summary['window_share_chance']:.3f}); "
        f"median radius holding {summary['mass']:.0%} of |w|: {summary['radius_median']:.2f} px "
        f"(dense random: {summary['radius_chance']:.2f})"
    )


def body() -> None:
    chosen = [(flag, title, model) for flag, title, model in PANELS if FLAGS[flag].value]
    if not chosen:
        raise app.UsageError(f"give at least one run: {', '.join('--' + flag for flag, _, _ in PANELS)}")
    panels, shapes = {}, {}
    for flag, title, model in chosen:
        run_dir = Path(FLAGS[flag].value)
        panels[title], shapes[run_dir] = first_layer_filters(run_dir, model, best=FLAGS.best)
    if len(set(shapes.values())) > 1:
        raise ValueError(f"the runs' image shapes differ: {', '.join(f'{d}: {s}' for d, s in shapes.items())}")
    image_shape = next(iter(shapes.values()))
    local = layer_specs("s-local", 1, image_shape)[0]
    for title, images in panels.items():
        kernel = images.reshape(len(images), -1).T
        summary = analysis.locality(kernel, image_shape, window=local.kernel_size)["summary"]
        print(describe(title, summary))
    fig = figures.plot_filters(panels, image_shape, k=FLAGS.k, seed=FLAGS.draw_seed)
    paths = style.save_figure(fig, FLAGS.out or "figures/fig4")
    print(f"figure: {', '.join(map(str, paths))}")


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
