"""Test setup, before JAX starts: four simulated CPU devices, cheap compiles, one compilation cache for the session.

Most of a small test's time is compiling, and many tests (and the subprocesses some start, which inherit these
variables) compile the same programs: XLA's persistent cache, in a temporary directory removed when the
session ends, compiles each once. A JAX_COMPILATION_CACHE_DIR set by the caller is used as it is, and kept.
"""

import os
import shutil
import tempfile
from importlib.metadata import version

# LLVM at -O0: XLA's own (HLO) optimisations still run, so results are those of a default build (the printed
# metrics of a smoke ResNet18 run are identical), but each compile takes about a third of the CPU time.
# Four devices hold every layout the tests check (data x model = 4x1, 2x2, 1x4); each simulated device runs its
# own copy of a step, so eight cost a training test about 15 % more CPU time than four (docs/performance.md).
# XLA's older loop fusion emitter instead of the MLIR fusion emitters: the same fused computations, emitted in
# about half the compile time; and each program's machine code generated as one LLVM module instead of split into
# up to 32 compiled on threads, which for the tests' small programs costs more CPU time than it saves wall time
# (docs/performance.md). XLA aborts on a flag it does not know, so these are set only for the jaxlib they were
# measured on (requirements-lock.txt); on another the tests run as they are, only slower.
_FAST_COMPILE = (
    " --xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1"
    if version("jaxlib").startswith("0.10.")
    else ""
)
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_backend_optimization_level=0 --xla_force_host_platform_device_count=4"
    + _FAST_COMPILE
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_SESSION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="blasso_jax_tests_jax_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # cache every program, however quick


def pytest_unconfigure(config):
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core, plus one that runs while another waits on its subprocesses, checkpoint
    writes or cache files (2 cores: 396 s with two workers, 363 s with three, 392 s with four; docs/performance.md)."""
    return len(os.sched_getaffinity(0)) + 1
