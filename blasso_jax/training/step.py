"""The compiled part of training: train state, optimizer, one step, one epoch and evaluation.

Parallelism follows the JAX documentation's recommendation over `pmap`: a (data, model) device
mesh (`parallel.make_mesh`), each batch sharded along "data" and the train state replicated over
it, its kernels split along "model" when `model_parallel` > 1 (`parallel.state_shardings`). XLA
inserts the collectives, and BatchNorm sees the global batch, so statistics do not depend on the
device count. The uint8 training set lives on the devices, split by rows over "data"; each epoch
is shuffled, augmented and normalised there inside a `lax.scan` of `train_step` (on CPU, the same
step dispatched per batch on one CPU device: see `host_scan`), so the host syncs once per epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from blasso_jax.common import parallel, rng
from blasso_jax.data import augment
from blasso_jax.optim.pruning_transforms import rewound


class TrainState(train_state.TrainState):
    """flax's TrainState plus BatchNorm statistics."""

    batch_stats: Any

    def apply_gradients(self, *, grads: Any, **kwargs: Any) -> TrainState:
        """flax's update, then the weights an IMP round rewinds to written exactly (`pruning_transforms.rewound`)."""
        state = super().apply_gradients(grads=grads, **kwargs)
        return state.replace(params=rewound(state.params, state.opt_state))


class EpochTotals(NamedTuple):
    """Sums over one epoch's steps, reduced on device and fetched once."""

    loss: jax.Array
    correct: jax.Array
    examples: jax.Array
    first_nonfinite_step: jax.Array  # -1 when every step was finite
    skipped_steps: jax.Array


def create_train_state(
    model: nn.Module,
    image_shape: tuple[int, ...],
    make_tx: Callable[[Any], optax.GradientTransformation],
    key: jax.Array,
) -> TrainState:
    """Initial parameters, BatchNorm statistics and optimizer state from `key`; `make_tx(params)` builds the
    optimizer (β-LASSO's λ per layer needs the parameter tree: see `methods.optimizer`)."""
    variables = model.init(key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    tx = make_tx(variables["params"])
    return TrainState.create(
        apply_fn=model.apply, params=variables["params"], batch_stats=variables["batch_stats"], tx=tx
    )


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def train_step(
    state: TrainState, images: jax.Array, labels: jax.Array, dropout_key: jax.Array | None = None
) -> tuple[TrainState, jax.Array, jax.Array, jax.Array]:
    """One optimizer step on a normalised batch: `(new_state, mean loss, logits, finite)`.

    `finite` says whether the loss and every gradient are finite; the caller decides whether a
    non-finite step is kept (`make_train_epoch` never keeps one). `dropout_key` drives the model's
    dropout (needed only when its rate is above 0).
    """
    rngs = {} if dropout_key is None else {"dropout": dropout_key}

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
            rngs=rngs,
        )
        return _cross_entropy(logits, labels).mean(), (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
    return state.apply_gradients(grads=grads, batch_stats=batch_stats), loss, logits, finite


def _empty_totals() -> EpochTotals:
    return EpochTotals(
        loss=jnp.zeros((), jnp.float32),
        correct=jnp.zeros((), jnp.int32),
        examples=jnp.zeros((), jnp.int32),
        first_nonfinite_step=jnp.full((), -1, jnp.int32),
        skipped_steps=jnp.zeros((), jnp.int32),
    )


def make_train_epoch(
    mesh: jax.sharding.Mesh,
    num_examples: int,
    policy: str,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    batch_size: int,
    compute_dtype: Any = jnp.float32,
    skip_nonfinite: bool = False,
    host_loop: bool | None = None,
) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, EpochTotals]]:
    """A compiled `(state, x_uint8, y, key) -> (state, totals)` that runs one shuffled epoch on device.

    It shuffles, gathers, augments (`policy`) and normalises each batch and scans `train_step` over them:
    one `lax.scan` in one jit, or with `host_loop` (default: on one CPU device, see `host_scan`) the same
    step jitted once and dispatched per batch.
    `x` and `y` hold `num_examples` rows (plus padding), best split over "data" (`parallel.put_rows`);
    the state keeps the layout of `parallel.state_shardings`.
    Batches that do not fill `batch_size` are dropped, as usual. A step with a non-finite loss or
    gradient is never applied: with `skip_nonfinite` it is counted, otherwise the state freezes there
    and the caller stops the run. `TrainConfig.step_options()` gives the keyword arguments of a config.
    """
    steps = num_examples // batch_size
    replicated = NamedSharding(mesh, P())
    one_step = _epoch_step(mesh, policy, mean, std, batch_size, compute_dtype, skip_nonfinite)

    def plan(key):
        order = jax.random.permutation(rng.child(key, "order"), num_examples)[: steps * batch_size]
        step_keys = jax.vmap(jax.random.fold_in, (None, 0))(rng.child(key, "steps"), jnp.arange(steps))
        return order.reshape(steps, batch_size), step_keys, jnp.arange(steps)

    def finish(state, totals):
        state = jax.lax.with_sharding_constraint(state, parallel.state_shardings(state, mesh))
        return state, jax.lax.with_sharding_constraint(totals, replicated)

    if not _loops_on_host(mesh, host_loop):
        return jax.jit(
            lambda state, x, y, key: finish(*scan(one_step, (state, _empty_totals()), plan(key), (x, y))),
            donate_argnums=0,
        )
    plan, finish, loop = jax.jit(plan), jax.jit(finish, donate_argnums=(0, 1)), host_scan(one_step)
    return lambda state, x, y, key: finish(*loop((state, _empty_totals()), plan(key), (x, y)))


