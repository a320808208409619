"""Speed of the real training path: seconds per epoch, throughput, compile time, TFLOP/s, memory.

Beside the timings, figures that any backend can measure and that predict a GPU's behaviour: XLA's
cost analysis of the compiled epoch (FLOPs and bytes accessed per step) against the analytic
minimum of the model (`analytic_step_cost`), and the per-device memory of a model-sharded run
(`training_bytes_per_device`, `largest_alpha`). Benchmarks report numbers; they assert nothing
about timings.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from blasso_jax.common import parallel
from blasso_jax.config.train_config import PRECISION_DTYPES, TrainConfig, model_from_config
from blasso_jax.data import augment
from blasso_jax.methods import registry as methods
from blasso_jax.methods.runs import validate
from blasso_jax.models.networks import layer_specs
from blasso_jax.training import step


def layer_costs(config: TrainConfig, image_shape: Sequence[int], num_classes: int) -> list[tuple[int, int]]:
    """Per weight layer, classifier included: (multiply-adds of one image's forward pass, output values per image).

    A conv or local layer's multiply-adds are its (output position, kernel tap) pairs that land inside
    the image, times its input and output channels: taps on the zero padding multiply by zero, and
    XLA's cost analysis does not count them either. The weight and input gradients have the same pairs.
    """
    height, width, channels = image_shape
    layers, scale = [], 1
    in_features, in_channels = height * width * channels, channels
    for spec in layer_specs(config.model, config.alpha, image_shape, num_classes, config.width):
        if spec.kind == "dense":
            layers.append((in_features * spec.features, spec.features))
            in_features = spec.features
            continue
        taps = [_valid_taps(side // scale, spec.kernel_size, spec.stride) for side in (height, width)]
        scale *= spec.stride
        positions = (height // scale) * (width // scale)
        layers.append((taps[0] * taps[1] * in_channels * spec.features, positions * spec.features))
        in_channels, in_features = spec.features, positions * spec.features
    return [*layers, (in_features * num_classes, num_classes)]


def _valid_taps(size: int, kernel: int, stride: int) -> int:
    """Along one axis of `size` pixels padded by kernel // 2 each side: the (output, tap) pairs inside the axis."""
    pad = kernel // 2
    outputs = (size + 2 * pad - kernel) // stride + 1
    return sum(0 <= out * stride - pad + tap < size for out in range(outputs) for tap in range(kernel))


def analytic_step_cost(config: TrainConfig, image_shape: Sequence[int], num_classes: int) -> dict[str, int]:
    """The least FLOPs and bytes one training step must spend, at the config's precision.

    FLOPs: the matmuls only, 2 per multiply-add: forward, weight gradients, and input gradients
    of every layer but the first (nothing needs the images' gradient). Bytes, per kernel entry:
    read at the compute precision c in the forward and again in the backward pass, the fp32
    gradient written once, and the β-LASSO (or SGD) update reading θ and ∇θ and writing θ in fp32
    (momentum, if any, read and written too): 2c + 4 + 12 (+ 8). Per activation value: written
    and read once forward, its gradient written and read once backward (4c). Per pixel: the uint8
    image read once, the normalised image written once and read by the forward and the
    weight-gradient matmuls (1 + 3c). Everything elementwise besides is free in this bound.
    """
    compute = np.dtype(PRECISION_DTYPES[config.precision]).itemsize
    layers = layer_costs(config, image_shape, num_classes)
    model = model_from_config(config, num_classes, tuple(image_shape))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_shape)), train=False))
    kernels = sum(
        leaf.size for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"]) if path[-1].key == "kernel"
    )
    momentum = 8 if methods.momentum(config) else 0
    batch = config.batch_size
    macs_first, _ = layers[0]
    total_macs = sum(macs for macs, _ in layers)
    activations = sum(out for _, out in layers)
    return {
        "flops": 2 * batch * (2 * total_macs + total_macs - macs_first),
        "bytes": kernels * (2 * compute + 4 + 12 + momentum)
        + batch * (4 * compute * activations + (1 + 3 * compute) * int(np.prod(image_shape))),
        "kernel_entries": int(kernels),
    }


