"""Training methods in one table: β-LASSO, the SGD baseline, and whatever is registered next.

Each `Method` says how to build its optimizer from a config, how it is labelled in tables and run
directories, which config fields it reads and which figure of the paper's Table 2 it matches. The
config check, the trainer, the reports and the sweeps all read this table, so a new method is one
`register(Method(...))` call.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import optax

from blasso_jax.optim import blasso, kernel_mask, layerwise_l1

if TYPE_CHECKING:
    from blasso_jax.config import TrainConfig

# The config fields that belong to one method or another; a method's `fields` names those it reads.
METHOD_FIELDS = ("beta", "l1_first", "l1_rest", "momentum", "weight_decay")


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method.

    Attributes:
      name: the `--method` value.
      make_optimizer: `(config, params, schedule) -> GradientTransformation`.
      label: `config -> str`, how tables name the run (e.g. 'β-LASSO β=50').
      run_name: `config -> str`, the method's part of a run directory name.
      fields: the entries of `METHOD_FIELDS` the method reads; the others do not change its runs.
      paper_key: `config -> str | None`, its column in the paper's Table 2 (`paper.TABLE2`), if any.
      grids: named hyperparameter grids, `{grid name: {field: values}}`, crossed by `grid_configs`.
    """

    name: str
    make_optimizer: Callable[[TrainConfig, Any, optax.Schedule], optax.GradientTransformation]
    label: Callable[[TrainConfig], str]
    run_name: Callable[[TrainConfig], str]
    fields: tuple[str, ...] = ()
    paper_key: Callable[[TrainConfig], str | None] = lambda config: None
    grids: Mapping[str, Mapping[str, tuple[float, ...]]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        unknown = sorted(set(self.fields) - set(METHOD_FIELDS))
        if unknown:
            raise ValueError(f"method {self.name!r} names fields {unknown}; method fields are {list(METHOD_FIELDS)}")


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


GRID_NAMES = ("paper", "small")
# The paper's grid includes dropout but not its rate: it is tried at 0 and at this rate unless --dropout names one.
GRID_DROPOUT = 0.5


def grid_configs(config: TrainConfig, grid: str) -> list[TrainConfig]:
    """Every config of `config`'s method grid `grid` (its fields' values crossed), each with dropout 0 and
    `config.dropout` (or `GRID_DROPOUT` when it is 0), in a fixed order."""
    if grid not in GRID_NAMES:
        raise ValueError(f"unknown grid {grid!r}; valid: {', '.join(GRID_NAMES)}")
    axes = dict(get(config.method).grids[grid])
    axes["dropout"] = (0.0, config.dropout or GRID_DROPOUT)
    return [config.replace(**dict(zip(axes, values))) for values in itertools.product(*axes.values())]


def relevant_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict without the method fields its method does not read: what makes two runs the same run."""
    used = get(config["method"]).fields
    return {k: v for k, v in config.items() if k not in METHOD_FIELDS or k in used}


def _blasso_optimizer(config: TrainConfig, params: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Algorithm 1: λ per layer group on the kernels, threshold β·λ, no momentum (as the paper)."""
    return blasso(
        schedule, layerwise_l1(params, first=config.l1_first, rest=config.l1_rest), config.beta, mask=kernel_mask
    )


def _sgd_optimizer(config: TrainConfig, params: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    """The SGD baseline: weight decay on the kernels, optional momentum."""
    del params
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=kernel_mask),
        optax.sgd(schedule, momentum=config.momentum or None),
    )


_PAPER_LAMBDAS = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5)

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
        fields=("momentum", "weight_decay"),
        paper_key=lambda config: "sgd",
        grids={
            "paper": {"momentum": (0.0, 0.9), "weight_decay": (0.0, 1e-4, 2e-4, 5e-4, 1e-3)},
            "small": {"momentum": (0.9,), "weight_decay": (0.0, 5e-4)},
        },
    )
)
