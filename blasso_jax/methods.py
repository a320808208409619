"""Training methods in one table: β-LASSO, the SGD baseline, the pruning baselines, masked retraining, and whatever
is registered next.

Each `Method` says how to build its optimizer from a config, how it is labelled in tables and run
directories, which config fields it reads, which column of the paper's Table 2 it matches, its grids,
and, for methods that do more than optimise, the state a run starts from and what happens after an epoch.
The config check, the trainer, the reports, the sweeps and the benchmark all read this table, so a new
method is one `register(Method(...))` call.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import optax

from blasso_jax import pruning_methods
from blasso_jax.optim import blasso, kernel_mask, layerwise_l1

# A `blasso_jax.config.Config`. Not imported: the config imports the methods (to check `--method` and name
# runs), so the methods read a config's fields without depending on its module.
Config = Any


def learning_rate_schedule(config: Config, steps_per_epoch: int) -> optax.Schedule:
    """Cosine decay from `config.learning_rate` to 0, stepped per batch over the whole run."""
    return optax.cosine_decay_schedule(config.learning_rate, config.epochs * steps_per_epoch)


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method.

    Attributes:
      name: the `--method` value.
      make_optimizer: `(config, params, schedule) -> GradientTransformation`.
      schedule: `(config, steps_per_epoch) -> optax schedule` of the learning rate (default: one cosine decay
        over the run, `learning_rate_schedule`).
      label: `config -> str`, how tables name the run (e.g. 'β-LASSO β=50').
      run_name: `config -> str`, the method's part of a run directory name.
      fields: the config's method fields (`config.METHOD_FIELDS`) it reads; the others do not change its runs.
      paper_key: `config -> str | None`, its column in the paper's Table 2 (`paper.TABLE2`), if any.
      grids: named hyperparameter grids, `{grid name: {field: values}}`, crossed by `grid_configs`.
      validate: `config -> None`, raises ValueError on settings the method cannot run.
      source_run: `config -> path | None`, a finished run the method starts from (read by the trainer).
      start: `(config, state, source, image_shape) -> state`, the state a new run starts from; `source` is the
        source run's `{'model', 'params', 'batch_stats'}` or None.
      after_epoch: `(config, epoch, state) -> (state, checkpoint now)`, events between epochs (pruning).
      selectable_from: `config -> epoch`, the first epoch whose recorded model has the run's final structure (its
        last pruning event); selection by validation and the best checkpoint consider it and later epochs only.
    """

    name: str
    make_optimizer: Callable[[Config, Any, optax.Schedule], optax.GradientTransformation]
    label: Callable[[Config], str]
    run_name: Callable[[Config], str]
    fields: tuple[str, ...] = ()
    paper_key: Callable[[Config], str | None] = lambda config: None
    grids: Mapping[str, Mapping[str, tuple[float, ...]]] = dataclasses.field(default_factory=dict)
    schedule: Callable[[Config, int], optax.Schedule] = learning_rate_schedule
    validate: Callable[[Config], None] = lambda config: None
    source_run: Callable[[Config], str | None] = lambda config: None
    start: Callable[[Config, Any, dict[str, Any] | None, tuple[int, ...]], Any] | None = None
    after_epoch: Callable[[Config, int, Any], tuple[Any, bool]] | None = None
    selectable_from: Callable[[Config], int] = lambda config: 1


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Adds `method` to the table (replacing one of the same name) and returns it."""
    METHODS[method.name] = method
    return method


def get(name: str) -> Method:
    """The registered method `name`; a ValueError names the registered ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]


def optimizer(config: Config, steps_per_epoch: int) -> Callable[[Any], optax.GradientTransformation]:
    """`params -> GradientTransformation`: the optimizer of `config.method` with the method's schedule."""
    method = get(config.method)
    return lambda params: method.make_optimizer(config, params, method.schedule(config, steps_per_epoch))


GRID_NAMES = ("paper", "small")
# The paper's grid includes dropout but not its rate: it is tried at 0 and at this rate unless --dropout names one.
GRID_DROPOUT = 0.5


def grid_configs(config: Config, grid: str) -> list[Config]:
    """Every config of `config`'s method grid `grid` (its fields' values crossed), each with dropout 0 and
    `config.dropout` (or `GRID_DROPOUT` when it is 0), in a fixed order."""
    if grid not in GRID_NAMES:
        raise ValueError(f"unknown grid {grid!r}; valid: {', '.join(GRID_NAMES)}")
    method = get(config.method)
    if grid not in method.grids:
        raise ValueError(f"method {config.method} has no grid {grid!r}; its grids: {', '.join(method.grids) or 'none'}")
    axes = dict(method.grids[grid])
    axes["dropout"] = (0.0, config.dropout or GRID_DROPOUT)
    return [config.replace(**dict(zip(axes, values))) for values in itertools.product(*axes.values())]


