"""The examples in the public docstrings run and print what they say."""

import doctest

import pytest

from blasso_jax.analysis import locality
from blasso_jax.common import text
from blasso_jax.config import train_config as config
from blasso_jax.data import geometry, nlgp, permute
from blasso_jax.methods import runs
from blasso_jax.models import networks as models
from blasso_jax.optim import pruning, pruning_transforms
from blasso_jax.optim import transforms as optim
from blasso_jax.sparse import export
from blasso_jax.sparse import inference as sparse
from blasso_jax.training import selection


@pytest.mark.parametrize(
    "module",
    [
        text,
        optim,
        pruning,
        pruning_transforms,
        models,
        config,
        runs,
        permute,
        geometry,
        locality,
        nlgp,
        export,
        sparse,
        selection,
    ],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module):
    results = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 0 and results.failed == 0
