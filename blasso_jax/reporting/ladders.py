"""Figure 2's width ladders (and Figure 6's): per model, its runs over α with their weights, final train accuracy and
best test accuracy; the fewest weights that fit the training set; and whether the paper's order of models holds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from blasso_jax.common import files, text
from blasso_jax.reporting import scaling_figures
from blasso_jax.reporting.report import dataset_label
from blasso_jax.training.sweep import CellRuns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PAPER_ORDER = ("resnet18", "d-conv", "s-conv", "3-fc")  # fewest weights to fit, and best test accuracy, first
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


Ladders = dict[str, dict[str, list[Rung]]]  # dataset label -> model -> its runs in α order


def ladders_and_table(done: Sequence[CellRuns]) -> tuple[Ladders, str]:
    """The ladders of finished cells (means over their seeds) and their markdown table (mean ± std)."""
    ladders: Ladders = {}
    rows = []
    for cell in done:
        finals = [files.read_jsonl(workdir / "metrics.jsonl")[-1]["train_accuracy"] for workdir in cell.workdirs]
        tests = cell.values(lambda r: r["test_accuracy"]["best"])
        weights = sum(cell.run_results["dense_per_layer"].values())
        rung = Rung(cell.config.alpha, weights, statistics.mean(finals), statistics.mean(tests))
        dataset = dataset_label(cell.config.dataset)
        ladders.setdefault(dataset, {}).setdefault(cell.config.model, []).append(rung)
        train_percent = text.mean_std([100 * f for f in finals])
        test_percent = cell.mean_std(lambda r: r["test_accuracy"]["best"])
        config = cell.config
        rows.append([dataset, config.model, config.alpha, weights, config.epochs, train_percent, test_percent])
    return ladders, text.markdown_table(HEADERS, rows)


def plot_ladders(ladders: Ladders, fit_accuracy: float) -> Figure:
    """Accuracy against weights per model, and each model's fewest weights to fit against its best test accuracy."""
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
            for name, (weights, best) in mdl_points(by_model, fit_accuracy).items()
        }
        for dataset, by_model in ladders.items()
    }
    return scaling_figures.plot_width_ladders(accuracy, mdl, fit_accuracy)
