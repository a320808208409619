"""The paper's facts: its datasets and the figures it prints (test accuracy, %), for side-by-side tables."""

from __future__ import annotations

from pathlib import Path

PAPER_DATASETS = ("cifar100", "cifar10", "svhn_cropped")  # cifar100 first: 'cifar10' is its prefix


def paper_dataset(dataset: str) -> str | None:
    """The paper's dataset a run's dataset stands for ('cifar10' for a local CIFAR-10 copy), if any."""
    name = Path(dataset).name.lower().replace("-", "").replace("_", "")
    for key in PAPER_DATASETS:
        if name.startswith(key.replace("_", "")) or (key == "svhn_cropped" and name.startswith("svhn")):
            return key
    return None


# Table 2: S-FC trained for 4000 epochs, by dataset and method (`Method.paper_key`).
TABLE2 = {
    "cifar10": {"blasso_beta50": 85.19, "blasso_beta1": 82.52, "blasso_beta0": 82.45, "sgd": 78.63},
    "cifar100": {"blasso_beta50": 59.56, "blasso_beta1": 55.96, "blasso_beta0": 55.58, "sgd": 51.43},
    "svhn_cropped": {"blasso_beta50": 94.07, "blasso_beta1": 93.66, "blasso_beta0": 93.80, "sgd": 91.80},
}

_TABLE_DATASETS = ("cifar10", "cifar100", "svhn_cropped")  # the order of the tables' columns

# Table 1: SGD, test % after (400 epochs, 4000 epochs), per model on (CIFAR-10, CIFAR-100, SVHN).
_TABLE1_BY_MODEL = {
    "d-conv": ((88.84, 89.79), (63.73, 62.26), (95.65, 95.86)),
    "d-local": ((86.13, 86.07), (58.58, 55.71), (95.71, 95.85)),
    "d-fc": ((64.78, 63.62), (36.61, 35.51), (92.52, 90.97)),
    "s-conv": ((84.14, 87.05), (59.48, 62.51), (92.34, 93.38)),
    "s-local": ((81.52, 85.86), (56.64, 62.03), (92.51, 93.98)),
    "s-fc": ((72.77, 78.63), (47.72, 51.43), (88.64, 91.80)),
    "3-fc": ((69.19, 75.12), (44.95, 50.75), (85.98, 86.02)),
}
TABLE1 = {
    dataset: {model: row[i] for model, row in _TABLE1_BY_MODEL.items()} for i, dataset in enumerate(_TABLE_DATASETS)
}
