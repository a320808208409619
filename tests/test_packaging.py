"""What an installed package promises: a light import, typing marker, licence and citation files."""

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "tensorflow_datasets", "PIL", "matplotlib", "orbax")


def test_import_blasso_jax_loads_only_jax_flax_and_optax():
    loaded = f"[m for m in {HEAVY!r} if any(k == m or k.startswith(m + '.') for k in sys.modules)]"
    code = f"import json, sys; import blasso_jax; print(json.dumps({loaded}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert json.loads(out.stdout) == []


def test_package_ships_typing_marker_licence_and_citation():
    assert (REPO_ROOT / "blasso_jax" / "py.typed").is_file()
    setup = (REPO_ROOT / "setup.cfg").read_text()
    assert "[options.package_data]\nblasso_jax = py.typed" in setup
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text()
    citation = (REPO_ROOT / "CITATION.cff").read_text()
    assert "cff-version" in citation and "Towards Learning Convolutions from Scratch" in citation
