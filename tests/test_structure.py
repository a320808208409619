"""The library's shape: no import cycle, small modules and functions, and one registration per model or method."""

import ast
from pathlib import Path

import flax.linen as nn
import pytest

from blasso_jax.config import train_config as config_lib
from blasso_jax.models import networks as models
from blasso_jax.training import train

PACKAGE = Path(__file__).resolve().parents[1] / "blasso_jax"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 350, 60


def _imports(path: Path) -> set[str]:
    """The blasso_jax modules `path` imports anywhere in it: module level, inside functions, or for annotations
    under `if TYPE_CHECKING:` (an upward import for a type is an upward dependency all the same)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("blasso_jax"):
            names = [node.module] if node.module != "blasso_jax" else [f"blasso_jax.{a.name}" for a in node.names]
            found.update(names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("blasso_jax."))
    modules = {f"blasso_jax.{p.stem}" for p in PACKAGE.glob("*.py")}
    return {name for name in found if name in modules}


def test_the_import_graph_has_no_cycle():
    graph = {f"blasso_jax.{p.stem}": _imports(p) - {f"blasso_jax.{p.stem}"} for p in PACKAGE.glob("*.py")}
    graph["blasso_jax.__init__"] = set()  # the package re-exports; modules never import it for a name

    def cycle_from(node, path):
        if node in path:
            return path[path.index(node) :] + [node]
        for nxt in sorted(graph.get(node, ())):
            found = cycle_from(nxt, [*path, node])
            if found:
                return found
        return None

    for start in sorted(graph):
        cycle = cycle_from(start, [])
        assert cycle is None, " -> ".join(cycle)


def test_modules_and_functions_stay_small():
    too_long = []
    for path in sorted(PACKAGE.glob("*.py")):
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{path.name}: {lines} lines")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.name}:{node.name}: {length} lines")
    assert not too_long, too_long


class _ToyNet(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x, *, train):
        hidden = nn.Dense(8, name="layer1", use_bias=False)(x.reshape(x.shape[0], -1))
        hidden = nn.relu(nn.BatchNorm(use_running_average=not train, name="norm1")(hidden))
        return nn.Dense(self.num_classes, name="layer2")(hidden)


def test_a_model_is_one_registry_entry(tmp_path):
    entry = models.ModelEntry("toy", lambda alpha, num_classes, image_shape, **_: _ToyNet(num_classes), 1, 1)
    models.register_model(entry)
    try:
        config = config_lib.preset("smoke", model="toy", epochs=1, locality_every=1)
        results = train.train_and_evaluate(config, tmp_path / "toy")
        assert results["dense_per_layer"] == {"layer1": 3072 * 8, "layer2": 8 * 10}
        assert results["locality"]["units"] == 8  # a dense first layer: measured like S-FC's
    finally:
        del models.MODELS["toy"]
    with pytest.raises(ValueError, match="unknown model 'toy'; valid: s-conv"):
        config.validate()
