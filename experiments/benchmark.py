"""Seconds per epoch of the real training path on synthetic data of a dataset's shape.

    python -m experiments.benchmark --precision=bf16 --out=bench.json   # S-FC α=150 (Table 2 preset) on a GPU
    python -m experiments.benchmark --precision=fp32 --out=bench.json   # TF32 matmuls on a GPU
    python -m experiments.benchmark --alpha=2 --examples=2048           # a CPU smoke run

Model, α, method, precision and batch size come from the training flags (`--config` preset and
overrides; the `benchmark_cpu` preset by default on a CPU). On a CPU the number of examples
defaults to a small value too.
"""

from __future__ import annotations

import json

import jax
from absl import app, flags

from blasso_jax import benchmark, io
from experiments import flags as train_flags

train_flags.define_train_flags()
train_flags.define_once(
    flags.DEFINE_integer, "examples", None, "images per epoch (default: 50,000 on GPU/TPU, 2,048 on CPU)"
)
train_flags.define_once(
    flags.DEFINE_list, "image_shape", ["32", "32", "3"], "H,W,C of the synthetic images (CIFAR's by default)"
)
train_flags.define_once(flags.DEFINE_integer, "num_classes", 10, "classes")
train_flags.define_once(flags.DEFINE_integer, "timed_epochs", 5, "timed epochs, after one warm-up epoch")
train_flags.define_shared_flags()
FLAGS = flags.FLAGS


def body() -> None:
    on_cpu = jax.devices()[0].platform == "cpu"
    config = train_flags.config_from_flags(*(["benchmark_cpu"] if on_cpu else []))
    report = benchmark.benchmark_epochs(
        config,
        image_shape=tuple(int(d) for d in FLAGS.image_shape),
        num_classes=FLAGS.num_classes,
        num_examples=FLAGS.examples or (2048 if on_cpu else 50_000),
        epochs=FLAGS.timed_epochs,
    )
    print(json.dumps({k: v for k, v in report.items() if k != "seconds_per_epoch_all"}, indent=2))
    if FLAGS.out:
        io.atomic_write_json(FLAGS.out, report)


def main(argv):
    train_flags.run_main(argv, body)


if __name__ == "__main__":
    app.run(main)
