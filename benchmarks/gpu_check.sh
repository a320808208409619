#!/usr/bin/env bash
# The GPU checks of docs/performance.md, in one prepared run (about 3-4 minutes on one H100):
#   S-FC α=150 β-LASSO, batch 512, 50,000 CIFAR-shaped images, bf16 and fp32 (TF32) matmuls,
#   through the real training path (experiments.benchmark). Reports land in $OUT (or ./bench_out).
#   Each report also holds XLA's FLOPs and bytes per step beside the analytic minimum, and
#   step_traffic.py lists the step's largest passes, to confirm or refute the CPU findings in
#   docs/performance.md (guard, bf16 cast, gradient transpose).
# The GPU image needs only jax, flax, optax, numpy and absl-py: orbax, TensorFlow and tfds are not imported.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench_out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt" || true
python -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" | tee -a "$out/gpu.txt"
for precision in bf16 fp32; do
  python -m experiments.benchmark --precision="$precision" --timed_epochs=5 --augment=crop_flip \
    --out="$out/sfc_a150_${precision}.json" \
    2>&1 | tee "$out/sfc_a150_${precision}.log"
done
# Fast AutoAugment's cost on the GPU: the same run with the CIFAR policy instead of crop+flip, and every
# augmentation of one 512-image batch timed alone, side by side (seconds; compiling Fast AutoAugment takes longest).
python -m experiments.benchmark --precision=bf16 --timed_epochs=5 --augment=fast_autoaugment \
  --out="$out/sfc_a150_bf16_fast_autoaugment.json" 2>&1 | tee "$out/sfc_a150_bf16_fast_autoaugment.log"
python -m experiments.benchmark --augment_only --rounds=100 --out="$out/augment_only.json" \
  2>&1 | tee "$out/augment_only.log"
for precision in bf16 fp32; do
  python benchmarks/step_traffic.py --precision="$precision" --alpha=150 --examples=2048 --top=16 \
    2>&1 | tee "$out/step_traffic_a150_${precision}.txt"
done
python -m experiments.benchmark --fit_table --precision=bf16 | tee "$out/fit_table.md"