def compiled_step_cost(compiled: Any) -> dict[str, float]:
    """XLA's cost analysis of a compiled epoch: FLOPs and bytes accessed of one step.

    XLA's `HloCostAnalysis` counts a while loop's body once, whatever its trip count, so the
    figures of the compiled epoch (a `lax.scan` over its steps) are those of one step plus the
    once-per-epoch shuffle.
    """
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return {"flops": float(analysis["flops"]), "bytes": float(analysis["bytes accessed"])}


def training_bytes_per_device(
    config: TrainConfig,
    model_parallel: int,
    *,
    image_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    num_examples: int = 50_000,
) -> dict[str, int]:
    """Device memory one device needs to train `config` with kernels split `model_parallel` ways (data axis 1).

    The train state's bytes come from `jax.eval_shape` of the real initialisation and the real
    sharding rule (`parallel.state_shardings`); gradients add one more copy of the parameters in
    the same layout, bf16 a compute copy of the kernels. Activations are counted whole on every
    device (4 fp32 values per output: pre-BN, post-BN, ReLU and gradient) and the uint8 training
    set too: both are small beside the kernels at the α where memory binds.
    """
    model = model_from_config(config, num_classes, tuple(image_shape))
    abstract = jax.eval_shape(
        lambda key: step.create_train_state(model, tuple(image_shape), methods.optimizer(config, 100), key),
        jax.random.key(0),
    )
    mesh = jax.sharding.AbstractMesh(
        (1, model_parallel), (parallel.DATA, parallel.MODEL), axis_types=(jax.sharding.AxisType.Auto,) * 2
    )
    shardings = parallel.state_shardings(abstract, mesh)
    param_shardings = parallel.state_shardings(abstract.params, mesh)
    kernel_bytes = sum(
        parallel.shard_bytes(leaf, sharding) // 4 * np.dtype(PRECISION_DTYPES[config.precision]).itemsize
        for (path, leaf), sharding in zip(
            jax.tree_util.tree_leaves_with_path(abstract.params), jax.tree.leaves(param_shardings)
        )
        if path[-1].key == "kernel"
    )
    activations = config.batch_size * sum(out for _, out in layer_costs(config, image_shape, num_classes))
    parts = {
        "state": parallel.shard_bytes(abstract, shardings),
        "gradients": parallel.shard_bytes(abstract.params, param_shardings),
        "compute_copy": kernel_bytes if config.precision == "bf16" else 0,
        "activations": 4 * 4 * activations,
        "training_set": num_examples * int(np.prod(image_shape)),
    }
    return {**parts, "total": sum(parts.values())}


def largest_alpha(config: TrainConfig, model_parallel: int, device_bytes: float = 80e9, **shape: Any) -> int:
    """The largest α whose `training_bytes_per_device` fits `device_bytes` (80 GB: an H100/A100 80GB)."""

    def fits(alpha: int) -> bool:
        return training_bytes_per_device(config.replace(alpha=alpha), model_parallel, **shape)["total"] <= device_bytes

    low, high = 1, 2
    while fits(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def fit_table(config: TrainConfig, device_bytes: float, widths: Sequence[int] = (1, 2, 4, 8), **shape: Any) -> str:
    """A markdown table: the largest α of S-FC and D-FC whose training fits one device, per model-parallel width K."""
    lines = [
        f"| model ({config.precision}, batch {config.batch_size}) | " + " | ".join(f"K={k}" for k in widths) + " |",
        "| --- |" + " --- |" * len(widths),
    ]
    for model in ("s-fc", "d-fc"):
        cells = []
        for k in widths:
            alpha = largest_alpha(config.replace(model=model), k, device_bytes, **shape)
            total = training_bytes_per_device(config.replace(model=model, alpha=alpha), k, **shape)["total"]
            cells.append(f"α={alpha} ({total / 1e9:.1f} GB)")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def matmul_tflops(dtype: Any, size: int, repeats: int = 10) -> float:
    """Achieved TFLOP/s of a size³ matmul in `dtype` on the default device: the card's practical peak."""
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (size, size), dtype)
    b = jax.random.normal(key_b, (size, size), dtype)
    matmul = jax.jit(lambda a, b: a @ b)
    matmul(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - tic)
    return 2 * size**3 / statistics.median(times) / 1e12


