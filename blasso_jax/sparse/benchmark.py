"""Sparse against dense inference of S-FC, and the size of the sparse export against the dense files.

S-FC's first layer gets a random mask of the given density (each entry kept with that probability, so
every unit draws its own inputs); the other layers stay dense, as β-LASSO leaves them. The dense model
runs `model.apply`, the sparse one `sparse.sparse_apply` on `sparse.sparsify(..., batch_size=B)` (the
measured per-layer choice), with every dense layer forced to gathers (the crossover), and with layer 1
emptied (what everything else costs: the floor of any layer-1 speed-up). All are timed interleaved in one
process (the same load on each), after compiling. Benchmarks report numbers; they assert nothing about
timings.
"""

from __future__ import annotations

import functools
import io
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from blasso_jax.models.counting import FIRST_LAYER
from blasso_jax.models.networks import create_model
from blasso_jax.optim.pruning import check_density
from blasso_jax.sparse import export
from blasso_jax.sparse import inference as sparse

CIFAR_SHAPE = (32, 32, 3)


def masked_s_fc(alpha: int, density: float, *, seed: int = 0, image_shape=CIFAR_SHAPE, num_classes: int = 10):
    """S-FC (`create_model`'s init) with a random first-layer mask keeping each weight with probability `density`.

    Returns:
      `(model, variables)` with numpy arrays.
    """
    check_density("density", density)
    model = create_model("s-fc", alpha, num_classes, image_shape)
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(seed), jnp.zeros((1, *image_shape)))
    variables = jax.tree.map(np.array, variables)
    kernel = variables["params"][FIRST_LAYER]["kernel"]
    kernel[np.random.default_rng(seed).random(kernel.shape) >= density] = 0.0
    return model, variables


