"""ResNet18 with large kernels (the paper's Figure 5) as a `flax.linen` module.

ImageNet's ResNet18 (BasicBlock, [2, 2, 2, 2]) as the paper trains it on 32×32 images: the stem is a
3×3 stride-1 convolution with no max-pool. `kernel_size` enlarges the two convolutions of every
block (the paper does not say which convolutions grow; the stem stays 3×3 and the 1×1 projection
shortcuts stay 1×1, so the kernel size changes only what the blocks see). Stage widths are α, 2α, 4α
and 8α, so α=64 is the standard network and α=8 a ResNet18 at 1/8 width (Figure 2's scaling).
Padding is k // 2, as in the other models. Convolutions carry no bias (BatchNorm follows each);
the stem is `layer1`, so `optim.layerwise_l1` gives it the first-layer λ, and the classifier is
`classifier`.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

STAGES = (1, 2, 4, 8)  # channels of the four stages as multiples of α
BLOCKS_PER_STAGE = 2


class BasicBlock(nn.Module):
    """Two k×k convolutions with BatchNorm, plus the identity or a 1×1 projection (with BatchNorm) shortcut."""

    features: int
    stride: int
    kernel_size: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        pad = self.kernel_size // 2
        conv = dict(use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
        norm = dict(use_running_average=not train, momentum=self.bn_momentum, dtype=jnp.float32)
        y = nn.Conv(self.features, (self.kernel_size,) * 2, self.stride, ((pad, pad),) * 2, name="conv1", **conv)(x)
        y = nn.relu(nn.BatchNorm(name="norm1", **norm)(y.astype(jnp.float32))).astype(self.dtype)
        y = nn.Conv(self.features, (self.kernel_size,) * 2, 1, ((pad, pad),) * 2, name="conv2", **conv)(y)
        y = nn.BatchNorm(name="norm2", **norm)(y.astype(jnp.float32))
        if self.stride != 1 or x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), self.stride, name="shortcut", **conv)(x)
            x = nn.BatchNorm(name="shortcut_norm", **norm)(x.astype(jnp.float32))
        return nn.relu(y + x.astype(jnp.float32)).astype(self.dtype)


class ResNet18(nn.Module):
    """ResNet18 for small images: 3×3 stem, four stages of two `BasicBlock`s, global average pool, classifier."""

    alpha: int
    num_classes: int
    kernel_size: int = 3
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    dropout: float = 0.0  # on the classifier's input, its only dense layer, in training

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        x = x.astype(self.dtype)
        x = nn.Conv(
            self.alpha,
            (3, 3),
            1,
            ((1, 1), (1, 1)),
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="layer1",
        )(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=jnp.float32, name="norm1")(
            x.astype(jnp.float32)
        )
        x = nn.relu(x).astype(self.dtype)
        for stage, multiple in enumerate(STAGES, start=1):
            for block in range(1, BLOCKS_PER_STAGE + 1):
                stride = 2 if stage > 1 and block == 1 else 1
                x = BasicBlock(
                    self.alpha * multiple,
                    stride,
                    self.kernel_size,
                    self.dtype,
                    self.param_dtype,
                    name=f"stage{stage}_block{block}",
                )(x, train=train)
        x = x.astype(jnp.float32).mean(axis=(1, 2))
        if self.dropout > 0:
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="classifier")(x)
        return logits.astype(jnp.float32)
