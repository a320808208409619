"""Fast AutoAugment's Cutout follows the authors' size per dataset: 16 pixels for CIFAR, 20 for SVHN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blasso_jax.data import augment, autoaugment


@pytest.mark.parametrize("policy, side", [("fast_autoaugment_cifar", 16), ("fast_autoaugment_svhn", 20)])
def test_cutout_square_side_per_dataset(monkeypatch, policy, side):
    # The searched policy is not what is tested here: leave the images as they are.
    monkeypatch.setattr(autoaugment, "augment_batch_fast_autoaugment", lambda key, images, policy: images)
    images = jnp.full((256, 32, 32, 3), 255, jnp.uint8)  # 0.5 after normalising, the crop padding -0.5: never 0
    out = np.asarray(augment.prepare_batch(jax.random.key(0), images, policy, (0.5,) * 3, (1.0,) * 3))
    cut = (out == 0).all(axis=-1).sum(axis=(1, 2))
    # A square of side s around a uniform centre, clipped at the border: whole (s·s pixels) when the centre lies
    # s/2 or more inside every border, i.e. in (32 - s)² of the 32² centres (16², 12²); the chance that none of
    # 256 centres does is (1 - 144/1024)^256 < 1e-16.
    assert cut.max() == side * side
    assert cut.min() >= (side // 2) ** 2  # a centre in a corner keeps a (s/2)² quarter
