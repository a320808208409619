"""β-LASSO transforms against an independent plain-numpy Algorithm 1."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from optim_reference import (
    BETA,
    LR,
    STEPS,
    assert_histories_close,
    batches,
    cosine,
    initial_params,
    is_kernel,
    jax_loss,
    numpy_algorithm1,
    numpy_grad,
    per_layer_l1,
    run_optax,
)

import blasso_jax as bj


def test_blasso_equals_numpy_algorithm1_with_per_layer_l1_mask_and_schedule():
    with jax.enable_x64(True):
        l1 = {"layer1": 4e-4, "layer2": 2e-4, "norm1": 2e-4}  # a prefix tree of the params
        tx = bj.blasso(optax.cosine_decay_schedule(LR, STEPS), l1, BETA, mask=bj.kernel_mask)
        got = run_optax(tx)
        expected = numpy_algorithm1(per_layer_l1, BETA, cosine, is_kernel)
        assert_histories_close(got, expected)
        zeros = pruned = 0
        for params in got:
            for layer, name in [("layer1", "kernel"), ("layer2", "kernel")]:
                theta = np.abs(np.asarray(params[layer][name]))
                threshold = BETA * per_layer_l1(layer, name)
                assert not np.any((theta > 0) & (theta < threshold)), (layer, name)
                zeros += int(np.sum(theta == 0))
            pruned += int(np.sum(np.asarray(params["layer1"]["kernel"]) == 0))
        assert zeros > 0 and pruned > 0  # the threshold actually bit, or the test proves nothing
        # The BatchNorm scale and the bias are untouched by the L1 term and the threshold.
        np.testing.assert_array_equal(np.asarray(got[-1]["norm1"]["scale"]) == 0, False)


def test_zeroed_weights_can_regrow():
    with jax.enable_x64(True):
        got = run_optax(bj.blasso(LR, 1e-3, BETA))
        zero_before = [np.asarray(p["layer1"]["kernel"]) == 0 for p in got[:-1]]
        nonzero_after = [np.asarray(p["layer1"]["kernel"]) != 0 for p in got[1:]]
        assert any(np.any(z & n) for z, n in zip(zero_before, nonzero_after))


def test_beta_zero_is_sgd_with_l1_subgradient():
    with jax.enable_x64(True):
        got = run_optax(bj.blasso(LR, 1e-3, 0.0))
        expected = numpy_algorithm1(lambda *_: 1e-3, 0.0, lambda t: LR, lambda *_: True)
        assert_histories_close(got, expected)
        assert all(np.all(np.asarray(leaf) != 0) for leaf in jax.tree.leaves(got[-1]))


def test_l1_zero_is_plain_sgd():
    with jax.enable_x64(True):
        got = run_optax(bj.blasso(LR, 0.0, BETA))
        expected = run_optax(optax.sgd(LR))
        assert_histories_close(got, [jax.tree.map(np.asarray, p) for p in expected], atol=0)


def test_composes_with_clipping_chain():
    with jax.enable_x64(True):
        tx = optax.chain(optax.clip_by_global_norm(1.0), bj.blasso(LR, 1e-3, BETA))
        got = run_optax(tx)
        expected = numpy_algorithm1(lambda *_: 1e-3, BETA, lambda t: LR, lambda *_: True, clip=1.0)
        assert_histories_close(got, expected)


def test_inject_hyperparams_with_schedule_and_callable_mask():
    with jax.enable_x64(True):
        schedule = optax.cosine_decay_schedule(LR, STEPS)
        injected = optax.inject_hyperparams(bj.blasso, static_args=("mask",))(
            learning_rate=schedule, l1=3e-4, beta=BETA, mask=bj.kernel_mask
        )
        got = run_optax(injected)
        expected = numpy_algorithm1(lambda *_: 3e-4, BETA, cosine, is_kernel)
        assert_histories_close(got, expected)


def test_inject_hyperparams_beta_can_be_changed_in_the_state():
    with jax.enable_x64(True):
        tx = optax.inject_hyperparams(bj.blasso)(learning_rate=LR, l1=1e-3, beta=BETA)
        params = jax.tree.map(jnp.asarray, initial_params())
        state = tx.init(params)
        state.hyperparams["beta"] = jnp.asarray(0.0)
        grads = numpy_grad(initial_params(), batches(1)[0])
        updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.asarray, grads), state, params)
        expected = numpy_algorithm1(lambda *_: 1e-3, 0.0, lambda t: LR, lambda *_: True, steps=1)[0]
        assert_histories_close([optax.apply_updates(params, updates)], [expected])


def test_optax_masked_wrapper_leaves_other_leaves_to_the_raw_gradient():
    with jax.enable_x64(True):
        mask = {"layer1": {"kernel": True}, "layer2": {"kernel": False, "bias": False}, "norm1": {"scale": False}}
        got = run_optax(optax.masked(bj.blasso(LR, 1e-3, BETA), mask), steps=1)[0]
        grads = numpy_grad(initial_params(), batches(1)[0])
        expected = numpy_algorithm1(lambda *_: 1e-3, BETA, lambda t: LR, lambda layer, _: layer == "layer1", steps=1)[0]
        np.testing.assert_allclose(np.asarray(got["layer1"]["kernel"]), expected["layer1"]["kernel"], atol=1e-12)
        # optax.masked passes unmasked updates through: params + raw gradient.
        np.testing.assert_allclose(
            np.asarray(got["layer2"]["kernel"]),
            initial_params()["layer2"]["kernel"] + grads["layer2"]["kernel"],
            atol=1e-12,
        )


def test_flax_train_state_apply_gradients():
    with jax.enable_x64(True):
        tx = bj.blasso(LR, 1e-3, BETA, mask=bj.kernel_mask)
        state = train_state.TrainState.create(apply_fn=None, params=jax.tree.map(jnp.asarray, initial_params()), tx=tx)
        step = jax.jit(lambda s, b: s.apply_gradients(grads=jax.grad(jax_loss)(s.params, b)))
        for batch in batches(5):
            state = step(state, jax.tree.map(jnp.asarray, batch))
        expected = numpy_algorithm1(lambda *_: 1e-3, BETA, lambda t: LR, is_kernel, steps=5)[-1]
        assert_histories_close([state.params], [expected])
        assert int(state.step) == 5


def test_sharded_parameters_give_the_same_update_and_stay_sharded():
    assert jax.device_count() == 4, "conftest.py should provide 4 simulated CPU devices"
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rng = np.random.default_rng(3)
    params = {"layer1": {"kernel": jnp.asarray(0.05 * rng.standard_normal((64, 16)), jnp.float32)}}
    grads = {"layer1": {"kernel": jnp.asarray(rng.standard_normal((64, 16)), jnp.float32)}}
    tx = bj.blasso(0.01, 5e-4, BETA)
    expected = optax.apply_updates(params, tx.update(grads, tx.init(params), params)[0])
    sharding = NamedSharding(mesh, P("data"))
    sharded_params = jax.device_put(params, sharding)
    sharded_grads = jax.device_put(grads, sharding)

    @jax.jit
    def step(params, grads):
        updates, _ = tx.update(grads, tx.init(params), params)
        return optax.apply_updates(params, updates)

    got = step(sharded_params, sharded_grads)
    np.testing.assert_array_equal(np.asarray(got["layer1"]["kernel"]), np.asarray(expected["layer1"]["kernel"]))
    assert got["layer1"]["kernel"].sharding.is_equivalent_to(sharding, 2)
    assert np.any(np.asarray(got["layer1"]["kernel"]) == 0)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_hard_threshold_gives_exact_zeros_in_low_precision(dtype):
    rng = np.random.default_rng(4)
    params = jnp.asarray(rng.uniform(-0.1, 0.1, 4096), dtype)
    updates = jnp.asarray(rng.uniform(-0.02, 0.02, 4096), dtype)
    tx = bj.hard_threshold(0.03)
    new = optax.apply_updates(params, jax.jit(tx.update)(updates, tx.init(params), params)[0])
    magnitude = np.abs(np.asarray(new, np.float32))
    assert np.sum(magnitude == 0) > 100
    assert not np.any((magnitude > 0) & (magnitude < 0.03))
    # Entries above the threshold received their update unchanged.
    kept = magnitude >= 0.03
    plain = np.asarray(params + updates, np.float32)
    np.testing.assert_array_equal(np.asarray(new, np.float32)[kept], plain[kept])


def test_kernel_mask_layerwise_l1_and_counts_on_a_model():
    model = bj.create_model("s-fc", alpha=1, image_shape=(8, 8, 3))
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)["params"]
    mask = bj.kernel_mask(params)
    assert mask["layer1"] == {"kernel": True}
    assert mask["norm1"] == {"scale": False, "bias": False}
    assert mask["layer3"] == {"kernel": True, "bias": False}
    l1 = bj.layerwise_l1(params, first=2e-5, rest=1e-6)
    assert l1["layer1"]["kernel"] == 2e-5 and l1["layer2"]["kernel"] == 1e-6
    params = jax.tree.map(lambda x: x, params)
    params["layer2"]["kernel"] = params["layer2"]["kernel"].at[:3].set(0.0)
    counts = bj.nonzero_counts(params)
    assert list(counts) == ["layer1", "layer2", "layer3"]
    assert int(counts["layer2"]) == 16 * 24 - 3 * 24
    assert int(counts["layer1"]) == 192 * 16


def test_update_without_params_names_the_fix():
    tx = bj.blasso(0.1, 1e-3, BETA)
    with pytest.raises(ValueError, match="params"):
        tx.update({"w": jnp.ones(3)}, tx.init({"w": jnp.ones(3)}))
