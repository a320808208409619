"""Training methods in one table: β-LASSO, the SGD baseline, the pruning baselines, masked retraining, and whatever
is registered next.

Each `Method` says how to build its optimizer from a config, how it is labelled in tables and run
directories, which config fields it reads, which column of the paper's Table 2 it matches, its grids,
and, for methods that do more than optimise, the state a run starts from and the pruning that wraps the optimizer.
The config check, the trainer, the reports, the sweeps and the benchmark all read this table, so a new
method is one `register(Method(...))` call.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import optax

from blasso_jax.config.train_config import TrainConfig
from blasso_jax.methods import pruning_methods
from blasso_jax.optim import transforms as optim


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    """Cosine decay from `config.learning_rate` to 0, stepped per batch over the whole run."""
    return optax.cosine_decay_schedule(config.learning_rate, config.epochs * steps_per_epoch)


@dataclasses.dataclass(frozen=True)
class Grid:
    """A named hyperparameter grid: its points (each a dict of config fields to set), each also tried at dropout 0
    and at a dropout rate when `dropout` (the paper tunes dropout but gives no rate: `GRID_DROPOUT`)."""

    points: tuple[Mapping[str, Any], ...]
    dropout: bool = True

    @property
    def fields(self) -> tuple[str, ...]:
        """The config fields the grid sets, in order (dropout last), which name its points' directories."""
        names = dict.fromkeys(name for point in self.points for name in point)
        return (*names, "dropout") if self.dropout else tuple(names)


def crossed(*, dropout: bool = True, **axes: tuple[Any, ...]) -> Grid:
    """The grid of every combination of `axes`' values, the last axis varying fastest."""
    return Grid(tuple(dict(zip(axes, values)) for values in itertools.product(*axes.values())), dropout)


def zipped(*, dropout: bool = False, **axes: tuple[Any, ...]) -> Grid:
    """The grid whose i-th point takes the i-th value of every axis (axes of one length: fields tied together)."""
    lengths = {name: len(values) for name, values in axes.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"zipped grid axes must have one length, got {lengths}")
    return Grid(tuple(dict(zip(axes, values)) for values in zip(*axes.values())), dropout)


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
      grids: named hyperparameter grids, `{grid name: Grid}`, expanded by `grid_configs`.
      default_momentum: the momentum of its optimizer when the config leaves `momentum` unset (None).
      validate: `config -> None`, raises ValueError on settings the method cannot run.
      source_run: `config -> path | None`, a finished run the method starts from (read by the trainer).
      start: `(config, state, source, image_shape) -> state`, the state a new run starts from; `source` is the
        source run's `{'model', 'params', 'batch_stats'}` or None.
      prune: `(config, optimizer, steps_per_epoch) -> optimizer`, the optimizer wrapped in the method's pruning
        (`blasso_jax.optim.pruning_transforms`: the mask in the optimizer state, events timed by the step count).
      prune_epochs: `config -> epochs`, the epochs its pruning events end (each checkpointed there).
      upgrade_opt_state: `(old optimizer state as read, step, today's) -> today's layout`, for checkpoints written
        by an older version of the method's optimizer (raises on a layout it does not know).
      selectable_from: `config -> epoch`, the first epoch whose recorded model has the run's final structure (its
        last pruning event); selection by validation and the best checkpoint consider it and later epochs only.
    """

    name: str
    make_optimizer: Callable[[TrainConfig, Any, optax.Schedule], optax.GradientTransformation]
    label: Callable[[TrainConfig], str]
    run_name: Callable[[TrainConfig], str]
    fields: tuple[str, ...] = ()
    paper_key: Callable[[TrainConfig], str | None] = lambda config: None
    grids: Mapping[str, Grid] = dataclasses.field(default_factory=dict)
    default_momentum: float = 0.9
    schedule: Callable[[TrainConfig, int], optax.Schedule] = learning_rate_schedule
    validate: Callable[[TrainConfig], None] = lambda config: None
    source_run: Callable[[TrainConfig], str | None] = lambda config: None
    start: Callable[[TrainConfig, Any, dict[str, Any] | None, tuple[int, ...]], Any] | None = None
    prune: Callable[[TrainConfig, optax.GradientTransformation, int], optax.GradientTransformation] | None = None
    prune_epochs: Callable[[TrainConfig], tuple[int, ...]] = lambda config: ()
    upgrade_opt_state: Callable[[Any, Any, Any], Any] | None = None
    selectable_from: Callable[[TrainConfig], int] = lambda config: 1


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


def optimizer(config: TrainConfig, steps_per_epoch: int) -> Callable[[Any], optax.GradientTransformation]:
    """`params -> GradientTransformation`: the optimizer of `config.method` with the method's schedule, wrapped in its
    pruning, if any."""
    method = get(config.method)

    def make(params: Any) -> optax.GradientTransformation:
        tx = method.make_optimizer(config, params, method.schedule(config, steps_per_epoch))
        return tx if method.prune is None else method.prune(config, tx, steps_per_epoch)

    return make


def momentum(config: TrainConfig) -> float:
    """The momentum `config`'s method trains with: `config.momentum`, or the method's default when unset."""
    return get(config.method).default_momentum if config.momentum is None else config.momentum


def grid_names() -> tuple[str, ...]:
    """Every grid name some registered method has, sorted."""
    return tuple(sorted({name for method in METHODS.values() for name in method.grids}))


# The paper's grids include dropout but not its rate: it is tried at 0 and at this rate unless --dropout names one.
GRID_DROPOUT = 0.5


def grid_configs(config: TrainConfig, grid: str) -> list[TrainConfig]:
    """Every config of `config`'s method grid `grid` (each point, then dropout 0 and `config.dropout`, or
    `GRID_DROPOUT` when it is 0, if the grid tunes dropout), in a fixed order."""
    if grid not in grid_names():
        raise ValueError(f"unknown grid {grid!r}; valid: {', '.join(grid_names())}")
    method = get(config.method)
    if grid not in method.grids:
        raise ValueError(f"method {config.method} has no grid {grid!r}; its grids: {', '.join(method.grids) or 'none'}")
    points = [dict(point) for point in method.grids[grid].points]
    if method.grids[grid].dropout:
        points = [{**point, "dropout": rate} for point in points for rate in (0.0, config.dropout or GRID_DROPOUT)]
    return [config.replace(**point) for point in points]


def _check_momentum(config: TrainConfig) -> None:
    optim.check_momentum(momentum(config), config.nesterov, config.method == "blasso" and config.decoupled_l1)


def _blasso_optimizer(config: TrainConfig, params: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Algorithm 1: λ per layer group on the kernels, threshold β·λ; no momentum unless the config sets one."""
    l1 = optim.layerwise_l1(params, first=config.l1_first, rest=config.l1_rest)
    return optim.blasso(
        schedule,
        l1,
        config.beta,
        mask=optim.kernel_mask,
        momentum=momentum(config),
        nesterov=config.nesterov,
        decoupled=config.decoupled_l1,
    )


