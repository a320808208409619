"""Prints the XLA fusions of one training epoch that produce the S-FC layer-1 kernel.

    python benchmarks/update_fusion.py        # α=4 on the default backend

A fused β-LASSO update shows up as a single loop fusion taking the kernel and its gradient.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from blasso_jax.common import parallel
from blasso_jax.config import train_config as config
from blasso_jax.data import augment
from blasso_jax.methods import registry as methods
from blasso_jax.training import step

ALPHA, IMAGES = 4, 256
cfg = config.preset("smoke", alpha=ALPHA, batch_size=64, precision="bf16", augment="crop_flip")
mesh = parallel.make_mesh(jax.devices()[:1])
replicated = NamedSharding(mesh, P())
model = config.model_from_config(cfg, 10, (32, 32, 3))
state = jax.device_put(
    step.create_train_state(model, (32, 32, 3), methods.optimizer(cfg, IMAGES // 64), jax.random.key(0)), replicated
)
x = jax.device_put(np.zeros((IMAGES, 32, 32, 3), np.uint8), replicated)
y = jax.device_put(np.zeros(IMAGES, np.int32), replicated)
policy = augment.resolve(cfg.augment, cfg.dataset)
epoch = step.make_train_epoch(mesh, IMAGES, policy, (0.5,) * 3, (0.25,) * 3, **cfg.step_options())
hlo = epoch.lower(state, x, y, jax.random.key(0)).compile().as_text()
shape = f"f32[3072,{32 * 32 * ALPHA // 4}]"
for line in hlo.splitlines():
    if f"= {shape}" in line and "fusion(" in line:
        print(line.strip()[:200])