def interleaved_seconds(functions: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calling them in turn `repeats` times (after one warm-up call)."""
    for function in functions.values():
        jax.block_until_ready(function())
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            jax.block_until_ready(function())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def time_inference(alpha: int, density: float, batch_size: int, repeats: int) -> dict[str, Any]:
    """`time_model` of S-FC at width α with a random layer-1 mask of `density`."""
    model, variables = masked_s_fc(alpha, density)
    return {"alpha": alpha, "density": density, **time_model(model, variables, CIFAR_SHAPE, batch_size, repeats)}


def time_export(path: str | Path, batch_sizes: Sequence[int], repeats: int | None = None) -> list[dict[str, Any]]:
    """`time_model` of the model a sparse export (`<run>/sparse_params.npz`) holds, at each batch size."""
    model, exported = export.load_model(path)
    rows = []
    for batch in batch_sizes:
        timing = time_model(model, exported.variables, exported.info.image_shape, batch, repeats or _repeats(batch))
        rows.append({"export": str(path), **timing})
    return rows


def _repeats(batch_size: int) -> int:
    return 200 if batch_size <= 16 else 20


def time_model(model: Any, variables: Any, image_shape: Sequence[int], batch_size: int, repeats: int) -> dict:
    """Dense, sparse (measured choice), all-gather and layer-1-emptied inference times at one batch size.

    Returns:
      `seconds` (median per call of each), `compile_seconds` (first call of dense and sparse), the speed-ups,
      and layer 1's representation, density and non-zeros.
    """
    images = jnp.asarray(np.random.default_rng(1).standard_normal((batch_size, *image_shape)), jnp.float32)
    chosen = sparse.sparsify(variables, batch_size=batch_size)
    forced = sparse.sparsify(variables, dense_above=1.0)
    # Everything but layer 1: the same sparse model with layer 1 emptied (its gather then costs nothing).
    emptied = jax.tree.map(np.array, variables)
    emptied["params"][FIRST_LAYER]["kernel"][:] = 0.0
    rest = sparse.sparsify(emptied, batch_size=batch_size)
    dense_apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    sparse_apply = jax.jit(functools.partial(sparse.sparse_apply, model))
    calls = {
        "dense": lambda: dense_apply(variables, images),
        "sparse": lambda: sparse_apply(chosen, images),
        "gather": lambda: sparse_apply(forced, images),
        "rest": lambda: sparse_apply(rest, images),
    }
    compile_seconds = {}
    for name in ("dense", "sparse"):
        start = time.perf_counter()
        jax.block_until_ready(calls[name]())
        compile_seconds[name] = time.perf_counter() - start
    seconds = interleaved_seconds(calls, repeats)
    layer = _layers(chosen, variables)[FIRST_LAYER]
    return {
        "batch_size": batch_size,
        "first_layer": layer["representation"],
        "first_layer_density": layer["density"],
        "nonzeros": layer["nonzeros"],
        "seconds": seconds,
        "compile_seconds": compile_seconds,
        "speedup": seconds["dense"] / seconds["sparse"],
        "gather_speedup": seconds["dense"] / seconds["gather"],
    }


def _layers(sparse_model: sparse.SparseModel, variables: Any) -> dict[str, dict[str, Any]]:
    """Per dense-or-gather weight layer: its representation, density, non-zeros and largest unit count."""
    flat = traverse_util.flatten_dict(dict(variables["params"]), sep="/")
    layers = {}
    for key, kernel in flat.items():
        layer, leaf = key.rpartition("/")[::2]
        if leaf != "kernel":
            continue
        nonzeros = int(np.count_nonzero(kernel))
        layers[layer] = {
            "representation": "gather" if layer in sparse_model.kernels else "dense",
            "density": nonzeros / kernel.size,
            "nonzeros": nonzeros,
            "max_count": int(np.count_nonzero(kernel, axis=0).max()) if kernel.ndim == 2 else None,
        }
    return layers


def layer_crossover(
    alphas: Sequence[int], densities: Sequence[float], batch_sizes: Sequence[int], repeats: int | None = None
) -> list[dict[str, Any]]:
    """S-FC's first layer alone (3072 × 256α, random mask): `x @ W` against `sparse.gather_matmul`, per
    (α, density, batch size): the measurements behind `sparse.gather_below`'s thresholds."""
    rows = []
    for alpha in alphas:
        for density in densities:
            kernel = masked_s_fc(alpha, check_density("density", density))[1]["params"][FIRST_LAYER]["kernel"]
            gathered, dense_kernel = sparse.gather_kernel(kernel), jnp.asarray(kernel)
            dense_matmul, gather_matmul = jax.jit(jnp.matmul), jax.jit(sparse.gather_matmul)
            for batch in batch_sizes:
                x = jnp.asarray(np.random.default_rng(batch).standard_normal((batch, kernel.shape[0])), jnp.float32)
                seconds = interleaved_seconds(
                    {
                        "dense": functools.partial(dense_matmul, x, dense_kernel),
                        "gather": functools.partial(gather_matmul, x, gathered),
                    },
                    repeats or (100 if batch <= 16 else 10),
                )
                rows.append({"alpha": alpha, "density": density, "batch_size": batch, "seconds": seconds})
    return rows


def crossover_markdown(rows: list[dict[str, Any]]) -> str:
    """`layer_crossover`'s rows as a Markdown table: dense / gather time, > 1 where the gather wins."""
    densities = sorted({row["density"] for row in rows})
    lines = [
        "| α | batch | " + " | ".join(f"{100 * d:g} %" for d in densities) + " |",
        "| --- | --- |" + " --- |" * len(densities),
    ]
    for alpha, batch in dict.fromkeys((row["alpha"], row["batch_size"]) for row in rows):
        cells = {
            r["density"]: r["seconds"]["dense"] / r["seconds"]["gather"]
            for r in rows
            if (r["alpha"], r["batch_size"]) == (alpha, batch)
        }
        lines.append(f"| {alpha} | {batch} | " + " | ".join(f"{cells[d]:.2f}×" for d in densities) + " |")
    return "\n".join(lines)


def file_sizes(alpha: int, density: float) -> dict[str, int]:
    """Bytes of the sparse export, a dense `.npz` of the same arrays and an orbax checkpoint of them."""
    model, variables = masked_s_fc(alpha, density)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        export.save(folder / "sparse.npz", variables["params"], variables["batch_stats"])
        buffer = io.BytesIO()
        np.savez(buffer, **{"/".join(map(str, k)): v for k, v in _flat(variables).items()})
        import orbax.checkpoint as ocp  # heavy: only here

        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(folder / "orbax", variables)
        checkpointer.wait_until_finished()
        return {
            "sparse_export": (folder / "sparse.npz").stat().st_size,
            "dense_npz": buffer.getbuffer().nbytes,
            "orbax": sum(f.stat().st_size for f in (folder / "orbax").rglob("*") if f.is_file()),
        }


def _flat(tree: Any) -> dict[tuple, np.ndarray]:
    return {
        tuple(getattr(k, "key", k) for k in path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def run(
    alphas: Sequence[int] = (1, 4),
    densities: Sequence[float] = (0.003, 0.03, 0.3),
    batch_sizes: Sequence[int] = (1, 512),
    repeats: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every (α, density, batch size) timing and every (α, density) file size.

    Args:
      alphas: S-FC widths (α=1: 3072 → 256 → 24 → 10).
      densities: first-layer densities, each in (0, 1].
      batch_sizes: inference batch sizes.
      repeats: timed calls of each function per row (default: 200 at batch ≤ 16, else 20).

    Returns:
      `{'timings': [...], 'sizes': [...]}`, one dict per row (see `time_inference`, `file_sizes`).
    """
    for density in densities:
        check_density("density", density)
    timings, sizes = [], []
    for alpha in alphas:
        for density in densities:
            sizes.append({"alpha": alpha, "density": density, **file_sizes(alpha, density)})
            for batch in batch_sizes:
                timings.append(time_inference(alpha, density, batch, repeats or _repeats(batch)))
    return {"timings": timings, "sizes": sizes}


def export_markdown(rows: list[dict[str, Any]]) -> str:
    """`time_export`'s rows as a Markdown table."""
    lines = [
        "| export | layer-1 density | batch | layer 1 as | dense ms | sparse ms | speed-up | layer 1 empty ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        s = row["seconds"]
        lines.append(
            f"| {row['export']} | {100 * row['first_layer_density']:.2f} % | {row['batch_size']} "
            f"| {row['first_layer']} | {1e3 * s['dense']:.3f} | {1e3 * s['sparse']:.3f} | {row['speedup']:.1f}× "
            f"| {1e3 * s['rest']:.3f} |"
        )
    return "\n".join(lines)


def markdown(report: dict[str, list[dict[str, Any]]]) -> str:
    """The timings and sizes of `run` as two Markdown tables."""
    lines = [
        "| α | layer-1 density | batch | layer 1 as | dense ms | sparse ms | speed-up | all-gather ms | its speed-up "
        "| layer 1 empty ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["timings"]:
        s = row["seconds"]
        lines.append(
            f"| {row['alpha']} | {100 * row['density']:g} % | {row['batch_size']} | {row['first_layer']} | "
            f"{1e3 * s['dense']:.3f} | {1e3 * s['sparse']:.3f} | {row['speedup']:.1f}× | {1e3 * s['gather']:.3f} | "
            f"{row['gather_speedup']:.2f}× | {1e3 * s['rest']:.3f} |"
        )
    lines += [
        "",
        "| α | layer-1 density | sparse export | dense .npz | orbax checkpoint | .npz / export | orbax / export |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["sizes"]:
        lines.append(
            f"| {row['alpha']} | {100 * row['density']:g} % | {row['sparse_export']:,} B | {row['dense_npz']:,} B | "
            f"{row['orbax']:,} B | {row['dense_npz'] / row['sparse_export']:.1f}× | "
            f"{row['orbax'] / row['sparse_export']:.1f}× |"
        )
    return "\n".join(lines)


def tables(
    runs: Sequence[str | Path] = (),
    *,
    crossover: bool = False,
    alphas: Sequence[int] = (1, 4),
    densities: Sequence[float] = (0.003, 0.03, 0.3),
    batch_sizes: Sequence[int] = (1, 512),
) -> tuple[str, Any]:
    """What `experiments.benchmark --sparse` prints and writes, `(markdown, report)`: the exports of finished `runs`
    timed, or with `crossover` the first layer's gather-vs-dense ratios, or else the inference and file-size
    benchmark (`run`)."""
    if runs:
        rows = [row for path in runs for row in time_export(Path(path) / "sparse_params.npz", batch_sizes)]
        return export_markdown(rows), rows
    if crossover:
        rows = layer_crossover(alphas, densities, batch_sizes)
        return crossover_markdown(rows), rows
    report = run(alphas=alphas, densities=densities, batch_sizes=batch_sizes)
    return markdown(report), report
