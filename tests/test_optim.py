"""β-LASSO transforms against an independent plain-numpy Algorithm 1."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import blasso_jax as bj

STEPS = 60
BETA = 50.0
LR = 0.05


def initial_params(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {
        "layer1": {"kernel": 0.1 * rng.standard_normal((6, 4))},
        "layer2": {"kernel": 0.1 * rng.standard_normal((4, 3)), "bias": 0.1 * rng.standard_normal((1, 3))},
        "norm1": {"scale": 1.0 + 0.01 * rng.standard_normal((1, 4))},
    }


def batches(steps=STEPS):
    """Random least-squares problems ½‖A θ − Y‖² per leaf and step: gradient Aᵀ(Aθ − Y)."""
    rng = np.random.default_rng(1)
    return [
        jax.tree.map(
            lambda p: (rng.standard_normal((5, p.shape[0])), 0.3 * rng.standard_normal((5, p.shape[1]))),
            initial_params(),
        )
        for _ in range(steps)
    ]


def numpy_grad(params, batch):
    return jax.tree.map(
        lambda p, ab: ab[0].T @ (ab[0] @ p - ab[1]), params, batch, is_leaf=lambda x: isinstance(x, tuple)
    )


def jax_loss(params, batch):
    leaves = jax.tree.map(
        lambda p, ab: 0.5 * jnp.sum((ab[0] @ p - ab[1]) ** 2), params, batch, is_leaf=lambda x: isinstance(x, tuple)
    )
    return sum(jax.tree.leaves(leaves))


def cosine(step):
    return LR * 0.5 * (1 + math.cos(math.pi * step / STEPS))


def numpy_algorithm1(l1_of, beta, lr_of, masked_of, steps=STEPS, clip=None):
    """Algorithm 1 with plain numpy: θ ← θ − η(∇f + λ sign θ), then zero |θ| < βλ (masked leaves: plain SGD)."""
    params = initial_params()
    history = []
    for t, batch in enumerate(batches(steps)):
        grads = numpy_grad(params, batch)
        if clip is not None:
            norm = math.sqrt(sum(float(np.sum(g**2)) for g in jax.tree.leaves(grads)))
            scale = min(1.0, clip / norm)
            grads = jax.tree.map(lambda g, scale=scale: g * scale, grads)
        new = {}
        for layer, leaves in params.items():
            new[layer] = {}
            for name, theta in leaves.items():
                lam = l1_of(layer, name) if masked_of(layer, name) else 0.0
                theta = theta - lr_of(t) * (grads[layer][name] + lam * np.sign(theta))
                if masked_of(layer, name):
                    theta = np.where(np.abs(theta) < beta * lam, 0.0, theta)
                new[layer][name] = theta
        params = new
        history.append(params)
    return history


def run_optax(tx, steps=STEPS, jit=True):
    params = jax.tree.map(jnp.asarray, initial_params())
    state = tx.init(params)

    def step(params, state, batch):
        grads = jax.grad(jax_loss)(params, batch)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step) if jit else step
    history = []
    for batch in batches(steps):
        params, state = step(params, state, jax.tree.map(jnp.asarray, batch))
        history.append(params)
    return history


def assert_histories_close(got, expected, atol=1e-10):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=atol), g, e)


def is_kernel(layer, name):
    return name == "kernel"


def per_layer_l1(layer, name):
    return 4e-4 if layer == "layer1" else 2e-4


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


MOMENTUM_STEPS = 120


def numpy_momentum_blasso(l1_of, beta, lr_of, masked_of, momentum, nesterov=False, decoupled=False):
    """β-LASSO with a heavy-ball trace in plain numpy: d = g + λ sign θ (the sign outside the trace when
    decoupled), m ← d + μ m, θ ← θ − η (m, or d + μ m with Nesterov), then zero |θ| < βλ on masked leaves."""
    params = initial_params()
    trace = jax.tree.map(np.zeros_like, params)
    history = []
    for t, batch in enumerate(batches(MOMENTUM_STEPS)):
        grads = numpy_grad(params, batch)
        new, new_trace = {}, {}
        for layer, leaves in params.items():
            new[layer], new_trace[layer] = {}, {}
            for name, theta in leaves.items():
                lam = l1_of(layer, name) if masked_of(layer, name) else 0.0
                sign_term = lam * np.sign(theta)
                inside = grads[layer][name] + (0.0 if decoupled else sign_term)
                m = inside + momentum * trace[layer][name]
                step = (inside + momentum * m if nesterov else m) + (sign_term if decoupled else 0.0)
                theta = theta - lr_of(t) * step
                if masked_of(layer, name):
                    theta = np.where(np.abs(theta) < beta * lam, 0.0, theta)
                new[layer][name], new_trace[layer][name] = theta, m
        params, trace = new, new_trace
        history.append(params)
    return history


def momentum_cosine(step):
    return LR * 0.5 * (1 + math.cos(math.pi * step / MOMENTUM_STEPS))


def test_momentum_zero_is_algorithm1_bit_for_bit_with_the_same_state():
    l1 = {"layer1": 4e-4, "layer2": 2e-4, "norm1": 2e-4}
    schedule = optax.cosine_decay_schedule(LR, STEPS)
    old = optax.chain(
        bj.add_l1_sign(l1, mask=bj.kernel_mask),
        optax.sgd(schedule),
        bj.hard_threshold(jax.tree.map(lambda lam: BETA * lam, l1), mask=bj.kernel_mask),
    )
    expected = run_optax(old)
    for momentum in (0.0, None):
        tx = bj.blasso(schedule, l1, BETA, mask=bj.kernel_mask, momentum=momentum)
        assert_histories_close(run_optax(tx), [jax.tree.map(np.asarray, p) for p in expected], atol=0)
        params = jax.tree.map(jnp.asarray, initial_params())
        assert jax.tree.structure(tx.init(params)) == jax.tree.structure(old.init(params))


@pytest.mark.parametrize("nesterov,decoupled", [(False, False), (True, False), (False, True), (True, True)])
def test_momentum_blasso_equals_a_numpy_heavy_ball_over_120_steps_with_a_schedule(nesterov, decoupled):
    with jax.enable_x64(True):
        l1 = {"layer1": 4e-4, "layer2": 2e-4, "norm1": 2e-4}
        beta = 25.0
        schedule = optax.cosine_decay_schedule(LR, MOMENTUM_STEPS)
        tx = bj.blasso(schedule, l1, beta, bj.kernel_mask, momentum=0.9, nesterov=nesterov, decoupled=decoupled)
        got = run_optax(tx, steps=MOMENTUM_STEPS)
        expected = numpy_momentum_blasso(per_layer_l1, beta, momentum_cosine, is_kernel, 0.9, nesterov, decoupled)
        assert_histories_close(got, expected)
        # Exact zeros survive the trace: every pruned weight is exactly 0, none is left in (0, βλ).
        zeros = 0
        for params in got:
            for layer in ("layer1", "layer2"):
                theta = np.abs(np.asarray(params[layer]["kernel"]))
                assert not np.any((theta > 0) & (theta < beta * per_layer_l1(layer, "kernel"))), layer
                zeros += int(np.sum(theta == 0))
        assert zeros > 0  # the threshold bit, or the test proves nothing


def test_momentum_settings_that_mean_nothing_are_refused_in_one_line():
    for momentum, nesterov, decoupled, message in [
        (-0.1, False, False, r"momentum must be in \[0, 1\)"),
        (1.0, False, False, r"momentum must be in \[0, 1\)"),
        (0.0, True, False, "nesterov needs a momentum above 0"),
        (0.0, False, True, "decoupled L1 needs a momentum above 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            bj.blasso(LR, 1e-3, BETA, momentum=momentum, nesterov=nesterov, decoupled=decoupled)


def test_pull_matched_l1_keeps_the_accumulated_pull_of_a_steady_sign():
    """A weight that keeps its sign is pulled by η·λ per step without momentum and, at steady state, by
    η·λ'/(1−μ) with it: the rule's λ' makes the two equal."""
    lam = bj.pull_matched_l1(4e-4, momentum=0.9)
    assert lam == pytest.approx(4e-5, rel=1e-12)
    tx = bj.blasso(1.0, lam, 0.0, momentum=0.9)
    params = {"w": jnp.ones(1)}
    state = tx.init(params)
    for _ in range(400):  # 0.9**400 ≈ 5e-19: at steady state
        updates, state = tx.update({"w": jnp.zeros(1)}, state, params)
    # float32: two roundings a step (u = 2^-24 each) damped by 1 − μ leave 2u/(1 − μ) = 20u relative at steady state.
    assert float(-updates["w"][0]) == pytest.approx(4e-4, rel=64 * 2.0**-24)
