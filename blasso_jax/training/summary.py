"""A finished run's summary: `results.json` (best-validation and final accuracies, sizes, provenance) and its
sparse weights, both written atomically by process 0."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import jax

from blasso_jax.analysis import measures as analysis
from blasso_jax.common import files, parallel
from blasso_jax.models.counting import kernel_sizes
from blasso_jax.sparse import export
from blasso_jax.training.checkpoints import tree_bytes
from blasso_jax.training.records import selected_record
from blasso_jax.training.run_state import RunState
from blasso_jax.training.rundir import git_commit


def cpu_model() -> str:
    """The host CPU's model name (`/proc/cpuinfo`), or what `platform` knows of it elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host(load_at_start: tuple[float, float, float]) -> dict[str, Any]:
    """Where and how loaded a run ran: CPU model and count, and the 1/5/15-minute load averages at its start and
    end (a load above the core count means the run shared the cores, so its times are not a quiet machine's)."""
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in load_at_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }


def summarise(run: RunState, wall_seconds: float, load_at_start: tuple[float, float, float]) -> dict[str, Any]:
    """Writes `sparse_params.npz` and `results.json` of the finished `run` and returns the results."""
    workdir, final = run.workdir, run.history[-1]
    best = selected_record(run)
    params, batch_stats = parallel.fetch((run.state.params, run.state.batch_stats))
    if parallel.is_writer():
        export.save(
            workdir / "sparse_params.npz",
            params,
            batch_stats,
            info=export.model_info(run.config, run.dataset),
            warn_if_dense=False,  # every run is exported; a dense one (SGD) is no mistake of the user's
        )
    parallel.sync("sparse params written")
    selected = best or final  # model selection by validation accuracy, as the paper; else the final epoch
    results = {
        "val_accuracy": {"best": best["val_accuracy"] if best else None, "final": final["val_accuracy"]},
        # "best" is the test accuracy at the epoch of best validation accuracy.
        "test_accuracy": {"best": selected["test_accuracy"], "final": final["test_accuracy"]},
        "best_epoch": selected["epoch"],
        "nonzero_per_layer": final["nonzero_per_layer"],
        "dense_per_layer": kernel_sizes(params),
        "description_length": analysis.description_length(params),
        "locality": final.get("locality"),
        # The trained weights stored as (index, value) pairs against the dense float32 arrays.
        "sparse_export_bytes": (workdir / "sparse_params.npz").stat().st_size,
        "dense_bytes": tree_bytes((params, batch_stats)),
        "checkpoint_bytes": sum(
            f.stat().st_size for f in (workdir / "checkpoints" / str(final["epoch"])).rglob("*") if f.is_file()
        ),
        "epochs": final["epoch"],
        "config": run.config.to_dict(),
        "git_commit": git_commit(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "wall_seconds": wall_seconds,
        # Summed over the epochs of every process that trained the run (a resumed run's included).
        "train_seconds": sum(record["epoch_seconds"] for record in run.history),
        "host": host(load_at_start),
    }
    if parallel.is_writer():
        files.atomic_write_json(workdir / "results.json", results)
    return results
