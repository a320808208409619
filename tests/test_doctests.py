"""The examples in the public docstrings run and print what they say."""

import doctest

import pytest

from blasso_jax import config, export, locality, models, nlgp, optim, permute, sparse


@pytest.mark.parametrize(
    "module", [optim, models, config, permute, locality, nlgp, export, sparse], ids=lambda m: m.__name__
)
def test_docstring_examples(module):
    results = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 0 and results.failed == 0
