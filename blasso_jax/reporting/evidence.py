"""The evidence a finished FC run gives for the paper's claim: its accuracy, how local its first layer is against
a same-sparsity null, and how much accuracy survives when each first-layer unit keeps only its best window.

`window_crop` zeroes every first-layer weight outside each unit's best k×k window (the one holding most of its
|w|, summed over channels): a truly local layer barely notices; a dense or scattered one collapses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from blasso_jax.analysis import filters
from blasso_jax.analysis import measures as analysis
from blasso_jax.common import files
from blasso_jax.data import augment
from blasso_jax.methods import registry as methods
from blasso_jax.models.counting import FIRST_LAYER
from blasso_jax.reporting import figures, report, style
from blasso_jax.training import rundir, train


def best_windows(kernel: Any, image_shape: tuple[int, int, int], window: int) -> np.ndarray:
    """Each unit's best `window`×`window` square inside the image (most |w| summed over channels; the first in
    row-major order among equals) as its top-left corner, `[units, 2]`."""
    height, width, channels = image_shape
    maps = np.abs(np.asarray(kernel, np.float64)).reshape(height, width, channels, -1).sum(axis=2)
    # summed-area table: every window's sum exactly as a difference of four partial sums
    table = np.zeros((height + 1, width + 1, maps.shape[-1]))
    table[1:, 1:] = maps.cumsum(0).cumsum(1)
    k = window
    sums = table[k:, k:] - table[:-k, k:] - table[k:, :-k] + table[:-k, :-k]  # [H-k+1, W-k+1, units]
    flat = sums.reshape(-1, sums.shape[-1]).argmax(axis=0)
    return np.stack(np.unravel_index(flat, sums.shape[:2]), axis=1)


def window_crop(kernel: Any, image_shape: tuple[int, int, int], window: int = 9) -> np.ndarray:
    """`kernel` `[H*W*C, units]` with every weight outside each unit's best `window`×`window` square set to 0.

    Examples:
      >>> kernel = np.zeros((4, 4, 1, 1)); kernel[0, 0] = 1.0; kernel[2:, 2:] = 2.0
      >>> window_crop(kernel.reshape(16, 1), (4, 4, 1), window=2).reshape(4, 4).tolist()[2:]
      [[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]]
    """
    height, width, channels = image_shape
    window = min(window, height, width)
    corners = best_windows(kernel, image_shape, window)
    rows, cols = np.arange(height)[:, None, None], np.arange(width)[None, :, None]
    inside = (
        (rows >= corners[:, 0])
        & (rows < corners[:, 0] + window)
        & (cols >= corners[:, 1])
        & (cols < corners[:, 1] + window)
    )  # [H, W, units]
    kernel = np.asarray(kernel)
    mask = np.broadcast_to(inside[:, :, None, :], (height, width, channels, kernel.shape[1]))
    return np.where(mask.reshape(kernel.shape), kernel, 0).astype(kernel.dtype)


def accuracy(
    model: nn.Module, variables: dict[str, Any], x: np.ndarray, y: np.ndarray, mean: tuple, std: tuple, batch: int = 500
) -> float:
    """Test accuracy of `model` (eval mode, BatchNorm running statistics) on uint8 images `x`, labels `y`."""
    apply = jax.jit(lambda v, images: model.apply(v, augment.normalize(images, mean, std), train=False))
    correct = 0
    for start in range(0, len(x), batch):
        logits = apply(variables, jnp.asarray(x[start : start + batch]))
        correct += int((np.asarray(logits).argmax(-1) == y[start : start + batch]).sum())
    return correct / len(x)


def run_evidence(run_dir: Path, dataset: Any, window: int = 9) -> dict[str, Any]:
    """The evidence of one finished FC run: its results, the locality of its final first layer (per-unit ratio
    against its own permuted pixels), and test accuracy of its final weights with and without window cropping."""
    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    config, model, variables = rundir.load_run(run_dir)
    kernel = np.asarray(variables["params"][FIRST_LAYER]["kernel"])
    if kernel.ndim != 2:
        raise ValueError(f"{run_dir} trained {config.model}, whose first layer is not dense (FC models only)")
    image_shape = tuple(dataset.image_shape)
    locality = analysis.locality(kernel, image_shape, window=window)
    cropped = jax.tree.map(lambda a: a, variables)
    cropped["params"] = {**variables["params"], FIRST_LAYER: {"kernel": window_crop(kernel, image_shape, window)}}
    test = (dataset.x_test, dataset.y_test, dataset.mean, dataset.std)
    return {
        "run": run_dir.name,
        "command": report.command_line(results["config"]),
        "method": config.method,
        "seed": config.seed,
        "epochs": results["epochs"],
        "best_epoch": results["best_epoch"],
        "test_accuracy": results["test_accuracy"],
        "val_accuracy": results["val_accuracy"],
        "nonzero_per_layer": results["nonzero_per_layer"],
        "dense_per_layer": results["dense_per_layer"],
        "locality": {k: v for k, v in locality["summary"].items()},
        "unit_ratios": _unit_ratios(locality),
        "unit_iprs": _unit_iprs(locality),
        "final_test_accuracy_uncropped": accuracy(model, variables, *test),
        "final_test_accuracy_window_cropped": accuracy(model, cropped, *test),
        "window": window,
        "git_commit": results.get("git_commit"),
        # Absent from runs written before they were recorded.
        "wall_seconds": results.get("wall_seconds"),
        "train_seconds": results.get("train_seconds"),
        "device_kind": results.get("device_kind"),
        "device_count": results.get("device_count"),
        "host": results.get("host"),
    }


def _unit_iprs(locality: dict[str, Any]) -> list[float]:
    """Per-unit IPR of the units the summary counts (those with a ratio), for the figures and the IPR summaries."""
    ipr, ratio = (np.asarray(locality.get(k, []), np.float64) for k in ("ipr", "ratio"))
    return [float(f"{v:.4g}") for v in ipr[np.isfinite(ratio)]]


def _unit_ratios(locality: dict[str, Any]) -> list[float]:
    """Per-unit share / permutation-null ratios of the units the summary counts, for histograms."""
    ratio = np.asarray(locality.get("ratio", []), np.float64)
    return [round(float(r), 4) for r in ratio[np.isfinite(ratio)]]


def write_run(run_dir: Path, out: Path, window: int = 9) -> dict:
    """The evidence JSON of one finished run (`run_evidence`, its dataset loaded as the run loaded it), written to
    `<out>/<run directory name>.json`, with one line printed."""
    if not (run_dir / "results.json").is_file():
        raise ValueError(f"{run_dir} holds no finished run (results.json)")
    config, _ = rundir.read_run_info(run_dir)
    record = run_evidence(run_dir, train.load_data(config), window)
    record["label"] = methods.get(config.method).label(config)
    files.atomic_write_json(out / f"{run_dir.name}.json", record)
    locality = record["locality"]
    print(
        f"{run_dir.name}: test {100 * record['test_accuracy']['best']:.2f} % (best val); ratio median "
        f"{locality['ratio_median']:.2f}, {locality['ratio_ge2_fraction']:.2f} of units >= 2; radius "
        f"{locality['radius_median']:.1f} px; cropped {100 * record['final_test_accuracy_window_cropped']:.2f} % "
        f"of {100 * record['final_test_accuracy_uncropped']:.2f} %"
    )
    return record


def write_kernel(run_dir: Path, out: Path) -> None:
    """The run's final first-layer kernel as `<out>/layer1.npz` (key `kernel`, `[H*W*C, units]`, float16)."""
    kernel = np.asarray(rundir.load_run(run_dir)[2]["params"][FIRST_LAYER]["kernel"], np.float16)
    files.atomic_write(out / "layer1.npz", lambda f: np.savez_compressed(f, kernel=kernel))
    print(f"layer1: {out / 'layer1.npz'} ({kernel.shape}, from {run_dir})")


def write_figure4(run_dirs: list[Path], path: str, window: int = 9) -> None:
    """The 64 most local units (highest share ÷ own permutation null) of each run's first layer, side by side."""
    panels, chosen = {}, {}
    for run_dir in run_dirs:
        config, dataset = rundir.read_run_info(run_dir)
        shape = tuple(dataset["image_shape"])
        kernel = np.asarray(rundir.load_run(run_dir)[2]["params"][FIRST_LAYER]["kernel"])
        ratio = np.asarray(analysis.locality(kernel, shape, window=window)["ratio"], np.float64)
        order = np.argsort(-np.nan_to_num(ratio, nan=-np.inf), kind="stable")
        label = f"{methods.get(config.method).label(config)} ({run_dir.name})"
        panels[label] = filters.fc_filters_as_images(kernel, shape)
        caption = f"its 64 most local units, ratio {ratio[order[0]]:.2f} to {ratio[order[63]]:.2f}"
        chosen[label] = (order[:64], caption)
    figure = figures.plot_filters(panels, shape, k=64, chosen_units=chosen)
    print(f"figure 4: {', '.join(map(str, style.save_figure(figure, path)))}")
