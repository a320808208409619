"""The paper's Figure 2 (CIFAR-10) and Figure 6 (CIFAR-100, SVHN): accuracy and MDL of width ladders.

    python -m experiments.fig2 --method=sgd --epochs=400 --datasets=cifar10,cifar100,svhn_cropped   # the paper's
    python -m experiments.fig2 --config=fig2_cpu --dataset=D --datasets=D --alphas=1,2,4            # CPU scale

Each (dataset, model, α) cell trains in `<workdir>/alpha<α>/<run name>` (default runs/fig2) with the
base config's method (SGD in the paper's Figure 2 and in `fig2_cpu`); finished cells are read back and
interrupted ones resumed, so rerunning continues the figure. 3-FC keeps `width=None`: at ladder step α
its hidden width matches S-FC's weight count at that α. Weights are kernel entries, as the paper's tables
count them (biases and BatchNorm left out). Train accuracy is the final epoch's, measured on the
training batches as they were drawn (augmented, unless the config's augment is 'none', as in
`fig2_cpu`); test accuracy is at the best validation epoch.

Left: test and train accuracy against weights, one line per model. Right: for each model, the fewest
weights whose run reaches `--fit_accuracy` train accuracy against its best test accuracy over the
ladder. The paper gives neither that threshold nor its ladder; the command above takes Table 1's 400
SGD epochs. One line per dataset says whether the paper's order ResNet18 < D-CONV < S-CONV < 3-FC holds
in both; `<workdir>/fig2.md` holds the table.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from blasso_jax.config import train_config as config_lib
from blasso_jax.methods.runs import run_name
from blasso_jax.reporting import ladders as ladders_lib
from blasso_jax.reporting import style
from blasso_jax.training import sweep
from experiments import flags as train_flags

train_flags.define_train_flags()
flags.adopt_module_key_flags(train_flags)  # --help lists the training flags
train_flags.define_shared_flags("seeds", "datasets", "out")
train_flags.define_once(flags.DEFINE_list, "models", list(ladders_lib.PAPER_ORDER), "architectures to train")
train_flags.define_once(flags.DEFINE_list, "alphas", ["1", "2", "4", "8", "16", "32", "64"], "α values")
train_flags.define_once(
    flags.DEFINE_float, "fit_accuracy", 0.99, "train accuracy (fraction) a run must reach to count as fitting"
)
FLAGS = flags.FLAGS


def cells(config: config_lib.TrainConfig) -> list[config_lib.TrainConfig]:
    """Every (dataset, model, α) run of the figure over the base config."""
    if config.width is not None:
        raise ValueError("--width fixes 3-FC's width; Figure 2 scales it with α (leave --width unset)")
    return [
        config.replace(model=name, dataset=dataset, alpha=int(alpha))
        for dataset in FLAGS.datasets
        for name in FLAGS.models
        for alpha in FLAGS.alphas
    ]


def body() -> None:
    if not 0 < FLAGS.fit_accuracy <= 1:
        raise ValueError(f"--fit_accuracy is a fraction of the training set, in (0, 1]; got {FLAGS.fit_accuracy}")
    config = train_flags.config_from_flags()
    root = Path(FLAGS.workdir or "runs/fig2")
    seeds = sweep.parse_seeds(FLAGS.seeds, config.seed)
    done = sweep.run_cells(cells(config), root, seeds, name=lambda c: f"alpha{c.alpha}/{run_name(c)}")
    ladders, table = ladders_lib.ladders_and_table(done)
    figure = ladders_lib.plot_ladders(ladders, FLAGS.fit_accuracy)
    sweep.write_table(root / "fig2.md", table, *style.save_figure(figure, FLAGS.out or str(root / "fig2")))
    for dataset, by_model in ladders.items():
        print(f"{dataset}: {ladders_lib.order_verdict(by_model, FLAGS.fit_accuracy)}")


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
