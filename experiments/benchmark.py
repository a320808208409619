"""Seconds per epoch of the real training path on synthetic data of a dataset's shape.

    python -m experiments.benchmark --precision=bf16 --out=bench.json   # S-FC α=150 (Table 2 preset) on a GPU
    python -m experiments.benchmark --precision=fp32 --out=bench.json   # TF32 matmuls on a GPU
    python -m experiments.benchmark --alpha=2 --examples=2048           # a CPU smoke run
    python -m experiments.benchmark --fit_table                         # largest α per 80 GB device, K=1,2,4,8
    python -m experiments.benchmark --augment_only                      # ms per 512-image batch of each augmentation
    python -m experiments.benchmark --sparse                            # sparse vs dense S-FC inference, file sizes
    python -m experiments.benchmark --sparse --crossover --densities=0.003,0.01,0.03,0.1,0.3 --batch_sizes=1,16,64,512
    python -m experiments.benchmark --sparse --runs=runs/table2/X                 # a trained model's export

TFLOP/s counts the matmuls a step must do (`benchmark.analytic_step_cost`), `xla_tflops` the same
epoch by XLA's count. The report also holds XLA's cost analysis of the compiled epoch per step (FLOPs,
bytes accessed) beside the analytic minimum, and their ratios: the traffic overhead, measurable on any backend.
`--model_parallel=K` benchmarks the model-sharded layout. `--fit_table` trains nothing: it prints
the largest S-FC and D-FC α whose train state, gradients, compute copy, activations and training
set fit one device of `--device_gb` with kernels split K ways (`jax.eval_shape` and the real
sharding rule; see `training.benchmark.training_bytes_per_device`). `--augment_only` trains nothing either: it
times the augmentation of one batch (`--batch_size`, 512 by default) for every policy side by side, `--rounds` times
(`blasso_jax.training.benchmark.time_augmentations`).

`--sparse` trains nothing either: it times sparse against dense inference of S-FC with a random
first-layer mask at each of `--densities`, for `--sparse_alphas` and `--batch_sizes`, and compares the sparse
export's size with a dense `.npz` and an orbax checkpoint (`blasso_jax.sparse.benchmark`); with
`--runs`, it times the models the runs exported (`<run>/sparse_params.npz`) instead.

Model, α, method, precision and batch size come from the training flags (`--config` preset and
overrides; the `benchmark_cpu` preset by default on a CPU). On a CPU the number of examples
defaults to a small value too. The random images stand for `--dataset` (CIFAR-10 by default), and `--augment`
means what it means in training: 'auto' is Fast AutoAugment for CIFAR-10.
"""

from __future__ import annotations

import json

import jax
from absl import app, flags

from blasso_jax.common import files
from blasso_jax.sparse import benchmark as sparse_benchmark
from blasso_jax.training import benchmark
from experiments import flags as train_flags

train_flags.define_train_flags()
flags.adopt_module_key_flags(train_flags)  # --help lists the training flags
train_flags.define_once(
    flags.DEFINE_integer, "examples", None, "images per epoch (default: 50,000 on GPU/TPU, 2,048 on CPU)"
)
train_flags.define_once(
    flags.DEFINE_list, "image_shape", ["32", "32", "3"], "H,W,C of the synthetic images (CIFAR's by default)"
)
train_flags.define_once(flags.DEFINE_integer, "num_classes", 10, "classes")
train_flags.define_once(flags.DEFINE_integer, "timed_epochs", 5, "timed epochs, after one warm-up epoch")
train_flags.define_once(flags.DEFINE_bool, "fit_table", False, "print the largest S-FC/D-FC α per device at K=1,2,4,8")
train_flags.define_once(flags.DEFINE_float, "device_gb", 80.0, "device memory of --fit_table, in GB (1e9 bytes)")
train_flags.define_once(flags.DEFINE_bool, "augment_only", False, "time each augmentation of one batch, side by side")
train_flags.define_once(flags.DEFINE_integer, "rounds", 50, "rounds of --augment_only (each policy once per round)")
train_flags.define_once(flags.DEFINE_bool, "sparse", False, "time sparse vs dense S-FC inference and file sizes")
train_flags.define_once(flags.DEFINE_bool, "crossover", False, "--sparse: S-FC's first layer alone, gather vs dense")
train_flags.define_once(flags.DEFINE_list, "densities", ["0.003", "0.03", "0.3"], "--sparse: first-layer densities")
train_flags.define_once(flags.DEFINE_list, "sparse_alphas", ["1", "4"], "--sparse: S-FC widths α")
train_flags.define_once(flags.DEFINE_list, "batch_sizes", ["1", "512"], "--sparse: inference batch sizes")
train_flags.define_shared_flags("out", "runs")
FLAGS = flags.FLAGS


def sparse_table() -> None:
    """Prints (and with --out writes as JSON) the sparse inference and file-size benchmark, the exports of --runs,
    or with --crossover the first layer's gather-vs-dense ratios."""
    table, report = sparse_benchmark.tables(
        FLAGS.runs or (),
        crossover=FLAGS.crossover,
        alphas=[int(a) for a in FLAGS.sparse_alphas],
        densities=[_density(d) for d in FLAGS.densities],
        batch_sizes=[int(b) for b in FLAGS.batch_sizes],
    )
    print(table)
    if FLAGS.out:
        files.atomic_write_json(FLAGS.out, report)


def _density(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--densities takes numbers in (0, 1], got {text!r}") from None


def body() -> None:
    if FLAGS.fit_table:
        shape = {"image_shape": tuple(int(d) for d in FLAGS.image_shape), "num_classes": FLAGS.num_classes}
        print(benchmark.fit_table(train_flags.config_from_flags(), FLAGS.device_gb * 1e9, **shape))
        return
    if FLAGS.sparse:
        sparse_table()
        return
    on_cpu = jax.devices()[0].platform == "cpu"
    config = train_flags.config_from_flags(*(["benchmark_cpu"] if on_cpu else []))
    shape = tuple(int(d) for d in FLAGS.image_shape)
    if FLAGS.augment_only:
        report = benchmark.time_augmentations(batch_size=config.batch_size, image_shape=shape, rounds=FLAGS.rounds)
    else:
        report = benchmark.benchmark_epochs(
            config,
            image_shape=shape,
            num_classes=FLAGS.num_classes,
            num_examples=FLAGS.examples or (2048 if on_cpu else 50_000),
            epochs=FLAGS.timed_epochs,
        )
    print(json.dumps({k: v for k, v in report.items() if k != "seconds_per_epoch_all"}, indent=2))
    if FLAGS.out:
        files.atomic_write_json(FLAGS.out, report)


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
