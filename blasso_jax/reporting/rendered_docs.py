"""Documents whose evidence tables are rendered from the committed JSONs, so that no number in them is typed.

A table sits between two markers, each on its own line:

    <!-- evidence:cpu_locality+cpu_augment/methods labels="β-LASSO β=1; SGD" reference=SGD -->
    (the rendered table)
    <!-- /evidence -->

before the slash, the folders of `docs/results/` it reads (joined by '+', in the order shown); after it, a
table of `TABLES`; then options: `labels` (the method labels to show, ';'-separated, in that order),
`reference` (the label each row is compared with, default SGD), `targets` (a target set of
`evidence_tables.TARGET_SETS`) and `gain` (NLGP's main gain). `render`
replaces what lies between the markers; JSONs added to a folder show up at the next rendering.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

from blasso_jax.common import files
from blasso_jax.reporting import evidence_tables, nlgp_online_report, nlgp_tables

RESULTS = Path("docs/results")
DOCUMENTS = (Path("README.md"), Path("docs/results.md"))  # with every docs/results/*/table.md that has markers
CLOSE = "<!-- /evidence -->"
BLOCK = re.compile(r"^<!-- evidence:(?P<spec>[^\n]*?) -->\n(?:.*?\n)??" + re.escape(CLOSE) + "$", re.M | re.S)
TABLES: dict[str, Callable[..., str]] = {
    "methods": evidence_tables.methods_table,
    "seeds": evidence_tables.seeds_table,
    "targets": evidence_tables.targets_table,
    "grid": evidence_tables.grid_table,
    "times": evidence_tables.times_table,
    "main_grid": nlgp_tables.main_grid,
    "gain_sweep": nlgp_tables.gain_sweep,
    "lambda_selection": nlgp_tables.lambda_selection,
    "differences": nlgp_tables.differences,
    "online_setting": nlgp_online_report.online_setting,
    "online_grid": nlgp_online_report.online_grid,
    "online_differences": nlgp_online_report.online_differences,
    "online_lambda_selection": nlgp_online_report.online_lambda_selection,
}
OPTIONS: dict[str, Callable[[str], object]] = {
    "labels": lambda value: [label.strip() for label in value.split(";") if label.strip()],
    "reference": str,
    "gain": float,
    "targets": str,
}


def table(spec: str, results: Path, cache: dict[str, list] | None = None) -> str:
    """The table a marker's `spec` names, from the JSONs under `results`; `cache` keeps folders read once."""
    cache = {} if cache is None else cache
    source, *options = shlex.split(spec)
    folders, _, name = source.rpartition("/")
    if name not in TABLES or not folders:
        raise ValueError(f"evidence marker {spec!r}: give FOLDER[+FOLDER]/TABLE, TABLE one of {', '.join(TABLES)}")
    kwargs = {}
    for option in options:
        key, _, value = option.partition("=")
        if key not in OPTIONS:
            raise ValueError(f"evidence marker {spec!r}: unknown option {key!r}; options: {', '.join(OPTIONS)}")
        kwargs[key] = OPTIONS[key](value)
    for folder in folders.split("+"):
        if folder not in cache:
            cache[folder] = evidence_tables.read_folder(results / folder)
    try:
        return TABLES[name]([(f, cache[f]) for f in folders.split("+")], **kwargs)
    except TypeError as error:
        raise ValueError(f"evidence marker {spec!r}: {error}") from error


def render(text: str, results: Path = RESULTS) -> str:
    """`text` with every table between evidence markers rendered anew; a marker left open is a ValueError."""
    opened = len(re.findall(r"^<!-- evidence:", text, re.M))
    blocks = BLOCK.findall(text)
    if opened != len(blocks):
        raise ValueError(f"{opened - len(blocks)} evidence marker(s) without their closing line {CLOSE!r}")
    cache: dict[str, list] = {}
    return BLOCK.sub(lambda m: f"<!-- evidence:{m['spec']} -->\n\n{table(m['spec'], results, cache)}\n\n{CLOSE}", text)


def documents(root: Path) -> list[Path]:
    """The documents under `root` that hold rendered tables."""
    tables = sorted(p for p in (root / RESULTS).glob("*/table.md") if "<!-- evidence:" in p.read_text())
    return [root / p for p in DOCUMENTS] + tables


def render_docs(root: Path) -> list[Path]:
    """Renders every document under `root` in place (atomically); returns those that changed."""
    changed = []
    for path in documents(root):
        text = path.read_text()
        rendered = render(text, root / RESULTS)
        if rendered != text:
            files.atomic_write_bytes(path, rendered.encode())
            changed.append(path)
    return changed