def _sgd_optimizer(config: TrainConfig, params: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    del params
    return pruning_methods.sgd(config, schedule, momentum(config))


def _masked_sgd_optimizer(config: TrainConfig, params: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    del params
    return pruning_methods.masked_sgd(config, schedule, momentum(config))


def _imp_schedule(config: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    return pruning_methods.restarting_schedule(config, learning_rate_schedule(config, steps_per_epoch), steps_per_epoch)


_PAPER_LAMBDAS = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5)
_MOMENTUM_FIELDS = ("momentum", "nesterov")
_SGD_FIELDS = (*_MOMENTUM_FIELDS, "weight_decay")
_SGD_GRIDS = {
    "paper": crossed(momentum=(0.0, 0.9), weight_decay=(0.0, 1e-4, 2e-4, 5e-4, 1e-3)),
    "small": crossed(momentum=(0.9,), weight_decay=(0.0, 5e-4)),
    # cpu_augment's SGD, tuned on as many points as β-LASSO's momentum grid (dropout 0, as every cpu_augment run).
    "cpu_augment": crossed(dropout=False, momentum=(0.9,), weight_decay=(1e-4, 5e-4, 1e-3, 2e-3)),
}
# β-LASSO with momentum 0.9 at cpu_augment: λ_first from the pull-matched 4e-5 (cpu_augment's 4e-4 ÷ 10, see
# optim.pull_matched_l1) up to 2e-4, λ_rest 1e-5, and β = 1e-3 / λ_first, so that the threshold βλ_first stays
# cpu_augment's 1e-3 while the L1 pull grows.
_CPU_AUGMENT_L1_FIRST = (4e-5, 6e-5, 1e-4, 2e-4)
_BLASSO_GRIDS = {
    # λ tuned apart for the first layer and the rest over {1, 2, 5, 10, 20}·1e-6 (the paper, Section 4).
    "paper": crossed(l1_first=_PAPER_LAMBDAS, l1_rest=_PAPER_LAMBDAS),
    "small": crossed(l1_first=(2e-6, 2e-5), l1_rest=(5e-6,)),
    "cpu_augment_momentum": zipped(
        l1_first=_CPU_AUGMENT_L1_FIRST,
        l1_rest=(1e-5,) * 4,
        beta=tuple(round(1e-3 / lam, 6) for lam in _CPU_AUGMENT_L1_FIRST),
        momentum=(0.9,) * 4,
    ),
    # The two variants at cpu_augment's λ 4e-4 / 1e-4 and β 2.5, each against the pull-matched rule (the momentum
    # grid's first point, λ ÷ 10): momentum 0.9 with λ unchanged (10× the accumulated pull), and the decoupled L1
    # (the sign outside the trace: the same accumulated pull as the rule's point).
    "cpu_augment_variants": zipped(
        l1_first=(4e-4, 4e-4),
        l1_rest=(1e-4, 1e-4),
        beta=(2.5, 2.5),
        momentum=(0.9, 0.9),
        decoupled_l1=(False, True),
    ),
}


def _blasso_variant(config: TrainConfig, sep: str, on: str) -> str:
    """β-LASSO's momentum settings, as a suffix of its label or run name ('' for the paper's Algorithm 1)."""
    mu = momentum(config)
    parts = [f"momentum{on}{mu:g}"] if mu else []
    parts += ["nesterov"] if config.nesterov else []
    parts += ["decoupled L1" if on == " " else "decoupled"] if config.decoupled_l1 else []
    return "".join(sep + part for part in parts)


def _sgd_recipe(config: TrainConfig) -> str:
    """Where an SGD-trained method's recipe differs from the baseline's (momentum 0.9, weight decay 5e-4), as a
    suffix of its label, so that the cells of an SGD grid are told apart in tables ('' for the baseline)."""
    parts = [f"weight decay {config.weight_decay:g}"] if config.weight_decay != 5e-4 else []
    parts += [f"momentum {momentum(config):g}"] if momentum(config) != 0.9 else []
    parts += ["Nesterov"] if config.nesterov else []
    return "".join(", " + part for part in parts)


def _with_momentum_check(check: Callable[[TrainConfig], Any]) -> Callable[[TrainConfig], None]:
    def validate(config: TrainConfig) -> None:
        _check_momentum(config)
        check(config)

    return validate


def _densities(config: TrainConfig) -> str:
    return f"d{config.density_first:g}-{config.density_rest:g}"


register(
    Method(
        name="blasso",
        make_optimizer=_blasso_optimizer,
        label=lambda config: f"β-LASSO β={config.beta:g}" + _blasso_variant(config, ", ", " "),
        run_name=lambda config: f"blasso-beta{config.beta:g}" + _blasso_variant(config, "-", ""),
        fields=("beta", "l1_first", "l1_rest", *_MOMENTUM_FIELDS, "decoupled_l1"),
        # The paper's Table 2 has no β-LASSO with momentum.
        paper_key=lambda config: None if momentum(config) else f"blasso_beta{config.beta:g}",
        grids=_BLASSO_GRIDS,
        default_momentum=0.0,  # the paper's Algorithm 1
        validate=_check_momentum,
    )
)
register(
    Method(
        name="sgd",
        make_optimizer=_sgd_optimizer,
        label=lambda config: "SGD" + _sgd_recipe(config),
        run_name=lambda config: "sgd",
        fields=_SGD_FIELDS,
        paper_key=lambda config: "sgd",
        grids=_SGD_GRIDS,
        validate=_check_momentum,
    )
)
for _shuffle in (False, True):
    register(
        Method(
            name="shuffled_mask_retrain" if _shuffle else "mask_retrain",
            make_optimizer=_masked_sgd_optimizer,
            label=lambda config, s=_shuffle: (
                f"SGD, {'pixel-shuffled ' if s else ''}β-LASSO first-layer mask" + _sgd_recipe(config)
            ),
            run_name=lambda config, s=_shuffle: "shuffled-mask-retrain" if s else "mask-retrain",
            fields=(*_SGD_FIELDS, "mask_source"),
            grids=_SGD_GRIDS,
            validate=_with_momentum_check(pruning_methods.source_path),
            source_run=pruning_methods.source_path,
            start=pruning_methods.start_from_source_mask(shuffle=_shuffle),
        )
    )
register(
    Method(
        name="magnitude",
        make_optimizer=_sgd_optimizer,
        label=lambda config: (
            f"magnitude pruning to {config.density_first:g} / {config.density_rest:g}" + _sgd_recipe(config)
        ),
        run_name=lambda config: f"magnitude-{_densities(config)}-ft{config.finetune_epochs}",
        fields=(*_SGD_FIELDS, "density_first", "density_rest", "finetune_epochs"),
        grids=_SGD_GRIDS,
        validate=_with_momentum_check(pruning_methods.check_magnitude),
        prune=pruning_methods.magnitude,
        prune_epochs=pruning_methods.magnitude_epochs,
        upgrade_opt_state=pruning_methods.upgrade_opt_state,
        selectable_from=lambda config: config.epochs - config.finetune_epochs,  # recorded after pruning
    )
)
register(
    Method(
        name="imp",
        make_optimizer=_sgd_optimizer,
        label=lambda config: f"IMP to {config.density_first:g} / {config.density_rest:g}" + _sgd_recipe(config),
        run_name=lambda config: f"imp-{_densities(config)}-rate{config.imp_rate:g}-rewind{config.rewind_epoch}",
        fields=(*_SGD_FIELDS, "density_first", "density_rest", "imp_rate", "rewind_epoch"),
        grids=_SGD_GRIDS,
        schedule=_imp_schedule,
        validate=_with_momentum_check(pruning_methods.imp_plan),
        prune=pruning_methods.imp,
        prune_epochs=pruning_methods.imp_epochs,
        upgrade_opt_state=pruning_methods.upgrade_opt_state,
        selectable_from=pruning_methods.last_pruning_epoch,
    )
)
