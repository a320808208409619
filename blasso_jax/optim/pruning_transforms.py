"""Pruning as optax transforms: magnitude pruning at one step and iterative magnitude pruning with rewinding
(Frankle & Carbin 2019; Frankle et al. 2020), each wrapping any optimizer, as jaxpruner's `wrap_optax` does.

The mask lives in the optimizer state (`transforms.get_mask`, `transforms.set_mask`), so a checkpoint keeps it
and a resumed run continues bitwise, and the pruning events are timed by the state's count of updates, so any
training loop runs them. Kernels (leaves named `kernel`) are pruned, the first layer (`FIRST_LAYER`) to its own
density. Like `transforms.keep_mask`, the wrapped optimizer constrains `params + updates`, so it is the last
transform of a chain.

A rewind sets the parameters, which an update can only approach: after `optax.apply_updates` they lie within a
rounding of the rewound weights, and `rewound(params, opt_state)` then writes those weights exactly (the trainer's
step does).

    tx = iterative_pruning(optax.sgd(0.1, momentum=0.9), imp_plan(40, 0.1, 1.0, 0.5, rewind=1).in_steps(100))
    updates, opt_state = tx.update(grads, opt_state, params)
    params = rewound(optax.apply_updates(params, updates), opt_state)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from blasso_jax.optim.pruning import ImpPlan, check_density, keep_count, masks_by_count
from blasso_jax.optim.transforms import hold, keep_mask, kernel_mask

PyTree = Any


class MagnitudePruningState(NamedTuple):
    """`magnitude_pruning`'s state: the wrapped optimizer's, the updates taken, and the mask (as `keep_mask`'s)."""

    inner: Any
    count: jax.Array
    mask: PyTree


class IterativePruningState(NamedTuple):
    """`iterative_pruning`'s state: as `MagnitudePruningState`, plus the weights rounds rewind to and whether the
    last update ended a round (`rewound` then writes the rewound weights)."""

    inner: Any
    count: jax.Array
    mask: PyTree
    rewind: PyTree
    rewound: jax.Array


def _all_kept(params: PyTree) -> PyTree:
    """The mask before any pruning, as `keep_mask(kernel_mask)` starts: arrays of True on kernels, True elsewhere."""
    return keep_mask(kernel_mask).init(params).mask


def _stepped(params: PyTree, updates: PyTree) -> PyTree:
    """The parameters after these updates, as `optax.apply_updates` stores them."""
    return jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates)


def _as_state_mask(masks: PyTree, previous: PyTree) -> PyTree:
    """`pruning.masks_by_count`'s masks (None off the kernels) in the state's convention."""
    return jax.tree.map(lambda new, old: old if new is None else new, masks, previous, is_leaf=lambda x: x is None)


def _update_inner(inner: optax.GradientTransformation, updates, state, params):
    if params is None:
        raise ValueError("pruning transforms need the parameters: call update(updates, state, params).")
    updates, inner_state = inner.update(updates, state.inner, params)
    return hold(updates, params, state.mask), inner_state


def magnitude_pruning(
    inner: optax.GradientTransformation, step: int, density_first: float, density_rest: float
) -> optax.GradientTransformation:
    """`inner`, whose update number `step` prunes every kernel by magnitude to its density; from then on the pruned
    weights stay exactly 0 (fine-tuning under a fixed mask).

    Args:
      inner: the optimizer to wrap (e.g. `optax.sgd(...)`).
      step: after this many updates the parameters are pruned (>= 1).
      density_first: the share of the first layer's kernel kept, in (0, 1].
      density_rest: the share of every other kernel kept.

    Returns:
      An `optax.GradientTransformation` whose state is a `MagnitudePruningState`; its `update` needs `params`.

    Examples:
      >>> params = {"layer1": {"kernel": jnp.array([0.5, -2.0, 1.0, 0.1])}}
      >>> tx = magnitude_pruning(optax.sgd(0.1), step=2, density_first=0.5, density_rest=1.0)
      >>> state = tx.init(params)
      >>> for _ in range(3):
      ...     updates, state = tx.update({"layer1": {"kernel": jnp.ones(4)}}, state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> [round(v, 2) for v in params["layer1"]["kernel"].tolist()]
      [0.0, -2.3, 0.7, 0.0]
    """
    check_density("density_first", density_first)
    check_density("density_rest", density_rest)
    if step < 1:
        raise ValueError(f"magnitude_pruning: step must be >= 1, got {step}")

    def init_fn(params):
        return MagnitudePruningState(inner.init(params), jnp.zeros((), jnp.int32), _all_kept(params))

    def update_fn(updates, state, params=None):
        updates, inner_state = _update_inner(inner, updates, state, params)

        def prune(updates):
            count = lambda first, size: keep_count(density_first if first else density_rest, size)  # noqa: E731
            mask = _as_state_mask(masks_by_count(_stepped(params, updates), count), state.mask)
            return hold(updates, params, mask), mask

        updates, mask = jax.lax.cond(state.count == step - 1, prune, lambda u: (u, state.mask), updates)
        return updates, MagnitudePruningState(inner_state, state.count + 1, mask)

    return optax.GradientTransformation(init_fn, update_fn)


