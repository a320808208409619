"""Two processes on localhost (gloo CPU collectives), 2 devices each, train `--config=smoke` as one 4-device run."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(workdir, devices_per_process, processes, *extra):
    """Runs `experiments.table2 --config=smoke` on 8x8 images as `processes` processes; returns their outputs
    (process 0 first)."""
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices_per_process}",
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "experiments.table2", "--config=smoke", "--synthetic_shape=8,8,3"]
    command += [f"--workdir={workdir}", *extra]
    if processes > 1:
        command += ["--distributed", f"--coordinator_address=localhost:{free_port()}", f"--num_processes={processes}"]
        commands = [[*command, f"--process_id={i}"] for i in range(processes)]
    else:
        commands = [command]
    running = [
        subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in commands
    ]
    outputs = [p.communicate(timeout=240)[0] for p in running]
    for p, out in zip(running, outputs):
        assert p.returncode == 0, out
    return outputs


def read_run(workdir):
    results = json.loads((workdir / "results.json").read_text())
    metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    with np.load(workdir / "sparse_params.npz") as weights:
        arrays = {k: weights[k] for k in weights.files}
    return results, metrics, arrays


def without_timing(record):
    return {k: v for k, v in record.items() if k not in ("epoch_seconds", "wall_seconds", "git_commit")}


def test_two_processes_equal_one_process_and_resume_across_them(tmp_path):
    single = tmp_path / "single"
    launch(single, 4, 1)
    double = tmp_path / "double"
    first = launch(double, 2, 2, "--stop_after=1")
    assert "stopped after epoch 1" in first[0] and "stopped after epoch 1" not in first[1]  # process 0 logs
    assert "4 cpu device(s) in 2 process(es)" in first[0]
    launch(double, 2, 2, "--resume")

    results_1, metrics_1, weights_1 = read_run(single)
    results_2, metrics_2, weights_2 = read_run(double)
    assert [m["epoch"] for m in metrics_2] == [1, 2]  # one writer: each epoch once
    # The same global batches on the same 4-device layout; only the all-reduce differs (gloo across
    # processes, XLA's in-process one otherwise), so floats agree to a few ulps, not bitwise
    # (measured: at most 1e-7 absolute after two epochs), and the pruning pattern is identical.
    for got, want in zip(metrics_2, metrics_1):
        assert_close(without_timing(got), without_timing(want))
    assert weights_1.keys() == weights_2.keys()
    for name in weights_1:
        if name.endswith(":gaps") or name == "__meta__":
            np.testing.assert_array_equal(weights_2[name], weights_1[name], err_msg=name)
        else:
            np.testing.assert_allclose(weights_2[name], weights_1[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for key in ("val_accuracy", "test_accuracy", "nonzero_per_layer", "device_count"):
        assert results_2[key] == results_1[key], key
    assert sorted(p.name for p in double.iterdir()) == sorted(p.name for p in single.iterdir())


def assert_close(got, want):
    """Equal structure and integers; floats within 1e-5 relative."""
    if isinstance(want, dict):
        assert got.keys() == want.keys()
        for key in want:
            assert_close(got[key], want[key])
    elif isinstance(want, float):
        assert abs(got - want) <= 1e-5 * max(abs(want), 1e-3), (got, want)
    else:
        assert got == want
