"""Ingrosso & Goldt's network and online training, run on device (their setting and inputs:
`blasso_jax.data.nlgp_online`).

Their code (`sgoldt/conv_emerge`: conv_emerge_online.py, network.py) trains ϕ(x) = Σ_k v_k·erf(h_k/√2),
h_k = w_k·x/√D + b_k, with the readout fixed at v_k = 1/K (their `--model mf`; their second output head is −ϕ
against the target −y, which leaves the MSE unchanged), MSE on y = ±1, plain SGD at the constant rate 0.05·K
with a fresh batch of one every step.

Here the loop runs on device: every `chunk` steps the inputs of the next `chunk` steps are drawn in one
matrix product, then a `lax.scan` takes the steps, and a `lax.fori_loop` runs as many chunks as the next
recording time needs (one compiled program for the whole run). Several runs that differ only in their
L1 strength λ and threshold factor β share one input stream and one initialisation and step together
(`vmap`): the first layer is updated by the library's `optim.blasso` (λ = β = 0 is plain SGD, bit for bit).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import optax

from blasso_jax.data.nlgp_online import OnlineSetting, draw
from blasso_jax.optim.transforms import blasso


def init_params(setting: OnlineSetting, key: jax.Array) -> dict[str, jax.Array]:
    """Their initialisation: kernel [D, K] ~ N(0, init_std²); bias ±bias_value (first half +, as theirs; zero
    for 'none'), ±1 when trained; readout 1/K, never trained."""
    kernel = setting.init_std * jax.random.normal(key, (setting.sites, setting.units))
    half = jnp.where(jnp.arange(setting.units) < setting.units // 2, 1.0, -1.0)
    scale = {"none": 0.0, "trained": 1.0, "fixed": setting.bias_value}[setting.bias]
    return {"kernel": kernel, "bias": scale * half, "readout": jnp.full(setting.units, 1.0 / setting.units)}


def predict(params: dict[str, jax.Array], x: jax.Array, train_bias: bool) -> jax.Array:
    """ϕ(x) = Σ_k v_k·erf(h_k/√2), h = x·W/√D + b, for x [..., D]; only the kernel (and a trained bias) carry
    gradients, as only their `fc1` (and trained `bias`) have requires_grad."""
    bias = params["bias"] if train_bias else jax.lax.stop_gradient(params["bias"])
    hidden = x @ params["kernel"] / math.sqrt(x.shape[-1]) + bias
    return jax.scipy.special.erf(hidden / math.sqrt(2)) @ jax.lax.stop_gradient(params["readout"])


def loss(params: dict[str, jax.Array], x: jax.Array, y: jax.Array, train_bias: bool) -> jax.Array:
    """Mean squared error against y = ±1 (their `F.mse_loss` over both heads equals it)."""
    return jnp.mean((predict(params, x, train_bias) - y) ** 2)


def optimizer(setting: OnlineSetting, l1: float | jax.Array, beta: float | jax.Array) -> optax.GradientTransformation:
    """The kernel steps with `optim.blasso(lr·K, λ, β)` (Algorithm 1; λ = β = 0: plain SGD); a trained bias with
    SGD at lr·K/D; the readout and a fixed bias never move."""
    bias = optax.sgd(setting.bias_lr) if setting.bias == "trained" else optax.set_to_zero()
    transforms = {"kernel": blasso(setting.kernel_lr, l1, beta), "bias": bias, "readout": optax.set_to_zero()}
    return optax.multi_transform(transforms, {"kernel": "kernel", "bias": "bias", "readout": "readout"})


@functools.partial(jax.jit, static_argnames="setting")
def advance(state, hyper, chol, key, first_chunk, chunks, nonlinear, *, setting: OnlineSetting):
    """`state` = (params, opt_state), stacked over runs, after `chunks` more chunks of steps from chunk
    `first_chunk`; `hyper` = (λ, β) [runs]; `nonlinear` as `draw`. Every run takes the same inputs."""
    train_bias = setting.bias == "trained"

    def one_step(carry, batch):
        x, y = batch

        def update(params, opt_state, l1, beta):
            grads = jax.grad(loss)(params, x, y, train_bias)
            updates, opt_state = optimizer(setting, l1, beta).update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        return jax.vmap(update)(*carry, *hyper), None

    def one_chunk(index, carry):
        first = (first_chunk + index) * setting.chunk
        batches = draw(chol, key, first, setting.chunk, setting.batch, setting.gain, nonlinear)
        return jax.lax.scan(one_step, carry, batches)[0]

    return jax.lax.fori_loop(0, chunks, one_chunk, state)


@jax.jit
def evaluate(params, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """MSE and accuracy (sign of ϕ against y, as their argmax over the two heads) per run of stacked `params`
    on x [n, D], y [n]."""

    def one(p):
        out = predict(p, x, True)
        return jnp.mean((out - y) ** 2), jnp.mean(jnp.sign(out) == y)

    return jax.vmap(one)(params)
