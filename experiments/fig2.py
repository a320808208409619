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

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from absl import app, flags

from blasso_jax.common import files, text
from blasso_jax.config import train_config as config_lib
from blasso_jax.methods.runs import run_name
from blasso_jax.reporting import figures, report, scaling_figures
from blasso_jax.training import sweep
from experiments import flags as train_flags

PAPER_ORDER = ("resnet18", "d-conv", "s-conv", "3-fc")  # fewest weights to fit, and best test accuracy, first

train_flags.define_train_flags()
flags.adopt_module_key_flags(train_flags)  # --help lists the training flags
train_flags.define_shared_flags("seeds", "datasets", "out")
train_flags.define_once(flags.DEFINE_list, "models", list(PAPER_ORDER), "architectures to train")
train_flags.define_once(flags.DEFINE_list, "alphas", ["1", "2", "4", "8", "16", "32", "64"], "α values")
train_flags.define_once(
    flags.DEFINE_float, "fit_accuracy", 0.99, "train accuracy (fraction) a run must reach to count as fitting"
)
FLAGS = flags.FLAGS

HEADERS = ("dataset", "model", "α", "weights", "epochs", "train % (final epoch)", "test % (best val)")


class Rung(NamedTuple):
    """One run of a model's width ladder; accuracies are fractions."""

    alpha: int
    weights: int
    train_accuracy: float
    test_accuracy: float


def smallest_fitting(ladder: Sequence[Rung], fit_accuracy: float) -> int | None:
    """The fewest weights among runs whose train accuracy reaches `fit_accuracy`; None if no run does."""
    return min((r.weights for r in ladder if r.train_accuracy >= fit_accuracy), default=None)


def best_test(ladder: Sequence[Rung]) -> float:
    """The best test accuracy over a ladder."""
    return max(r.test_accuracy for r in ladder)


def mdl_points(ladders: dict[str, Sequence[Rung]], fit_accuracy: float) -> dict[str, tuple[int, float]]:
    """(fewest weights reaching `fit_accuracy`, best test accuracy over the ladder) of each model that reaches it."""
    fewest = {name: smallest_fitting(ladder, fit_accuracy) for name, ladder in ladders.items()}
    return {name: (weights, best_test(ladders[name])) for name, weights in fewest.items() if weights is not None}


def order_verdict(ladders: dict[str, Sequence[Rung]], fit_accuracy: float) -> str:
    """Whether the paper's order holds in fewest weights to fit and in best test accuracy, as one line."""
    names = [name for name in PAPER_ORDER if name in ladders]
    if len(names) < 2:
        return f"paper's order: not compared (needs two of {', '.join(PAPER_ORDER)})"
    threshold = f"{100 * fit_accuracy:g}% train"
    points = mdl_points({name: ladders[name] for name in names}, fit_accuracy)
    never = [name for name in names if name not in points]
    if never:
        fit = f"undetermined ({', '.join(never)} never reach {threshold})"
    else:
        fit = _verdict(names, sorted(names, key=lambda name: points[name][0]))
    test = _verdict(names, sorted(names, key=lambda name: -best_test(ladders[name])))
    return f"paper's order {', '.join(names)}: fewest weights reaching {threshold} {fit}; best test accuracy {test}"


def _verdict(expected: list[str], measured: list[str]) -> str:
    return "holds" if measured == expected else f"does not hold (measured {', '.join(measured)})"


def model_label(name: str) -> str:
    return "ResNet18" if name == "resnet18" else name.upper()


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
    ladders: dict[str, dict[str, list[Rung]]] = {}
    rows = []
    for cell in done:
        finals = [files.read_jsonl(workdir / "metrics.jsonl")[-1]["train_accuracy"] for workdir in cell.workdirs]
        tests = cell.values(lambda r: r["test_accuracy"]["best"])
        weights = sum(cell.run_results["dense_per_layer"].values())
        rung = Rung(cell.config.alpha, weights, statistics.mean(finals), statistics.mean(tests))
        dataset = report.dataset_label(cell.config.dataset)
        ladders.setdefault(dataset, {}).setdefault(cell.config.model, []).append(rung)
        train_percent = text.mean_std([100 * f for f in finals])
        test_percent = cell.mean_std(lambda r: r["test_accuracy"]["best"])
        rows.append(
            [dataset, cell.config.model, cell.config.alpha, weights, cell.config.epochs, train_percent, test_percent]
        )
    table = text.markdown_table(HEADERS, rows)
    accuracy = {
        dataset: {
            model_label(name): {r.weights: (100 * r.train_accuracy, 100 * r.test_accuracy) for r in ladder}
            for name, ladder in by_model.items()
        }
        for dataset, by_model in ladders.items()
    }
    mdl = {
        dataset: {
            model_label(name): (weights, 100 * best)
            for name, (weights, best) in mdl_points(by_model, FLAGS.fit_accuracy).items()
        }
        for dataset, by_model in ladders.items()
    }
    figure = scaling_figures.plot_width_ladders(accuracy, mdl, FLAGS.fit_accuracy)
    sweep.write_table(root / "fig2.md", table, *figures.save_figure(figure, FLAGS.out or str(root / "fig2")))
    for dataset, by_model in ladders.items():
        print(f"{dataset}: {order_verdict(by_model, FLAGS.fit_accuracy)}")


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
