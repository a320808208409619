"""ResNet18 with large kernels (Figure 5): its size against the formula, training, and what β-LASSO prunes."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import blasso_jax as bj
from blasso_jax.config import train_config as config_lib
from blasso_jax.training import train


def reference_count(kernel_size, width=64, classes=10):
    """All parameters of a CIFAR ResNet18 written out: 3x3 stem, BasicBlocks [2, 2, 2, 2] with k×k convs, 1x1
    projection shortcuts where the shape changes, BatchNorm scale and offset, a linear classifier with bias."""
    total = 3 * 3 * 3 * width + 2 * width
    channels_in = width
    for multiple in (1, 2, 4, 8):
        channels = width * multiple
        for _ in range(2):
            total += kernel_size**2 * channels_in * channels + 2 * channels  # conv1 + BN
            total += kernel_size**2 * channels * channels + 2 * channels  # conv2 + BN
            if channels_in != channels:
                total += channels_in * channels + 2 * channels  # 1x1 shortcut + BN
            channels_in = channels
    return total + channels_in * classes + classes


def params_of(kernel_size, alpha=64, classes=10, shape=(32, 32, 3)):
    model = bj.create_model("resnet18", alpha, classes, shape, kernel_size=kernel_size)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False))["params"]


def test_standard_resnet18_count_and_growth_with_the_kernel():
    assert reference_count(3) == 11_173_962  # the standard CIFAR ResNet18, as published
    for kernel_size, alpha in ((3, 64), (7, 64), (15, 64), (5, 8)):
        assert bj.count_params(params_of(kernel_size, alpha), kernels_only=False) == reference_count(kernel_size, alpha)
    # Only the blocks' convolutions grow, as k²: the stem, shortcuts and classifier keep their size.
    block_3x3 = (reference_count(5) - reference_count(3)) / (25 - 9)
    assert reference_count(15) - reference_count(3) == block_3x3 * (225 - 9)
    stem = params_of(15)["layer1"]["kernel"].shape
    shortcut = params_of(15)["stage2_block1"]["shortcut"]["kernel"].shape
    assert stem == (3, 3, 3, 64) and shortcut == (1, 1, 64, 128)


def test_resnet18_rejects_bad_kernel_sizes_and_image_sides():
    with pytest.raises(ValueError, match="kernel_size"):
        bj.create_model("resnet18", 8, 10, (32, 32, 3), kernel_size=4)
    with pytest.raises(ValueError, match="divisible by 8"):
        bj.create_model("resnet18", 8, 10, (28, 30, 3))
    with pytest.raises(ValueError, match="kernel_size"):
        config_lib.preset("smoke", model="resnet18", kernel_size=17).validate()


def test_resnet18_trains_on_the_four_device_mesh(tmp_path):
    assert jax.device_count() == 4
    config = config_lib.preset(
        "smoke",
        model="resnet18",
        alpha=2,
        kernel_size=5,
        epochs=1,
        synthetic_shape=(8, 8, 3),
        synthetic_train_size=192,
        synthetic_test_size=64,
        validation_size=64,
    )
    results = train.train_and_evaluate(config, tmp_path / "run")
    assert results["epochs"] == 1 and np.isfinite(results["description_length"]["bits"])
    assert set(results["nonzero_per_layer"]) >= {
        "layer1",
        "stage4_block2/conv2",
        "stage2_block1/shortcut",
        "classifier",
    }


def test_blasso_prunes_resnet_kernels_and_leaves_batchnorm_alone():
    model = bj.create_model("resnet18", 4, 10, (16, 16, 3), kernel_size=3)
    params = jax.jit(lambda key: model.init(key, jnp.zeros((1, 16, 16, 3)), train=False))(jax.random.key(0))["params"]
    mask = bj.kernel_mask(params)
    flat = {"/".join(str(k.key) for k in path): on for path, on in jax.tree_util.tree_flatten_with_path(mask)[0]}
    assert all(on == name.endswith("kernel") for name, on in flat.items())
    assert any("norm" in name for name in flat) and any("shortcut_norm" in name for name in flat)
    # A threshold above every initial weight: one β-LASSO step zeroes every kernel, and no BatchNorm entry.
    tx = bj.blasso(learning_rate=0.0, l1=1.0, beta=10.0, mask=bj.kernel_mask)
    updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    new = optax.apply_updates(params, updates)
    for path, leaf in jax.tree_util.tree_flatten_with_path(new)[0]:
        name = "/".join(str(k.key) for k in path)
        if name.endswith("kernel"):
            assert not np.any(np.asarray(leaf)), name
        else:
            np.testing.assert_array_equal(leaf, _leaf(params, path))


def _leaf(tree, path):
    for key in path:
        tree = tree[key.key]
    return tree
