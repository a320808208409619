"""β-LASSO (Algorithm 1 of Neyshabur, 2020) as composable optax transforms.

One β-LASSO step is θ ← θ − η(∇f(θ) + λ·sign(θ)), with the sign taken before the step, followed by
θ ← θ·1(|θ| ≥ βλ). The threshold βλ is not scaled by η, and pruned entries are exactly zero (they
may regrow on later steps). In optax terms::

    blasso(η, λ, β) == chain(add_l1_sign(λ), sgd(η), hard_threshold(β·λ))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from blasso_jax.models.counting import FIRST_LAYER

PyTree = Any
# A float, or a pytree of floats with the structure of the parameters (or a prefix of it).
ScalarTree = float | jax.Array | PyTree
# As optax's own `mask` arguments: None (every leaf), a pytree of bools, or a function of params.
Mask = optax.MaskOrFn


def _broadcast_to_params(prefix: PyTree, params: PyTree) -> PyTree:
    """Expands a scalar or a prefix tree of `params` to one leaf per parameter leaf."""
    return jax.tree.map(lambda value, subtree: jax.tree.map(lambda _: value, subtree), prefix, params)


def _leafwise(
    transform: Callable[[jax.Array, jax.Array, Any], jax.Array],
    hyperparam: ScalarTree,
    mask: Mask,
    updates: PyTree,
    params: PyTree,
) -> PyTree:
    """Applies `transform(update, param, value)` where `mask` holds, and passes updates through elsewhere."""
    if params is None:
        raise ValueError("β-LASSO transforms need the parameters: call update(updates, state, params).")
    if mask is None:
        mask = True
    elif callable(mask):
        mask = mask(params)
    values = _broadcast_to_params(hyperparam, params)
    selected = _broadcast_to_params(mask, params)
    return jax.tree.map(
        lambda u, p, value, on: transform(u, p, value) if on else u,
        updates,
        params,
        values,
        selected,
    )


def add_l1_sign(l1: ScalarTree, mask: Mask = None) -> optax.GradientTransformation:
    """Adds `l1 * sign(params)`, the L1 subgradient, to the updates (the gradients).

    Args:
      l1: λ, a float or a pytree of floats matching (a prefix of) the parameters, e.g. one λ for
        the first layer and one for the rest.
      mask: None for every leaf, a pytree of bools, or a function of the params returning one.

    Returns:
      A stateless `optax.GradientTransformation`; its `update` needs `params`.

    Examples:
      >>> import jax.numpy as jnp
      >>> tx = add_l1_sign(0.1)
      >>> updates, _ = tx.update({"w": jnp.zeros(3)}, tx.init({"w": jnp.zeros(3)}), {"w": jnp.array([-2.0, 0.0, 3.0])})
      >>> updates["w"].tolist()
      [-0.10000000149011612, 0.0, 0.10000000149011612]
    """

    def update_fn(updates, state, params=None):
        updates = _leafwise(
            lambda u, p, lam: u + jnp.asarray(lam, u.dtype) * jnp.sign(p).astype(u.dtype),
            l1,
            mask,
            updates,
            params,
        )
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def hard_threshold(threshold: ScalarTree, mask: Mask = None) -> optax.GradientTransformation:
    """Rewrites updates so that `params + updates` is exactly 0 wherever its magnitude is below `threshold`.

    Like `optax.keep_params_nonnegative`, it constrains the parameters after the step, so it must be
    the last transform of a chain. The test uses the new parameters in their own dtype, as
    `optax.apply_updates` will store them, and `p + (-p)` is exactly +0 in IEEE arithmetic.

    Args:
      threshold: a float or a pytree of floats matching (a prefix of) the parameters.
      mask: None for every leaf, a pytree of bools, or a function of the params returning one.

    Returns:
      A stateless `optax.GradientTransformation`; its `update` needs `params`.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.array([0.5, 0.05, -0.5])}
      >>> tx = hard_threshold(0.1)
      >>> updates, _ = tx.update({"w": jnp.array([0.0, 0.01, 0.45])}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)["w"].tolist()
      [0.5, 0.0, 0.0]
    """

    def prune(u, p, t):
        new_param = (p + u).astype(p.dtype)
        return jnp.where(jnp.abs(new_param) < t, -p.astype(u.dtype), u)

    def update_fn(updates, state, params=None):
        return _leafwise(prune, threshold, mask, updates, params), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def check_momentum(momentum: float, nesterov: bool = False, decoupled: bool = False) -> None:
    """Raises ValueError, in one line, on a momentum setting `blasso` and `optax.trace` cannot mean."""
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1) (0: none, as the paper's Algorithm 1), got {momentum}")
    for name, on in (("nesterov", nesterov), ("decoupled L1", decoupled)):
        if on and momentum == 0:
            raise ValueError(f"{name} needs a momentum above 0; it changes nothing without one")


def blasso(
    learning_rate: optax.ScalarOrSchedule,
    l1: ScalarTree,
    beta: float,
    mask: Mask = None,
    momentum: float | jax.Array | None = None,
    nesterov: bool = False,
    decoupled: bool = False,
) -> optax.GradientTransformation:
    """β-LASSO: SGD on the loss plus λ‖θ‖₁, then pruning of every |θ| < βλ (Algorithm 1), optionally with momentum.

    `beta=0` is SGD with an L1 subgradient, `l1=0` plain SGD, no momentum (None or 0) the paper's Algorithm 1.
    Momentum μ follows `optax.trace` with the L1 sign inside the trace, m ← g + λ·sign(θ) + μ·m, θ ← θ − η·m
    (Nesterov: θ ← θ − η·(g + λ·sign(θ) + μ·m)), then zeroes every |θ| < βλ (βλ not scaled by η); a steady pull
    then adds up to λ/(1−μ) a step (`pull_matched_l1`). `decoupled=True` adds the sign after the trace instead,
    as AdamW decouples weight decay: θ ← θ − η·(m + λ·sign(θ)) with m ← g + μ·m.

    Args:
      learning_rate: η, a float or an optax schedule of the step count.
      l1: λ, a float or a pytree of floats (see `add_l1_sign`); the threshold is β·λ per leaf.
      beta: β ≥ 0.
      mask: where β-LASSO applies (the trainer passes `kernel_mask`); elsewhere (momentum) SGD.
      momentum: μ in [0, 1), the decay of the trace; None or 0 for none. An array (as `optax.inject_hyperparams`
        makes of a number) always builds the trace, so that the state keeps one structure when μ is changed.
      nesterov: Nesterov momentum (needs μ > 0).
      decoupled: the L1 sign after the momentum trace instead of inside it (needs μ > 0).

    Returns:
      `optax.chain(add_l1_sign(l1), optax.sgd(learning_rate, momentum), hard_threshold(beta * l1))` (the trace
      before `add_l1_sign` when decoupled); stateless for μ = 0 but for the schedule's step count.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.array([1.0, 0.004, -0.3])}
      >>> tx = blasso(learning_rate=0.1, l1=1e-3, beta=50.0)  # prunes |θ| < 0.05
      >>> updates, _ = tx.update({"w": jnp.array([0.0, 0.0, -2.0])}, tx.init(params), params)
      >>> [round(v, 4) for v in optax.apply_updates(params, updates)["w"].tolist()]
      [0.9999, 0.0, -0.0999]
      >>> tx = blasso(learning_rate=0.1, l1=1e-3, beta=50.0, momentum=0.9)
      >>> state = tx.init(params)
      >>> for _ in range(2):  # the second step moves 1.9× as far: m = g + 0.9·m
      ...     updates, state = tx.update({"w": jnp.array([0.0, 0.0, -2.0])}, state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> [round(v, 4) for v in params["w"].tolist()]
      [0.9997, 0.0, 0.2803]
    """
    if not isinstance(momentum, jax.Array):
        momentum = momentum or 0.0
        check_momentum(momentum, nesterov, decoupled)
    l1_sign, threshold = add_l1_sign(l1, mask=mask), hard_threshold(jax.tree.map(lambda lam: beta * lam, l1), mask)
    if isinstance(momentum, float | int) and momentum == 0:  # Algorithm 1 bit for bit, with the state it always had
        return optax.chain(l1_sign, optax.sgd(learning_rate), threshold)
    if decoupled:
        trace = optax.trace(decay=momentum, nesterov=nesterov)
        return optax.chain(trace, l1_sign, optax.scale_by_learning_rate(learning_rate), threshold)
    return optax.chain(l1_sign, optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov), threshold)


def pull_matched_l1(l1: ScalarTree, momentum: float, reference_momentum: float = 0.0) -> ScalarTree:
    """λ for momentum μ that keeps the accumulated L1 pull of λ at `reference_momentum` μ₀: λ·(1−μ)/(1−μ₀).

    With the sign inside the trace a steady pull λ adds up to λ/(1−μ) per step, so λ/(1−μ) is held constant (the
    L1 term's total over a run, which the paper's λ grid was tuned for). A decoupled L1 needs no such rule.

    Examples:
      >>> round(pull_matched_l1(4e-4, momentum=0.9), 12)
      4e-05
    """
    check_momentum(momentum)
    check_momentum(reference_momentum)
    return jax.tree.map(lambda lam: lam * (1 - momentum) / (1 - reference_momentum), l1)


def _path_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(entry, "key", entry)) for entry in path)


def kernel_mask(params: PyTree) -> PyTree:
    """True on weight matrices and filters (leaves named `kernel`), False on biases and BatchNorm.

    Args:
      params: a flax parameter tree.

    Returns:
      A pytree of bools with the structure of `params`, usable as an optax `mask`.

    Examples:
      >>> kernel_mask({"layer1": {"kernel": 0.0}, "norm1": {"scale": 1.0, "bias": 0.0}})
      {'layer1': {'kernel': True}, 'norm1': {'bias': False, 'scale': False}}
    """
    return jax.tree_util.tree_map_with_path(lambda path, _: _path_names(path)[-1] == "kernel", params)


def layerwise_l1(params: PyTree, first: float, rest: float, first_layer: str = FIRST_LAYER) -> PyTree:
    """λ per leaf: `first` for the first (convolution-like) layer and `rest` for every other leaf.

    The paper tunes these two separately: "higher λ for the layer that corresponds to the
    convolution improves the performance".

    Args:
      params: a flax parameter tree whose top-level keys are layer names.
      first: λ of `first_layer`.
      rest: λ of every other leaf.
      first_layer: the name of the first layer.

    Returns:
      A pytree of floats with the structure of `params`, for `add_l1_sign` or `blasso`.

    Examples:
      >>> layerwise_l1({"layer1": {"kernel": 0.0}, "layer2": {"kernel": 0.0}}, first=2e-5, rest=5e-6)
      {'layer1': {'kernel': 2e-05}, 'layer2': {'kernel': 5e-06}}
    """
    return jax.tree_util.tree_map_with_path(
        lambda path, _: first if _path_names(path)[0] == first_layer else rest, params
    )


class MaskState(NamedTuple):
    """`keep_mask`'s state: per parameter leaf, a bool array (False: held at exactly 0) or a bool scalar True."""

    mask: PyTree


def keep_mask(mask: Mask = None) -> optax.GradientTransformation:
    """Holds every weight whose mask entry is False at exactly 0: the fixed mask of pruned or masked retraining.

    The mask lives in the state (all True at `init` on the leaves `mask` selects), so a run sets it when it
    prunes (`set_mask`) and a checkpoint keeps it. Like `hard_threshold` it constrains `params + updates`, so
    it must be the last transform of a chain; `p + (-p)` is exactly +0.

    Args:
      mask: the leaves that may be masked: None for every leaf, a pytree of bools, or a function of the params.

    Returns:
      An `optax.GradientTransformation` whose state is a `MaskState`; its `update` needs `params`.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.array([0.5, 0.0, -0.5])}
      >>> tx = keep_mask()
      >>> state = set_mask(tx.init(params), {"w": jnp.array([True, False, False])})
      >>> updates, _ = tx.update({"w": jnp.array([0.1, 0.2, 0.1])}, state, params)
      >>> optax.apply_updates(params, updates)["w"].tolist()
      [0.6000000238418579, 0.0, 0.0]
    """

    def init_fn(params):
        selected = _broadcast_to_params(True if mask is None else mask(params) if callable(mask) else mask, params)
        return MaskState(
            jax.tree.map(lambda p, on: jnp.ones(jnp.shape(p), bool) if on else jnp.ones((), bool), params, selected)
        )

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("keep_mask needs the parameters: call update(updates, state, params).")
        return hold(updates, params, state.mask), state

    return optax.GradientTransformation(init_fn, update_fn)


def hold(updates: PyTree, params: PyTree, mask: PyTree) -> PyTree:
    """`updates` that keep every weight whose `mask` entry is False at exactly 0 (`p + (-p)` is +0)."""
    return jax.tree.map(lambda u, p, m: jnp.where(m, u, -p.astype(u.dtype)), updates, params, mask)


def set_mask(opt_state: Any, masks: PyTree) -> Any:
    """`opt_state` with the mask of its `keep_mask` replaced by `masks` (bool arrays, or None to keep a leaf's).

    Examples:
      >>> import jax.numpy as jnp
      >>> state = keep_mask().init({"w": jnp.ones(2)})
      >>> set_mask(state, {"w": jnp.array([False, True])}).mask["w"].tolist()
      [False, True]
    """
    current = optax.tree_utils.tree_get(opt_state, "mask")
    new = jax.tree.map(lambda old, m: old if m is None else jnp.asarray(m, bool), current, masks, is_leaf=_is_none)
    return optax.tree_utils.tree_set(opt_state, mask=new)


def get_mask(opt_state: Any) -> PyTree:
    """The mask of the `keep_mask` (or pruning transform) inside `opt_state`."""
    return optax.tree_utils.tree_get(opt_state, "mask")


def _is_none(leaf: Any) -> bool:
    return leaf is None