def peak_memory_bytes() -> int | None:
    """Peak bytes in use on the first device since start, where the backend reports it (GPUs and TPUs)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def _time_epochs(epoch_fn, state, x, y, warmup: int, epochs: int):
    """Compiles `epoch_fn` ahead of time and runs `warmup + epochs` epochs.

    Returns (compile seconds, the timed epochs' seconds, the last totals, `compiled_step_cost`).
    """
    tic = time.perf_counter()
    compiled = epoch_fn.lower(state, x, y, jax.random.key(0)).compile()
    compile_seconds = time.perf_counter() - tic
    cost = compiled_step_cost(compiled)
    times = []
    for epoch in range(warmup + epochs):
        tic = time.perf_counter()
        state, totals = compiled(state, x, y, jax.random.key(epoch))
        jax.block_until_ready((state, totals))
        if epoch >= warmup:
            times.append(time.perf_counter() - tic)
    return compile_seconds, times, totals, cost


def _epoch_on_random_images(config: TrainConfig, image_shape, num_classes: int, num_examples: int, policy: str):
    """The real epoch function, a fresh state and random uint8 images on the config's mesh: (epoch, state, x, y)."""
    mesh = parallel.make_mesh(model_parallel=config.model_parallel)
    rng = np.random.default_rng(config.seed)
    x = parallel.put_rows(rng.integers(0, 256, (num_examples, *image_shape), dtype=np.uint8), mesh)
    y = parallel.put_rows(rng.integers(0, num_classes, num_examples).astype(np.int32), mesh)
    steps_per_epoch = num_examples // config.batch_size
    model = model_from_config(config, num_classes, tuple(image_shape))
    state = parallel.init_sharded(
        lambda key: step.create_train_state(model, tuple(image_shape), methods.optimizer(config, steps_per_epoch), key),
        jax.random.key(0),
        mesh,
    )
    channels = image_shape[-1]
    # One compiled program (a lax.scan) on every platform, so XLA's cost analysis is one step's; on CPU,
    # training dispatches the same step per batch instead (`step.host_scan`), as fast for dense models.
    epoch_fn = step.make_train_epoch(
        mesh, num_examples, policy, (0.5,) * channels, (0.25,) * channels, **config.step_options(), host_loop=False
    )
    return epoch_fn, state, x, y


def time_augmentations(
    policies: Sequence[str] = augment.AUGMENT_POLICIES,
    *,
    batch_size: int = 512,
    image_shape: Sequence[int] = (32, 32, 3),
    rounds: int = 50,
) -> dict[str, Any]:
    """Milliseconds per batch of `augment.prepare_batch` (augmentation, normalisation, Cutout) for each policy.

    Timed side by side: every round runs each compiled policy once on the same random uint8 images with a new key,
    so whatever else loads the machine falls on all of them alike. Reports the median and the fastest round.
    """
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (batch_size, *image_shape), dtype=np.uint8))
    channels = image_shape[-1]
    compiled = {
        policy: jax.jit(
            lambda key, x, policy=policy: augment.prepare_batch(key, x, policy, (0.5,) * channels, (0.25,) * channels)
        )
        for policy in policies
    }
    for function in compiled.values():
        jax.block_until_ready(function(jax.random.key(0), images))
    seconds = {policy: [] for policy in policies}
    for round_ in range(rounds):
        for policy, function in compiled.items():
            tic = time.perf_counter()
            jax.block_until_ready(function(jax.random.key(1 + round_), images))
            seconds[policy].append(time.perf_counter() - tic)
    median = {policy: 1e3 * statistics.median(times) for policy, times in seconds.items()}
    report = {"batch_size": batch_size, "image_shape": list(image_shape), "rounds": rounds, "median_ms": median}
    report["min_ms"] = {policy: 1e3 * min(times) for policy, times in seconds.items()}
    if {"none", "crop_flip"} <= set(policies):
        # Each policy against crop+flip: its whole batch time, and what it adds to normalisation alone ('none').
        report["median_over_crop_flip"] = {policy: ms / median["crop_flip"] for policy, ms in median.items()}
        added = {policy: ms - median["none"] for policy, ms in median.items()}
        report["added_over_crop_flip_added"] = {policy: ms / added["crop_flip"] for policy, ms in added.items()}
    return {**report, "device_kind": jax.devices()[0].device_kind, "jax_version": jax.__version__}


