"""Markdown tables from committed evidence JSONs (`docs/results/<folder>/*.json`, one per run): per method, per
seed, against the locality targets, and the recorded times.

Every ± is computed one way: the sample standard deviation over the seeds a row names (`text.mean_std`), and a
difference between two methods is the mean ± sample std of the per-seed differences over the seeds both ran
(`paired_difference`: runs with the same seed share their initialisation and data order). One seed: the value.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from blasso_jax.common import text

Record = dict[str, Any]
Folders = Sequence[tuple[str, list[Record]]]  # (folder name, its records), in the order a table shows them


def read_folder(folder: Path) -> list[Record]:
    """The evidence records of `folder`, by file name; a ValueError when it holds none."""
    records = [json.loads(path.read_text()) for path in sorted(Path(folder).glob("*.json"))]
    if not records:
        raise ValueError(f"{folder} holds no evidence JSON")
    return records


def by_label(records: Sequence[Record]) -> dict[str, list[Record]]:
    """The records of each method label, labels in sorted order and each label's runs by seed."""
    groups: dict[str, list[Record]] = {}
    for record in sorted(records, key=lambda r: (r["label"], r["seed"])):
        groups.setdefault(record["label"], []).append(record)
    return groups


def paired(runs: Sequence[Record], reference: Sequence[Record], read: Callable[[Record, Record], float]) -> list[float]:
    """`read(run, reference run of the same seed)` for every seed both ran, in the order of `runs`."""
    of_seed = {r["seed"]: r for r in reference}
    return [read(r, of_seed[r["seed"]]) for r in runs if r["seed"] in of_seed]


def paired_difference(
    runs: Sequence[Record], reference: Sequence[Record], read: Callable[[Record], float], digits: int = 2
) -> str:
    """`read(run) − read(reference run of the same seed)`, mean ± sample std over the seeds both ran, signed."""
    differences = paired(runs, reference, lambda run, ref: read(run) - read(ref))
    return text.mean_std(differences, digits, count=False, signed=True)


def _stat(values: Sequence[float], digits: int = 2) -> str:
    return text.mean_std(values, digits, count=False)


def best(record: Record) -> float:
    return 100 * record["test_accuracy"]["best"]


def _density(record: Record, layer: str) -> float:
    return 100 * record["nonzero_per_layer"][layer] / record["dense_per_layer"][layer]


def _first_layer_density(record: Record) -> float:
    return _density(record, next(iter(record["dense_per_layer"])))


def _radius(record: Record) -> float:
    return record["locality"]["radius_median"]


def _radius_cell(runs: list[Record], reference: list[Record] | None) -> str:
    """The median radius over `runs`, and its ratio to the reference run's of the same seed when there is one."""
    shrink = paired(runs, reference or (), lambda run, ref: _radius(run) / _radius(ref))
    return _stat([_radius(r) for r in runs], 1) + (f" (÷ {statistics.mean(shrink):.2f})" if shrink else "")


def _cropping(record: Record) -> float:
    return 100 * (record["final_test_accuracy_window_cropped"] - record["final_test_accuracy_uncropped"])


METHOD_HEADERS = (
    "method",
    "seeds",
    "test % (best val)",
    "− reference's, per seed",
    "test % (final)",
    "non-zero % per layer (mean)",
    "ratio median",
    "units at ratio ≥ 2",
    "radius px (÷ reference's)",
    "final test %: uncropped → window-cropped",
)


def _method_row(label: str, runs: list[Record], reference: list[Record] | None) -> list[str]:
    """One method's row: its runs over seeds, against `reference` (None: no reference in its folder)."""
    layers = runs[0]["dense_per_layer"]
    is_reference = runs is reference
    return [
        label + (" (reference)" if is_reference else ""),
        ", ".join(str(r["seed"]) for r in runs),
        _stat([best(r) for r in runs]),
        "-" if is_reference or not reference else paired_difference(runs, reference, best),
        _stat([100 * r["test_accuracy"]["final"] for r in runs]),
        " / ".join(f"{statistics.mean(_density(r, layer) for r in runs):.2f}" for layer in layers),
        _stat([r["locality"]["ratio_median"] for r in runs]),
        _stat([r["locality"]["ratio_ge2_fraction"] for r in runs]),
        _radius_cell(runs, reference),
        f"{_stat([100 * r['final_test_accuracy_uncropped'] for r in runs])} → "
        f"{_stat([100 * r['final_test_accuracy_window_cropped'] for r in runs])}",
    ]


