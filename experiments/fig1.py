"""The paper's Figure 1 (right): weights of the six architectures against α and against the image size.

    python -m experiments.fig1 --out=docs/figures/fig1

Counts come from `jax.eval_shape` of the real model definitions (kernel entries, as the paper's
tables count them), so nothing is allocated and no size formula is written twice. The dashed line is
what one 16 GiB device (the paper's V100) holds in 16-bit. Against the image size, the shallow
models use α=150 and the deep ones α=15, the α of Table 1.
"""

from __future__ import annotations

from absl import app, flags

from blasso_jax.models import networks as models
from blasso_jax.reporting import scaling_figures, style
from experiments import flags as train_flags

FIGURE_MODELS = ("s-conv", "s-local", "s-fc", "d-conv", "d-local", "d-fc")

train_flags.define_shared_flags("out")
train_flags.define_once(flags.DEFINE_list, "alphas", ["1", "2", "4", "8", "16", "32", "64", "128", "256"], "α values")
train_flags.define_once(flags.DEFINE_list, "image_sides", ["16", "32", "64", "128", "256"], "image sides (px)")
FLAGS = flags.FLAGS


def sizes() -> tuple[dict[str, dict[int, int]], dict[str, dict[int, int]]]:
    """(weights by α at 32×32, weights by image side at Table 1's α) for every model, CIFAR-10's 10 classes."""
    by_alpha = {
        name: {a: sum(models.layer_weights(name, a, 10, (32, 32, 3)).values()) for a in map(int, FLAGS.alphas)}
        for name in FIGURE_MODELS
    }
    by_side = {
        name: {
            side: sum(models.layer_weights(name, models.MODELS[name].paper_alpha, 10, (side, side, 3)).values())
            for side in map(int, FLAGS.image_sides)
        }
        for name in FIGURE_MODELS
    }
    return by_alpha, by_side


def body() -> None:
    by_alpha, by_side = sizes()
    for name in FIGURE_MODELS:
        print(f"{name}: " + ", ".join(f"α={a}: {n:,}" for a, n in by_alpha[name].items()))
    paths = style.save_figure(scaling_figures.plot_sizes(by_alpha, by_side), FLAGS.out or "figures/fig1")
    print(f"figure: {', '.join(map(str, paths))}")


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