def _epoch_step(mesh, policy, mean, std, batch_size: int, compute_dtype: Any, skip_nonfinite: bool) -> Callable:
    """One step of an epoch as a scan body: gather the batch's rows, augment, train, and add to the totals."""

    def one_step(carry, inputs, data):
        state, totals = carry
        indices, key, step = inputs
        x, y = data
        images = parallel.gather_rows(x, indices, mesh)
        labels = parallel.gather_rows(y, indices, mesh)
        images = augment.prepare_batch(key, images, policy, mean, std, compute_dtype)
        # Dropout has its own stream of the step key: deterministic (a resumed run repeats it) and
        # independent of the augmentation's.
        new_state, loss, logits, finite = train_step(state, images, labels, rng.child(key, "dropout"))
        apply = finite if skip_nonfinite else finite & (totals.first_nonfinite_step < 0)
        state = jax.tree.map(lambda new, old: jnp.where(apply, new, old), new_state, state)
        # The carry keeps the state's layout, so split kernels are never gathered whole.
        state = jax.lax.with_sharding_constraint(state, parallel.state_shardings(state, mesh))
        totals = EpochTotals(
            loss=totals.loss + jnp.where(apply, loss, 0.0),
            correct=totals.correct + jnp.where(apply, jnp.sum(jnp.argmax(logits, -1) == labels), 0),
            examples=totals.examples + jnp.where(apply, batch_size, 0),
            first_nonfinite_step=jnp.where(
                (totals.first_nonfinite_step < 0) & ~finite, step, totals.first_nonfinite_step
            ),
            skipped_steps=totals.skipped_steps + (~finite).astype(jnp.int32),
        )
        return state, totals

    return one_step


def pad_for_eval(x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pads an eval split to whole batches; padded labels are -1 and count for nothing."""
    padded = -(-len(x) // batch_size) * batch_size
    x_pad = np.zeros((padded, *x.shape[1:]), x.dtype)
    y_pad = np.full((padded,), -1, np.int32)
    x_pad[: len(x)], y_pad[: len(y)] = x, y
    return x_pad, y_pad


def make_evaluate(
    mesh: jax.sharding.Mesh,
    batch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    compute_dtype: Any = jnp.float32,
    host_loop: bool | None = None,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """A compiled `(state, x_padded, y_padded) -> (correct, loss_sum)` over a padded split (`host_loop` as
    `make_train_epoch`)."""
    batch_sharding = NamedSharding(mesh, P("data"))

    def body(totals, batch, state):
        images, labels = (jax.lax.with_sharding_constraint(a, batch_sharding) for a in batch)
        logits = state.apply_fn(
            {"params": state.params, "batch_stats": state.batch_stats},
            augment.normalize(images, mean, std, compute_dtype),
            train=False,
        )
        valid = labels >= 0
        correct = jnp.sum((jnp.argmax(logits, -1) == labels) & valid)
        loss = jnp.sum(jnp.where(valid, _cross_entropy(logits, jnp.maximum(labels, 0)), 0.0))
        return totals[0] + correct, totals[1] + loss

    def batches(x, y):
        return x.reshape(-1, batch_size, *x.shape[1:]), y.reshape(-1, batch_size)

    def zeros():
        return jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)

    if not _loops_on_host(mesh, host_loop):
        return jax.jit(lambda state, x, y: scan(body, zeros(), batches(x, y), state))
    loop, batches = host_scan(body), jax.jit(batches)
    return lambda state, x, y: loop(zeros(), batches(x, y), state)


def scan(body: Callable, carry: Any, xs: Any, consts: Any) -> Any:
    """`carry` after `body(carry, x, consts)` for each x along the leading axis of `xs`: a `lax.scan`."""
    return jax.lax.scan(lambda c, x: (body(c, x, consts), None), carry, xs)[0]


def host_scan(body: Callable) -> Callable[[Any, Any, Any], Any]:
    """`scan`, with one jitted `body` dispatched per element from Python (asynchronously: no host sync).

    XLA:CPU runs convolutions inside a while loop (a `lax.scan`) several times slower than outside one:
    a ResNet18 α=4 step on 512 images took 3.7 s in a scan and 0.45 s on its own on 2 cores.
    """
    step = jax.jit(lambda carry, xs, i, consts: body(carry, jax.tree.map(lambda a: a[i], xs), consts), donate_argnums=0)

    def loop(carry, xs, consts):
        for i in range(len(jax.tree.leaves(xs)[0])):
            carry = step(carry, xs, i, consts)
        return carry

    return loop


def _loops_on_host(mesh: jax.sharding.Mesh, host_loop: bool | None) -> bool:
    """`host_loop`, or by default whether the mesh is one CPU device (see `host_scan`).

    Several CPU devices (forced host devices, gloo processes) keep the scan: programs with collectives
    dispatched back to back can deadlock XLA:CPU's in-process rendezvous (seen with 8 forced devices).
    """
    if host_loop is not None:
        return host_loop
    return mesh.devices.size == 1 and mesh.devices.flat[0].platform == "cpu"
