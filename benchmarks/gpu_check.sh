#!/usr/bin/env bash
# The GPU checks of docs/performance.md, in one prepared run (about 3-4 minutes on one H100):
#   S-FC α=150 β-LASSO, batch 512, 50,000 CIFAR-shaped images, bf16 and fp32 (TF32) matmuls,
#   through the real training path (experiments.benchmark). Reports land in $OUT (or ./bench_out).
# The GPU image needs only jax, flax, optax, numpy and absl-py: orbax, TensorFlow and tfds are not imported.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench_out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt" || true
python -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" | tee -a "$out/gpu.txt"
for precision in bf16 fp32; do
  python -m experiments.benchmark --precision="$precision" --timed_epochs=5 --out="$out/sfc_a150_${precision}.json" \
    2>&1 | tee "$out/sfc_a150_${precision}.log"
done
