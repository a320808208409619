"""What the masked methods do beyond an optimizer: retraining under a finished run's first-layer mask (as it is,
or pixel-shuffled per unit), magnitude pruning with fine-tuning, and iterative magnitude pruning with rewinding.

Each function here is one part of a `methods.Method` entry: an optimizer factory, a `start` hook (the state a
run starts from) or a `prune` wrapper (`blasso_jax.optim.pruning_transforms`: pruning events timed by the step
count). The masks live in the optimizer state, so checkpoints keep them and a resumed run continues bitwise.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from blasso_jax.common import rng
from blasso_jax.config.train_config import TrainConfig
from blasso_jax.models.counting import FIRST_LAYER
from blasso_jax.optim import pruning, pruning_transforms
from blasso_jax.optim import transforms as optim

PyTree = Any


def sgd(config: TrainConfig, schedule: optax.Schedule, momentum: float) -> optax.GradientTransformation:
    """The SGD baseline: weight decay on the kernels, optional (Nesterov) momentum (the method's, resolved by
    `methods.momentum`)."""
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=optim.kernel_mask),
        optax.sgd(schedule, momentum=momentum or None, nesterov=config.nesterov),
    )


def masked_sgd(config: TrainConfig, schedule: optax.Schedule, momentum: float) -> optax.GradientTransformation:
    """SGD whose masked-out kernel entries stay exactly 0 (the mask starts all True; pruning sets it)."""
    return optax.chain(sgd(config, schedule, momentum), optim.keep_mask(optim.kernel_mask))


def source_path(config: TrainConfig) -> str:
    """The run whose first-layer mask a masked retraining keeps: `mask_source` with `{seed}` replaced."""
    if not config.mask_source:
        raise ValueError(
            f"method {config.method} needs --mask_source, a finished run (e.g. a β-LASSO run) whose final "
            "first-layer mask it keeps; '{seed}' in it stands for this run's seed"
        )
    return config.mask_source.replace("{seed}", str(config.seed))


def start_from_source_mask(shuffle: bool):
    """The `start` hook of (shuffled) masked retraining: the freshly initialised weights (the same as the source's
    for the same seed: a rewind to its initialisation) under the source's final first-layer mask, shuffled per
    unit with `shuffle`."""

    def start(config: TrainConfig, state: Any, source: dict[str, Any], image_shape: tuple[int, ...]) -> Any:
        kernel = state.params[FIRST_LAYER]["kernel"]
        source_kernel = source["params"][FIRST_LAYER]["kernel"]
        if source["model"] != config.model or source_kernel.shape != kernel.shape:
            raise ValueError(
                f"mask_source {source_path(config)} trained {source['model']} with a first layer of shape "
                f"{tuple(source_kernel.shape)}; this run's {config.model} has {tuple(kernel.shape)}"
            )
        mask = jnp.asarray(source_kernel) != 0
        if shuffle:
            if kernel.ndim != 2:
                raise ValueError(f"shuffled_mask_retrain needs a dense first layer; {config.model}'s is not")
            mask = pruning.shuffle_unit_masks(mask, image_shape, rng.child(rng.init_key(config.seed), "shuffle_mask"))
        masks = jax.tree.map(lambda _: None, state.params)
        masks[FIRST_LAYER]["kernel"] = mask
        return _apply_masks(state, masks)

    return start


def _apply_masks(state: Any, masks: PyTree) -> Any:
    """`state` with its parameters zeroed and its `keep_mask` set where `masks` (None: leave the leaf) is False."""

    def zero(param, mask):
        return param if mask is None else jnp.where(mask, param, jnp.zeros((), param.dtype))

    params = jax.tree.map(zero, state.params, masks, is_leaf=lambda leaf: leaf is None)
    return state.replace(params=params, opt_state=optim.set_mask(state.opt_state, masks))


def check_magnitude(config: TrainConfig) -> None:
    """Magnitude pruning's fields: its densities, and a fine-tuning shorter than the run."""
    pruning.check_density("density_first", config.density_first)
    pruning.check_density("density_rest", config.density_rest)
    if config.finetune_epochs >= config.epochs:
        raise ValueError(
            f"magnitude: finetune_epochs {config.finetune_epochs} leaves no epoch of training before pruning "
            f"in {config.epochs} epochs; choose 1 to {config.epochs - 1}"
        )


