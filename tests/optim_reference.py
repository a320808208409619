"""The optimizer tests' independent references: β-LASSO in plain numpy (Algorithm 1, and with a heavy-ball
trace), the random least-squares problems both it and an optax transform are run on, and the runner for the
transform."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

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
