"""Model-sharded weights on 4 simulated CPU devices: equal results, 1/K of the bytes, checkpoints across meshes."""

from types import SimpleNamespace

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from blasso_jax.common import parallel
from blasso_jax.config import train_config as config_lib
from blasso_jax.data import datasets as data_lib
from blasso_jax.methods import registry as methods
from blasso_jax.models import networks as models
from blasso_jax.training import checkpoints, records, step

BETA, L1_FIRST, L1_REST = 5.0, 1e-3, 1e-4
# 16x16 images, the smallest D-FC takes (its total stride is 16): a quarter of 32x32's compute, the same layouts.
DATASET = data_lib.load_dataset(
    "synthetic", validation_size=0, synthetic_train_size=256, seed=0, synthetic_shape=(16, 16, 3)
)


def trained_state(model_name, data, model_parallel, *, epochs=2, method="blasso"):
    """The state after `epochs` epochs of the real epoch function on a (data, model) mesh of the first devices."""
    config = config_lib.preset(
        "smoke", model=model_name, batch_size=64, method=method, l1_first=L1_FIRST, l1_rest=L1_REST, beta=BETA
    )
    mesh = parallel.make_mesh(jax.devices()[: data * model_parallel], model_parallel)
    model = models.create_model(model_name, 1, 10, DATASET.image_shape)
    state = parallel.init_sharded(
        lambda key: step.create_train_state(model, DATASET.image_shape, methods.optimizer(config, 4), key),
        jax.random.key(0),
        mesh,
    )
    x = parallel.put_rows(DATASET.x_train, mesh)
    y = parallel.put_rows(DATASET.y_train.astype(np.int32), mesh)
    epoch = step.make_train_epoch(
        mesh, len(DATASET.x_train), "crop_flip", DATASET.mean, DATASET.std, **config.step_options()
    )
    for e in range(epochs):
        state, totals = epoch(state, x, y, jax.random.key(e))
        assert int(totals.examples) == 256
    return state, mesh


# Two layouts of one computation reduce in different orders. A float32 sum of L terms reordered differs by
# random-signed roundings, which grow as sqrt(L)·u (Higham & Mary 2019, probabilistic rounding error analysis)
# rather than the worst case L·u: at L = 768 (the largest fan-in here, the first layer's on 16x16x3 images) that
# is 3.3e-6 relative per reduction, 1.3e-5 over the 4 steps compared, so rtol 1e-4 holds with a 7x margin on any
# CPU. A discontinuous update would not: a weight
# that one layout puts 1e-7 below the threshold βλ and the other 1e-7 above it ends 2βλ apart, so the equality is
# checked with SGD (smooth in the weights) and β-LASSO's thresholding on shards on its own, exactly.
RTOL, ATOL = 1e-4, 1e-5


@pytest.mark.parametrize("model_name", ["s-fc", "d-fc"])
def test_model_sharded_equals_data_parallel(model_name):
    sharded, _ = trained_state(model_name, 2, 2, epochs=1, method="sgd")
    kernel = sharded.params["layer1"]["kernel"]
    assert kernel.sharding.spec == P(None, "model")  # the run really was model-sharded
    assert {s.data.shape for s in kernel.addressable_shards} == {(768, kernel.shape[1] // 2)}
    replicated, _ = trained_state(model_name, 4, 1, epochs=1, method="sgd")
    assert replicated.params["layer1"]["kernel"].sharding.is_fully_replicated
    a, b = (
        jax.device_get((sharded.params, sharded.batch_stats)),
        jax.device_get((replicated.params, replicated.batch_stats)),
    )
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=RTOL, atol=ATOL), a, b)
    initial = jax.device_get(trained_state(model_name, 8, 1, epochs=0)[0].params)
    moved = max(float(np.max(np.abs(u - v))) for u, v in zip(jax.tree.leaves(a[0]), jax.tree.leaves(initial)))
    assert moved > 100 * ATOL  # the epoch moved the weights far more than the tolerance


def test_blasso_thresholds_model_sharded_kernels_exactly():
    """After β-LASSO on a model-sharded mesh every kernel entry is exactly 0 or at least βλ in magnitude (the
    threshold is elementwise, so it holds on any CPU), and the first layer really was pruned on its shards."""
    state, _ = trained_state("s-fc", 2, 4, epochs=1)
    assert state.params["layer1"]["kernel"].sharding.spec == P(None, "model")
    params = jax.device_get(state.params)
    for layer, leaves in params.items():
        if "kernel" in leaves:
            magnitude = np.abs(leaves["kernel"])
            threshold = BETA * (L1_FIRST if layer == "layer1" else L1_REST)
            assert np.all((magnitude == 0) | (magnitude >= np.float32(threshold))), layer
    assert np.mean(params["layer1"]["kernel"] == 0) > 0.01