def _blasso_optimizer(config: Config, params: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Algorithm 1: λ per layer group on the kernels, threshold β·λ, no momentum (as the paper)."""
    l1 = layerwise_l1(params, first=config.l1_first, rest=config.l1_rest)
    return blasso(schedule, l1, config.beta, mask=kernel_mask)


def _sgd_optimizer(config: Config, params: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    del params
    return pruning_methods.sgd(config, schedule)


def _masked_sgd_optimizer(config: Config, params: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    del params
    return pruning_methods.masked_sgd(config, schedule)


def _imp_optimizer(config: Config, params: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    del params
    return optax.chain(pruning_methods.masked_sgd(config, schedule), pruning_methods.optim.remember_params())


def _imp_schedule(config: Config, steps_per_epoch: int) -> optax.Schedule:
    return pruning_methods.restarting_schedule(config, learning_rate_schedule(config, steps_per_epoch), steps_per_epoch)


_PAPER_LAMBDAS = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5)
_SGD_FIELDS = ("momentum", "weight_decay")
_SGD_GRIDS = {
    "paper": {"momentum": (0.0, 0.9), "weight_decay": (0.0, 1e-4, 2e-4, 5e-4, 1e-3)},
    "small": {"momentum": (0.9,), "weight_decay": (0.0, 5e-4)},
}


def _densities(config: Config) -> str:
    return f"d{config.density_first:g}-{config.density_rest:g}"


register(
    Method(
        name="blasso",
        make_optimizer=_blasso_optimizer,
        label=lambda config: f"β-LASSO β={config.beta:g}",
        run_name=lambda config: f"blasso-beta{config.beta:g}",
        fields=("beta", "l1_first", "l1_rest"),
        paper_key=lambda config: f"blasso_beta{config.beta:g}",
        grids={
            # λ tuned apart for the first layer and the rest over {1, 2, 5, 10, 20}·1e-6 (the paper, Section 4).
            "paper": {"l1_first": _PAPER_LAMBDAS, "l1_rest": _PAPER_LAMBDAS},
            "small": {"l1_first": (2e-6, 2e-5), "l1_rest": (5e-6,)},
        },
    )
)
register(
    Method(
        name="sgd",
        make_optimizer=_sgd_optimizer,
        label=lambda config: "SGD",
        run_name=lambda config: "sgd",
        fields=_SGD_FIELDS,
        paper_key=lambda config: "sgd",
        grids=_SGD_GRIDS,
    )
)
for _shuffle in (False, True):
    register(
        Method(
            name="shuffled_mask_retrain" if _shuffle else "mask_retrain",
            make_optimizer=_masked_sgd_optimizer,
            label=lambda config, s=_shuffle: f"SGD, {'pixel-shuffled ' if s else ''}β-LASSO first-layer mask",
            run_name=lambda config, s=_shuffle: "shuffled-mask-retrain" if s else "mask-retrain",
            fields=(*_SGD_FIELDS, "mask_source"),
            grids=_SGD_GRIDS,
            validate=pruning_methods.source_path,
            source_run=pruning_methods.source_path,
            start=pruning_methods.start_from_source_mask(shuffle=_shuffle),
        )
    )
register(
    Method(
        name="magnitude",
        make_optimizer=_masked_sgd_optimizer,
        label=lambda config: f"magnitude pruning to {config.density_first:g} / {config.density_rest:g}",
        run_name=lambda config: f"magnitude-{_densities(config)}-ft{config.finetune_epochs}",
        fields=(*_SGD_FIELDS, "density_first", "density_rest", "finetune_epochs"),
        grids=_SGD_GRIDS,
        validate=pruning_methods.check_magnitude,
        after_epoch=pruning_methods.prune_once,
        selectable_from=lambda config: config.epochs - config.finetune_epochs,  # recorded after pruning
    )
)
register(
    Method(
        name="imp",
        make_optimizer=_imp_optimizer,
        label=lambda config: f"IMP to {config.density_first:g} / {config.density_rest:g}",
        run_name=lambda config: f"imp-{_densities(config)}-rate{config.imp_rate:g}-rewind{config.rewind_epoch}",
        fields=(*_SGD_FIELDS, "density_first", "density_rest", "imp_rate", "rewind_epoch"),
        grids=_SGD_GRIDS,
        schedule=_imp_schedule,
        validate=pruning_methods.imp_plan,
        after_epoch=pruning_methods.imp_round,
        selectable_from=pruning_methods.last_pruning_epoch,
    )
)
