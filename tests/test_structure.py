"""The library's shape: subpackages as layers whose imports point down only, no import cycle, small modules and
functions, and one registration per model or method."""

import ast
from pathlib import Path

import flax.linen as nn
import pytest

import blasso_jax
from blasso_jax.config import train_config as config_lib
from blasso_jax.models import networks as models
from blasso_jax.training import train

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "blasso_jax"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 350, 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_order() -> list[str]:
    """The subpackages bottom to top, as the package docstring writes them: `common < models < …`."""
    line = next(line for line in blasso_jax.__doc__.splitlines() if " < " in line)
    return [name.strip() for name in line.split("<")]


def _imports(path: Path) -> set[str]:
    """The blasso_jax modules `path` imports anywhere in it: module level, inside functions, or for annotations
    under `if TYPE_CHECKING:` (an upward import for a type is an upward dependency all the same)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("blasso_jax"):
            # `from package import module` names the module; `from module import name` the module
            found.update(
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names
            )
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("blasso_jax."))
    return {name for name in found if name in MODULES}


def _layer(module: str) -> str | None:
    """A module's subpackage (None for the top-level package, which only re-exports)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_subpackage_is_a_documented_layer():
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert sorted(layer_order()) == subpackages
    assert not [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"], "modules belong in a subpackage"
    for name in subpackages:
        assert ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text())), f"{name} has no docstring"


def test_imports_follow_the_layers():
    rank = {name: i for i, name in enumerate(layer_order())}
    upward = []
    for module, path in MODULES.items():
        layer = _layer(module)
        if layer is None:
            continue
        for target in _imports(path):
            if _layer(target) is None or rank[_layer(target)] > rank[layer]:
                upward.append(f"{module} imports {target}")
    assert not upward, upward


def test_the_import_graph_has_no_cycle():
    graph = {module: _imports(path) - {module} for module, path in MODULES.items()}
    graph["blasso_jax"] = set()  # the package re-exports; modules never import it for a name

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
    for module, path in MODULES.items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{module}:{node.name}: {length} lines")
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