def _rows(folders: Folders, labels: Sequence[str] | None, reference: str, row: Callable) -> list[list[str]]:
    """`row(folder, label, runs, reference runs)` for each chosen label of each folder: `labels` in their order
    (each must be in some folder), else the reference first and the rest sorted; a folder column when several."""
    groups = {name: by_label(records) for name, records in folders}
    missing = [label for label in labels or () if not any(label in g for g in groups.values())]
    if missing:
        known = sorted({label for g in groups.values() for label in g})
        raise ValueError(f"no evidence labelled {missing} in {[n for n, _ in folders]}; labels there: {known}")
    rows = []
    for name, group in groups.items():
        chosen = labels or [reference, *sorted(set(group) - {reference})]
        for label in (label for label in chosen if label in group):
            cells = row(name, label, group[label], group.get(reference))
            rows.extend([[f"`{name}`", *line] if len(folders) > 1 else line for line in cells])
    return rows


def _with_folder(headers: Sequence[str], folders: Folders) -> tuple[str, ...]:
    return ("evidence", *headers) if len(folders) > 1 else tuple(headers)


def methods_table(folders: Folders, labels: Sequence[str] | None = None, reference: str = "SGD") -> str:
    """One row per method label (mean ± std over its seeds), each against `reference` of its own folder."""
    rows = _rows(folders, labels, reference, lambda name, label, runs, ref: [_method_row(label, runs, ref)])
    return text.markdown_table(_with_folder(METHOD_HEADERS, folders), rows)


def grid_table(folders: Folders, labels: Sequence[str] | None = None, reference: str = "SGD") -> str:
    """One row per grid cell: the validation accuracy that chooses a cell (at the best epoch, mean over seeds) beside
    the test accuracy at that epoch, layer 1's density and its locality, the radius against `reference`'s."""

    def rows(name: str, label: str, runs: list[Record], ref: list[Record] | None) -> list[list[str]]:
        return [
            [
                label + (" (reference)" if runs is ref else ""),
                ", ".join(str(r["seed"]) for r in runs),
                _stat([100 * r["val_accuracy"]["best"] for r in runs]),
                _stat([best(r) for r in runs]),
                f"{statistics.mean(_first_layer_density(r) for r in runs):.2f}",
                _stat([r["locality"]["ratio_median"] for r in runs]),
                _stat([r["locality"]["ratio_ge2_fraction"] for r in runs]),
                _radius_cell(runs, ref),
            ]
        ]

    headers = ("method", "seeds", "val % (best)", "test % (best val)", "layer-1 non-zero %", "ratio median")
    headers += ("units at ratio ≥ 2", "radius px (÷ reference's)")
    return text.markdown_table(_with_folder(headers, folders), _rows(folders, labels, reference, rows))


def _window_share(record: Record, level: str) -> str:
    locality = record["locality"]
    return f"{locality['window_share_median'] / locality[level]:.2f}"


def seeds_table(folders: Folders, labels: Sequence[str] | None = None, reference: str = "SGD") -> str:
    """One row per run: accuracy against the reference run of the same seed, the best-window share against its
    two chance levels (dense random filters, the same weights with their pixels shuffled), ratio and radius."""

    def rows(name: str, label: str, runs: list[Record], ref: list[Record] | None) -> list[list[str]]:
        return [
            [
                label,
                r["seed"],
                f"{best(r):.2f}",
                "-" if runs is ref or not ref else paired_difference([r], ref, best),
                f"{r['locality']['window_share_median']:.3f}",
                _window_share(r, "window_share_chance"),
                _window_share(r, "window_share_shuffled"),
                f"{r['locality']['ratio_median']:.2f}",
                f"{_radius(r):.1f}",
                (r.get("git_commit") or "-")[:7],
            ]
            for r in runs
        ]

    headers = ("method", "seed", "test % (best val)", "− reference's", "best-window share (median)")
    headers += ("÷ dense random", "÷ pixels shuffled", "ratio median", "radius px", "commit")
    return text.markdown_table(_with_folder(headers, folders), _rows(folders, labels, reference, rows))


@dataclasses.dataclass(frozen=True)
class Target:
    """A locality target: what it reads of a run (and of the reference run of its seed) and the bound it needs."""

    header: str
    read: Callable[[Record, Record], float]
    meets: Callable[[float], bool]