def magnitude(
    config: TrainConfig, tx: optax.GradientTransformation, steps_per_epoch: int
) -> optax.GradientTransformation:
    """Magnitude pruning's `prune`: after `epochs - finetune_epochs` epochs, every kernel pruned to its density by
    magnitude; fine-tuning follows under the fixed mask (`pruning_transforms.magnitude_pruning`)."""
    step = (config.epochs - config.finetune_epochs) * steps_per_epoch
    return pruning_transforms.magnitude_pruning(tx, step, config.density_first, config.density_rest)


def magnitude_epochs(config: TrainConfig) -> tuple[int, ...]:
    """The epoch magnitude pruning prunes after: its record and checkpoint hold the pruned model."""
    return (config.epochs - config.finetune_epochs,)


def restarting_schedule(config: TrainConfig, schedule: optax.Schedule, steps_per_epoch: int) -> optax.Schedule:
    """`schedule` (laid out over the whole run) compressed into each segment of iterative pruning, so the learning
    rate restarts with every round."""
    plan = imp_plan(config)
    segments = plan.rounds + 1
    segment_steps = plan.segment * steps_per_epoch
    return lambda step: schedule((step % segment_steps) * segments)


def imp_plan(config: TrainConfig) -> pruning.ImpPlan:
    """The run's iterative-pruning plan in epochs (`pruning.imp_plan`, which checks it)."""
    return pruning.imp_plan(
        config.epochs, config.density_first, config.density_rest, config.imp_rate, config.rewind_epoch
    )


def imp(config: TrainConfig, tx: optax.GradientTransformation, steps_per_epoch: int) -> optax.GradientTransformation:
    """IMP's `prune`: keeps the weights of `rewind_epoch`; at the end of each segment but the last, prunes `imp_rate`
    of each kernel's survivors (down to its density), rewinds the survivors to the kept weights and clears the
    momentum (`pruning_transforms.iterative_pruning`)."""
    return pruning_transforms.iterative_pruning(tx, imp_plan(config).in_steps(steps_per_epoch))


def imp_epochs(config: TrainConfig) -> tuple[int, ...]:
    """The epochs IMP's rounds prune after."""
    plan = imp_plan(config)
    return tuple(plan.segment * r for r in range(1, plan.rounds + 1))


def last_pruning_epoch(config: TrainConfig) -> int:
    """The epoch of iterative pruning's last round (its record is taken after the round): from it on, the model
    has its final densities."""
    return imp_plan(config).last_round_end


def upgrade_opt_state(old: Any, step: Any, today: Any) -> Any:
    """A magnitude or IMP optimizer state written before the pruning transforms (the between-epoch hooks' layout,
    `[sgd, {mask}]` and `[[sgd, {mask}], {rewind}]` as read) in today's `MagnitudePruningState` or
    `IterativePruningState`, its count the checkpoint's step (the updates taken)."""
    if isinstance(today, pruning_transforms.IterativePruningState):
        (inner, mask), rewind = old[0], old[1]["rewind"]
    else:
        inner, mask, rewind = old[0], old[1], None
    leaves = jax.tree.leaves(inner)
    if len(leaves) != len(jax.tree.leaves(today.inner)):
        raise ValueError("not the hooks' layout")
    fields = {
        "inner": jax.tree.unflatten(jax.tree.structure(today.inner), leaves),
        "count": jnp.asarray(step, jnp.int32),
        "mask": jax.tree.map(lambda m, _: jnp.asarray(m, bool), mask["mask"], today.mask),
    }
    if rewind is None:
        return today._replace(**fields)
    return today._replace(**fields, rewind=rewind, rewound=jnp.zeros((), bool))
