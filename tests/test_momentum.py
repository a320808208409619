"""β-LASSO with momentum against a plain-numpy heavy ball: bit for bit Algorithm 1 at momentum 0, Nesterov and
the decoupled L1 over 120 steps with a schedule, exact zeros, refused settings and the pull-matched L1 rule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optim_reference import (
    BETA,
    LR,
    MOMENTUM_STEPS,
    STEPS,
    assert_histories_close,
    initial_params,
    is_kernel,
    momentum_cosine,
    numpy_momentum_blasso,
    per_layer_l1,
    run_optax,
)

import blasso_jax as bj


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