def benchmark_epochs(
    config: TrainConfig,
    *,
    image_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    num_examples: int = 50_000,
    epochs: int = 5,
    warmup: int = 1,
    matmul_size: int | None = None,
) -> dict[str, Any]:
    """Times `epochs` epochs (after `warmup`) of `step.make_train_epoch` on random uint8 images on device, with
    the augmentation training would use on `config.dataset` (`augment.resolve`)."""
    config = validate(config, jax.device_count())
    policy = augment.resolve(config.augment, config.dataset, image_shape[-1])
    steps_per_epoch = num_examples // config.batch_size
    epoch_fn, state, x, y = _epoch_on_random_images(config, image_shape, num_classes, num_examples, policy)
    compile_seconds, times, totals, cost = _time_epochs(epoch_fn, state, x, y, warmup, epochs)
    seconds = statistics.median(times)
    images = steps_per_epoch * config.batch_size
    on_cpu = jax.devices()[0].platform == "cpu"
    size = matmul_size or (1024 if on_cpu else 8192)
    peak = matmul_tflops(jnp.bfloat16 if config.precision == "bf16" else jnp.float32, size)
    # The matmul FLOPs the epoch must do: forward, weight gradients, input gradients but the first layer's.
    minimum = analytic_step_cost(config, image_shape, num_classes)
    achieved = minimum["flops"] * steps_per_epoch / seconds / 1e12
    return {
        "model": config.model,
        "alpha": config.alpha,
        "method": config.method,
        "precision": config.precision,
        "augment": policy,
        "batch_size": config.batch_size,
        "examples_per_epoch": images,
        "seconds_per_epoch": seconds,
        "seconds_per_epoch_all": times,
        "images_per_second": images / seconds,
        "compile_seconds": compile_seconds,
        "tflops": achieved,
        # The same epoch by XLA's count (every op, matmuls and elementwise; one device's program x devices).
        "xla_tflops": cost["flops"] * jax.device_count() * steps_per_epoch / seconds / 1e12,
        "matmul_peak_tflops": peak,
        "matmul_peak_size": size,
        "share_of_matmul_peak": achieved / peak,
        "peak_memory_bytes": peak_memory_bytes(),
        # Per step: XLA's cost analysis of the compiled epoch (one device's program), beside the analytic
        # minimum of the whole step; the ratios are the overheads when the run has one device.
        "xla_flops_per_step": cost["flops"],
        "xla_bytes_per_step": cost["bytes"],
        "min_flops_per_step": minimum["flops"],
        "min_bytes_per_step": minimum["bytes"],
        "flops_ratio": cost["flops"] / minimum["flops"],
        "bytes_ratio": cost["bytes"] / minimum["bytes"],
        "model_parallel": config.model_parallel,
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
        "default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "loss_finite": bool(np.isfinite(float(totals.loss))),
    }