COMPACT = Target("radius ÷ reference's ≤ 0.6", lambda r, ref: _radius(r) / _radius(ref), lambda v: v <= 0.6)
AHEAD = Target("test % − reference's ≥ +1 (best val)", lambda r, ref: best(r) - best(ref), lambda v: v >= 1)
CPU_LOCALITY_TARGETS = (
    Target("median ratio ≥ 2.5", lambda r, ref: r["locality"]["ratio_median"], lambda v: v >= 2.5),
    Target("units at ratio ≥ 2: ≥ 0.5", lambda r, ref: r["locality"]["ratio_ge2_fraction"], lambda v: v >= 0.5),
    COMPACT,
    Target("cropped − uncropped ≥ −2 points", lambda r, ref: _cropping(r), lambda v: v >= -2),
    AHEAD,
)


MOMENTUM_TARGETS = (  # issue 27's, for a β-LASSO-family cell with layer 1 at ≤ 1 % against the tuned SGD
    Target("layer-1 non-zero % ≤ 1", lambda r, ref: _first_layer_density(r), lambda v: v <= 1),
    AHEAD,
    Target("median ratio ≥ 2.0", lambda r, ref: r["locality"]["ratio_median"], lambda v: v >= 2.0),
    COMPACT,
)
TARGET_SETS = {"cpu_locality": CPU_LOCALITY_TARGETS, "momentum": MOMENTUM_TARGETS}


def targets_table(
    folders: Folders, labels: Sequence[str] | None = None, reference: str = "SGD", targets: str = "cpu_locality"
) -> str:
    """Per method and target of the set `targets` (a key of TARGET_SETS): the value of each seed against the
    reference run of that seed, mean ± std over those seeds, and how many of them meet the target."""
    if targets not in TARGET_SETS:
        raise ValueError(f"unknown target set {targets!r}; sets: {', '.join(TARGET_SETS)}")
    chosen = TARGET_SETS[targets]

    def rows(name: str, label: str, runs: list[Record], ref: list[Record] | None) -> list[list[str]]:
        seeds = paired(runs, ref or (), lambda run, _: run["seed"])
        cells = []
        for target in chosen:
            values = paired(runs, ref or (), target.read)
            cells.append(f"{_stat(values)}: {sum(map(target.meets, values))} of {len(values)}" if values else "-")
        return [[label, ", ".join(map(str, seeds)), *cells]]

    headers = ("method", "seeds", *(t.header for t in chosen))
    return text.markdown_table(_with_folder(headers, folders), _rows(folders, labels, reference, rows))


def _span(values: Sequence[float], digits: int) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if f"{low:.{digits}f}" == f"{high:.{digits}f}" else f"{low:.{digits}f}-{high:.{digits}f}"


def _time_row(runs: list[Record]) -> list[str]:
    """The recorded times of `runs` (JSONs written before a field was recorded lack it)."""
    timed = [r for r in runs if r.get("wall_seconds") is not None]
    if not timed:
        return [f"0 of {len(runs)}", *["not recorded"] * 5]
    wall = [r["wall_seconds"] for r in timed]
    train = [r["train_seconds"] / 60 for r in timed if r.get("train_seconds") is not None]
    hosts = [r["host"] for r in timed if r.get("host")]
    devices = sorted({f"{r['device_count']} × {r['device_kind']}" for r in timed if r.get("device_kind")})
    cpus = sorted({f"{h['cpu_model']} ({h['cpu_count']} cores)" for h in hosts})
    load = " → ".join(_span([h[k][0] for h in hosts], 1) for k in ("load_average_start", "load_average_end") if hosts)
    return [
        f"{len(timed)} of {len(runs)}",
        f"{statistics.median(wall):.0f} ({_span(wall, 0)})",
        f"{sum(wall) / 60:.1f}",
        f"{sum(train):.1f}" if train else "not recorded",
        ", ".join(devices) or "not recorded",
        "; ".join(filter(None, (", ".join(cpus), load))) or "not recorded",
    ]


def times_table(folders: Folders) -> str:
    """Per folder and method label, the runs' recorded wall times, summed epoch times, device and host load."""
    rows = []
    for name, records in folders:
        groups: dict[str, list[Record]] = {}
        for record in records:
            groups.setdefault(record.get("label") or record.get("method") or "all runs", []).append(record)
        if not any(r.get("wall_seconds") is not None for r in records):  # one line says it for every method
            groups = {f"all {len(groups)} methods": list(records)}
        rows += [[f"`{name}`", label, *_time_row(runs)] for label, runs in sorted(groups.items())]
    headers = ("evidence", "method", "runs with a time", "wall s per run: median (range)", "wall min, summed")
    headers += ("train min, summed", "device", "host CPU; 1-min load average at start → end")
    return text.markdown_table(headers, rows)
