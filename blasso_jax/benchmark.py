"""Speed of the real training path: seconds per epoch, throughput, compile time, TFLOP/s, memory.

Benchmarks report numbers; they assert nothing about timings.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from blasso_jax import parallel, step
from blasso_jax.config import TrainConfig, model_from_config
from blasso_jax.models import layer_specs


def forward_macs(config: TrainConfig, image_shape: Sequence[int], num_classes: int) -> int:
    """Multiply-adds of one image's forward pass: every kernel entry once, a conv's once per output position."""
    height, width, channels = image_shape
    macs, scale = 0, 1
    in_features, in_channels = height * width * channels, channels
    for spec in layer_specs(config.model, config.alpha, image_shape, num_classes, config.width):
        if spec.kind == "dense":
            macs += in_features * spec.features
            in_features = spec.features
            continue
        scale *= spec.stride
        positions = (height // scale) * (width // scale)
        macs += positions * spec.kernel_size**2 * in_channels * spec.features
        in_channels, in_features = spec.features, positions * spec.features
    return macs + in_features * num_classes


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
    """Compiles `epoch_fn` ahead of time and runs `warmup + epochs` epochs: (compile s, timed epochs' s, totals)."""
    tic = time.perf_counter()
    compiled = epoch_fn.lower(state, x, y, jax.random.key(0)).compile()
    compile_seconds = time.perf_counter() - tic
    times = []
    for epoch in range(warmup + epochs):
        tic = time.perf_counter()
        state, totals = compiled(state, x, y, jax.random.key(epoch))
        jax.block_until_ready((state, totals))
        if epoch >= warmup:
            times.append(time.perf_counter() - tic)
    return compile_seconds, times, totals


def benchmark_epochs(
    config: TrainConfig,
    *,
    image_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    num_examples: int = 50_000,
    epochs: int = 5,
    warmup: int = 1,
    policy: str = "crop_flip",
    matmul_size: int | None = None,
) -> dict[str, Any]:
    """Times `epochs` epochs (after `warmup`) of `step.make_train_epoch` on random uint8 images on device."""
    config = config.validate(jax.device_count())
    mesh = parallel.make_mesh()
    replicated = NamedSharding(mesh, P())
    rng = np.random.default_rng(config.seed)
    x = jax.device_put(rng.integers(0, 256, (num_examples, *image_shape), dtype=np.uint8), replicated)
    y = jax.device_put(rng.integers(0, num_classes, num_examples).astype(np.int32), replicated)
    steps_per_epoch = num_examples // config.batch_size
    model = model_from_config(config, num_classes, tuple(image_shape))
    state = jax.device_put(
        step.create_train_state(config, model, tuple(image_shape), steps_per_epoch, jax.random.key(0)), replicated
    )
    channels = image_shape[-1]
    epoch_fn = step.make_train_epoch(config, mesh, num_examples, policy, (0.5,) * channels, (0.25,) * channels)

    compile_seconds, times, totals = _time_epochs(epoch_fn, state, x, y, warmup, epochs)
    seconds = statistics.median(times)
    images = steps_per_epoch * config.batch_size
    # Training costs about three forward passes (forward, input gradients, weight gradients).
    flops = 3 * 2 * forward_macs(config, image_shape, num_classes) * images
    on_cpu = jax.devices()[0].platform == "cpu"
    size = matmul_size or (1024 if on_cpu else 8192)
    peak = matmul_tflops(jnp.bfloat16 if config.precision == "bf16" else jnp.float32, size)
    achieved = flops / seconds / 1e12
    return {
        "model": config.model,
        "alpha": config.alpha,
        "method": config.method,
        "precision": config.precision,
        "batch_size": config.batch_size,
        "examples_per_epoch": images,
        "seconds_per_epoch": seconds,
        "seconds_per_epoch_all": times,
        "images_per_second": images / seconds,
        "compile_seconds": compile_seconds,
        "tflops": achieved,
        "matmul_peak_tflops": peak,
        "matmul_peak_size": size,
        "share_of_matmul_peak": achieved / peak,
        "peak_memory_bytes": peak_memory_bytes(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
        "default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "loss_finite": bool(np.isfinite(float(totals.loss))),
    }