def iterative_pruning(inner: optax.GradientTransformation, plan: ImpPlan) -> optax.GradientTransformation:
    """`inner` under iterative magnitude pruning with rewinding, timed by `plan` in updates (`ImpPlan.in_steps`).

    After `plan.rewind` updates it keeps the weights; each of the `plan.rounds` updates that ends a segment (every
    `plan.segment` updates) prunes `plan.rate` of each kernel's survivors by magnitude (down to its density),
    rewinds every weight to the kept ones (survivors; pruned ones are 0) and clears the momentum of `inner`'s
    `optax.trace`, if any. Between rounds the pruned weights stay exactly 0.

    Args:
      inner: the optimizer to wrap.
      plan: `pruning.imp_plan(...)`, counted in updates.

    Returns:
      An `optax.GradientTransformation` whose state is an `IterativePruningState`; its `update` needs `params`.
      `rewound(params, opt_state)` after `optax.apply_updates` makes each rewind exact.
    """
    tables = {}  # (first layer, size) -> kept entries after r rounds, r = 0 … rounds (a Python count, as pruning's)

    def count(round_index, first, size):
        key = (first, size)
        if key not in tables:
            tables[key] = np.array([keep_count(plan.keep(r, first), size) for r in range(plan.rounds + 1)])
        return jnp.asarray(tables[key])[round_index]

    def init_fn(params):
        mask, false = _all_kept(params), jnp.zeros((), bool)
        return IterativePruningState(inner.init(params), jnp.zeros((), jnp.int32), mask, params, false)

    def update_fn(updates, state, params=None):
        updates, inner_state = _update_inner(inner, updates, state, params)
        # The weights after `plan.rewind` updates are the parameters this update starts from.
        rewind = jax.lax.cond(state.count == plan.rewind, lambda: params, lambda: state.rewind)
        done = state.count + 1
        round_index = done // plan.segment
        ends_round = (done % plan.segment == 0) & (round_index >= 1) & (round_index <= plan.rounds)

        def prune_and_rewind(updates, inner_state):
            within = jax.tree.map(lambda m, p: m if jnp.shape(m) == jnp.shape(p) else None, state.mask, params)
            found = masks_by_count(_stepped(params, updates), lambda f, s: count(round_index, f, s), within)
            mask = _as_state_mask(found, state.mask)
            target = _rewind_target(rewind, mask)
            return (
                jax.tree.map(lambda t, p, u: (t - p).astype(u.dtype), target, params, updates),
                _cleared(inner_state),
                mask,
            )

        updates, inner_state, mask = jax.lax.cond(
            ends_round, prune_and_rewind, lambda u, s: (u, s, state.mask), updates, inner_state
        )
        return updates, IterativePruningState(inner_state, done, mask, rewind, ends_round)

    return optax.GradientTransformation(init_fn, update_fn)


def _rewind_target(rewind: PyTree, mask: PyTree) -> PyTree:
    """The parameters a round leaves: the rewind weights, pruned ones at exactly 0."""
    return jax.tree.map(lambda r, m: jnp.where(m, r, jnp.zeros((), r.dtype)), rewind, mask)


def _cleared(inner_state: Any) -> Any:
    """`inner_state` with the momentum of its `optax.trace` set to 0 (unchanged without one)."""
    trace = optax.tree_utils.tree_get(inner_state, "trace")
    if trace is None:
        return inner_state
    return optax.tree_utils.tree_set(inner_state, trace=jax.tree.map(jnp.zeros_like, trace))


def rewound(params: PyTree, opt_state: Any) -> PyTree:
    """`params` after `optax.apply_updates`, with the weights of an `iterative_pruning` round written exactly when the
    update ended one (the update alone lands within a rounding of them); unchanged otherwise, and for optimizers
    without `iterative_pruning`."""
    state = next((s for s in _states(opt_state) if isinstance(s, IterativePruningState)), None)
    if state is None:
        return params
    return jax.lax.cond(state.rewound, lambda: _rewind_target(state.rewind, state.mask), lambda: params)


def _states(opt_state: Any) -> list[Any]:
    """Every state inside `opt_state` (chains nest tuples of them)."""
    if isinstance(opt_state, IterativePruningState):
        return [opt_state]
    if isinstance(opt_state, tuple):
        return [s for part in opt_state for s in _states(part)]
    return []