def test_each_device_holds_a_kth_of_the_kernels():
    state, mesh = trained_state("s-fc", 1, 4, epochs=1, method="sgd")  # SGD: a momentum per kernel too
    tree = (state.params, state.opt_state)
    total = sum(leaf.nbytes for leaf in jax.tree.leaves(tree))
    per_device = parallel.device_bytes(tree)
    assert len(per_device) == 4
    # Kernels split 4 ways; the classifier (10 outputs), BatchNorm and counters (< 1% here) are replicated.
    unsplit = sum(leaf.nbytes for leaf in jax.tree.leaves(tree) if leaf.sharding.is_fully_replicated)
    assert 0 < unsplit < 0.01 * total
    for device, held in per_device.items():
        assert held == (total - unsplit) // 4 + unsplit, device
        assert total / 4 <= held < 1.03 * total / 4  # held = total/4 + (3/4)·unsplit, and unsplit < 1 % of total


def test_blasso_update_on_shards_moves_nothing_between_devices():
    """The β-LASSO transforms are elementwise: on split kernels XLA compiles them without any collective."""
    config = config_lib.preset("smoke", l1_first=L1_FIRST, l1_rest=L1_REST, beta=BETA)
    mesh = parallel.make_mesh(jax.devices(), 4)
    model = models.create_model("s-fc", 1, 10, DATASET.image_shape)
    state = parallel.init_sharded(
        lambda key: step.create_train_state(model, DATASET.image_shape, methods.optimizer(config, 4), key),
        jax.random.key(0),
        mesh,
    )
    grads = jax.tree.map(lambda p: p * 0.5 + 1e-3, state.params)
    update = jax.jit(lambda s, g: s.apply_gradients(grads=g))
    hlo = update.lower(state, grads).compile().as_text()
    for collective in ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter"):
        assert collective not in hlo
    new = update(state, grads)
    assert new.params["layer1"]["kernel"].sharding.spec == P(None, "model")
    # The same update on one device's replicated copy gives the same numbers.
    single = jax.device_get(update(jax.device_get(state), jax.device_get(grads)).params)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(new.params), single)


def test_checkpoint_of_one_mesh_restores_under_another(tmp_path):
    saved, _ = trained_state("s-fc", 4, 1, epochs=1)
    manager = checkpoints.Checkpoints(tmp_path, keep=1)
    manager.save(1, saved)
    manager.close()
    target, mesh = trained_state("s-fc", 2, 2, epochs=0)
    manager = checkpoints.Checkpoints(tmp_path, keep=1)
    epoch, restored = manager.restore(target)
    manager.close()
    assert epoch == 1
    assert restored.params["layer1"]["kernel"].sharding == NamedSharding(mesh, P(None, "model"))
    jax.tree.map(
        np.testing.assert_array_equal,
        jax.device_get(checkpoints.checkpointed_tree(restored)),
        jax.device_get(checkpoints.checkpointed_tree(saved)),
    )


def test_mesh_rejects_a_model_axis_that_does_not_divide_the_devices():
    with pytest.raises(ValueError, match="model_parallel 3 does not divide the 4 devices; valid: 1, 2, 4"):
        parallel.make_mesh(model_parallel=3)
    with pytest.raises(ValueError, match="batch_size 10 is not divisible by the 4 devices of the data axis"):
        config_lib.preset("smoke", batch_size=10, model_parallel=2).validate(8)
    with pytest.raises(ValueError, match="batch_size 9 is not divisible by the 2 devices of the data axis"):
        config_lib.preset("smoke", batch_size=9, model_parallel=2).validate(4)


def test_partition_rule_splits_kernels_along_outputs_only():
    rule = parallel.partition_spec
    path = lambda *keys: tuple(jax.tree_util.DictKey(k) for k in keys)  # noqa: E731
    assert rule(path("layer1", "kernel"), np.zeros((3072, 256)), 4) == P(None, "model")
    assert rule(path("layer1", "kernel"), np.zeros((9, 9, 3, 8)), 4) == P(None, None, None, "model")
    assert rule(path("layer3", "kernel"), np.zeros((24, 10)), 4) == P()  # 10 outputs: not divisible
    assert rule(path("norm1", "scale"), np.zeros((256,)), 4) == P()
    assert rule(path("layer1", "kernel"), np.zeros((3072, 256)), 1) == P()


def test_locality_is_measured_once_on_a_replicated_kernel_and_equals_the_hosts_copy():
    # A computation on a replicated array runs on every device it is on: the trainer measures one copy.
    kernel = np.random.default_rng(0).standard_normal((8 * 8 * 3, 16)).astype(np.float32)
    mesh = parallel.make_mesh(jax.devices(), 2)
    replicated = jax.device_put(kernel, NamedSharding(mesh, P()))
    model_sharded = jax.device_put(kernel, NamedSharding(mesh, P(None, "model")))
    assert len(parallel.one_copy(replicated).devices()) == 1 and len(replicated.devices()) == jax.device_count() > 1
    assert parallel.one_copy(model_sharded) is model_sharded  # not whole on any one device: measured as it is
    dataset = SimpleNamespace(image_shape=(8, 8, 3), geometry=None)
    on_host = records.locality_summary(kernel, dataset, seed=0)
    assert records.locality_summary(replicated, dataset, seed=0) == on_host
    assert records.locality_summary(model_sharded, dataset, seed=0) == pytest.approx(on_host, rel=1e-6, nan_ok=True)
