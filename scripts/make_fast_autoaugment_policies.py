"""Writes blasso_jax/data/policies/fast_autoaugment.json from the authors' FastAutoAugment/archive.py.

    python scripts/make_fast_autoaugment_policies.py /work/.mirror/kakaobrain+fast-autoaugment/repo

Reads archive.py at the mirror's HEAD, executes only the two policy functions (pure list literals, so the
authors' module imports are not needed) and records where the numbers came from. The test that checks the JSON
reads the verbatim copy of those two functions in tests/data/fast_autoaugment_archive.py, not a mirror.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPOSITORY_URL = "https://github.com/kakaobrain/fast-autoaugment"
ARCHIVE_PATH = "FastAutoAugment/archive.py"
POLICY_FUNCTIONS = ("fa_reduced_cifar10", "fa_reduced_svhn")
OUTPUT = Path(__file__).resolve().parents[1] / "blasso_jax" / "data" / "policies" / "fast_autoaugment.json"


def git_show(repo: Path, *args: str) -> str:
    """Output of one git command run on the mirror."""
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def read_policies(archive_source: str) -> dict[str, list]:
    """Executes the named policy functions of archive.py (and nothing else) and returns their lists."""
    module = ast.parse(archive_source)
    functions = [node for node in module.body if isinstance(node, ast.FunctionDef) and node.name in POLICY_FUNCTIONS]
    namespace: dict = {}
    exec(compile(ast.Module(body=functions, type_ignores=[]), ARCHIVE_PATH, "exec"), namespace)
    return {name: namespace[name]() for name in POLICY_FUNCTIONS}


def to_json(document: dict) -> str:
    """JSON with one sub-policy per line: readable and diffable, floats written exactly (repr)."""
    text = json.dumps({**document, "policies": "POLICIES"}, indent=1)
    blocks = [
        f"  {json.dumps(name)}: [\n" + ",\n".join(f"   {json.dumps(sub_policy)}" for sub_policy in policy) + "\n  ]"
        for name, policy in document["policies"].items()
    ]
    return text.replace('"POLICIES"', "{\n" + ",\n".join(blocks) + "\n }") + "\n"


def main(mirror: Path) -> None:
    commit = git_show(mirror, "rev-parse", "HEAD").strip()
    policies = read_policies(git_show(mirror, "show", f"{commit}:{ARCHIVE_PATH}"))
    licence_text = git_show(mirror, "show", f"{commit}:LICENSE")
    copyright_line = next(line for line in licence_text.splitlines() if line.startswith("Copyright"))
    document = {
        "description": (
            "Fast AutoAugment policies (Lim et al. 2019): each policy is a list of sub-policies, each a list of "
            "[op name, probability, level in [0, 1]]; value = level * (high - low) + low with the op's range."
        ),
        "source": {"repository": REPOSITORY_URL, "file": ARCHIVE_PATH, "commit": commit, "functions": POLICY_FUNCTIONS},
        "license": {"name": "MIT", "copyright": copyright_line},
        "policies": policies,
    }
    OUTPUT.write_text(to_json(document))
    print(f"wrote {OUTPUT}: " + ", ".join(f"{name} ({len(p)} sub-policies)" for name, p in policies.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
