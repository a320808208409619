"""Where one CPU training step's time goes: XLA's per-instruction trace of the real step, by kind of work.

    python benchmarks/step_profile.py                        # S-FC α=8, batch 512, fp32, crop+flip, β-LASSO
    python benchmarks/step_profile.py --augment=none         # the same step without crop+flip

Runs the training path's epoch on one CPU device (one jitted step dispatched per batch, `step.host_scan`)
under `jax.profiler`, whose trace has one event per XLA:CPU thunk (a fusion, a dot, a copy) named after
its instruction in the step's optimised HLO (dumped with `--xla_dump_to`). Each top-level instruction
is put in a category from its HLO: a dot, or a fusion around one, is a matmul; other instructions
whose JAX op name lies inside the model are BatchNorm and ReLU; results shaped like a kernel, and the
state's `where` selects, are the optimizer update (the skip select fused in); the squares, sums and
square root of `optax.tree.norm` are the non-finite guard; the gather, the crop/flip random numbers
and the normalisation are the input pipeline (one fused loop: `--augment=none` separates the crop/flip). The
k-th event of an instruction belongs to step k. Within a step, each moment goes to the instructions
running then (shared equally when two run at once), and a moment when none runs to the one that ended
last: dots run asynchronously, so their events end before their work does. The gaps between steps
are the host's dispatch.
"""

import argparse
import atexit
import collections
import glob
import gzip
import json
import os
import re
import shutil
import tempfile
import time

DUMP = tempfile.mkdtemp(prefix="step_profile_")  # the HLO dump and the trace, removed at exit
atexit.register(shutil.rmtree, DUMP, ignore_errors=True)
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={DUMP} --xla_dump_hlo_as_text".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (XLA_FLAGS must be set first)
import numpy as np  # noqa: E402

from blasso_jax.common import parallel  # noqa: E402
from blasso_jax.config import train_config as config  # noqa: E402
from blasso_jax.config.train_config import model_from_config  # noqa: E402
from blasso_jax.data import augment  # noqa: E402
from blasso_jax.methods import registry as methods  # noqa: E402
from blasso_jax.training import step  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--alpha", type=int, default=8)
parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
parser.add_argument("--augment", default="crop_flip", choices=augment.AUGMENT_NAMES, help="as in training, on CIFAR-10")
parser.add_argument("--method", default="blasso", choices=["blasso", "sgd"])
parser.add_argument("--steps", type=int, default=8, help="steps per epoch (images: steps x 512)")
parser.add_argument("--epochs", type=int, default=3, help="traced epochs, after one warm-up epoch")
args = parser.parse_args()

BETWEEN = "between steps (host dispatch)"
INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\S+?)(?:\{[^}]*\})? (\S+?)\((.*)$")


def step_module() -> dict[str, tuple[str, str, str]]:
    """The dumped step's ENTRY instructions, name -> (result shape, "dot" or op, metadata op_name).

    Names that the programs without a matmul (the epoch's plan and finish) also use are left out: their
    trace events could not be told apart.
    """
    paths = glob.glob(f"{DUMP}/*after_optimizations.txt")
    path = max((p for p in paths if "jit__lambda" in p), key=lambda p: open(p).read().count(" dot("))
    others = {
        name
        for p in paths
        if " dot(" not in open(p).read()
        for name in re.findall(r"^\s*(?:ROOT )?%(\S+) = ", open(p).read(), re.M)
    }
    text = open(path).read()
    computations = re.split(r"\n(?=\S)", text)
    with_dot = {
        m.group(1)
        for c in computations
        if (" dot(" in c or " convolution(" in c) and (m := re.match(r"(?:ENTRY )?%(\S+) ", c))
    }
    entry = next(c for c in computations if c.startswith("ENTRY"))
    instructions = {}
    for line in entry.splitlines()[1:]:
        m = INSTRUCTION.match(line)
        if m:
            name, shape, op, rest = m.groups()
            called = re.search(r"calls=%([\w.\-]+)", rest)
            op_name = re.search(r'op_name="([^"]*)"', rest)
            kind = "dot" if op == "dot" or (called and called.group(1) in with_dot) else op
            if name not in others:
                instructions[name] = (shape, kind, op_name.group(1) if op_name else "")
    return instructions


def category(shape: str, kind: str, op_name: str, kernel_shapes: set[str]) -> str:
    """The kind of work of one top-level instruction of the step (see the module docstring)."""
    if kind == "dot":
        return "matmuls"
    if "Network" in op_name:
        return "BatchNorm + ReLU"
    if "take_along_axis" in op_name:  # the loss picks each label's log-probability
        return "loss, metrics, other"
    if op_name.endswith(("/square", "/sqrt", "<lambda>)/reduce_sum")):  # optax.tree.norm of the gradients
        return "non-finite guard (gradient norm)"
    if shape in kernel_shapes or "_where" in op_name:
        return "optimizer update + threshold"
    if any(s in op_name for s in ("gather", "threefry", "randint", "bernoulli", "uniform", "/div", "/pad")):
        return "gather + augment + normalise"
    return "loss, metrics, other"


def trace_events(trace_dir: str, names: set[str]) -> list[dict]:
    """The trace's complete events of the step's top-level instructions."""
    path = max(glob.glob(f"{trace_dir}/**/*perfetto_trace.json.gz", recursive=True), key=os.path.getmtime)
    data = json.load(gzip.open(path))
    events = data["traceEvents"] if isinstance(data, dict) else data
    return [e for e in events if e.get("ph") == "X" and e["name"] in names]


def split_by_step(events: list[dict]) -> list[list[dict]]:
    """The k-th event of each instruction belongs to step k."""
    seen, steps = collections.Counter(), collections.defaultdict(list)
    for event in sorted(events, key=lambda e: e["ts"]):
        steps[seen[event["name"]]].append(event)
        seen[event["name"]] += 1
    return [steps[k] for k in sorted(steps)]


def attribute(steps: list[list[dict]]) -> collections.Counter:
    """Microseconds per instruction over the traced steps (see the module docstring), and between steps."""
    totals = collections.Counter()
    for index, events in enumerate(steps):
        spans = [(e["ts"], e["ts"] + e.get("dur", 0), e["name"]) for e in events]
        times = sorted({t for start, end, _ in spans for t in (start, end)})
        for low, high in zip(times, times[1:]):
            running = [name for start, end, name in spans if start <= low and end >= high]
            if not running:  # waiting on an asynchronous dot (or the scheduler): the last to end
                running = [max((s for s in spans if s[1] <= low), key=lambda s: s[1])[2]]
            for name in running:
                totals[name] += (high - low) / len(running)
        if index + 1 < len(steps):
            totals[BETWEEN] += max(0, steps[index + 1][0]["ts"] - times[-1])
    return totals


def main() -> None:
    cfg = config.preset("table2", alpha=args.alpha, precision=args.precision, augment=args.augment, method=args.method)
    mesh = parallel.make_mesh(jax.devices()[:1])
    examples = args.steps * cfg.batch_size
    model = model_from_config(cfg, 10, (32, 32, 3))
    state = parallel.init_sharded(
        lambda key: step.create_train_state(model, (32, 32, 3), methods.optimizer(cfg, args.steps), key),
        jax.random.key(0),
        mesh,
    )
    rng = np.random.default_rng(0)
    x = parallel.put_rows(rng.integers(0, 256, (examples, 32, 32, 3), dtype=np.uint8), mesh)
    y = parallel.put_rows(rng.integers(0, 10, examples).astype(np.int32), mesh)
    policy = augment.resolve(cfg.augment, cfg.dataset)
    epoch = step.make_train_epoch(mesh, examples, policy, (0.5,) * 3, (0.25,) * 3, **cfg.step_options())
    state, _ = jax.block_until_ready(epoch(state, x, y, jax.random.key(0)))
    tic = time.perf_counter()
    state, _ = jax.block_until_ready(epoch(state, x, y, jax.random.key(1)))
    untraced = (time.perf_counter() - tic) / args.steps
    trace_dir = f"{DUMP}/trace"
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for e in range(args.epochs):
            state, _ = jax.block_until_ready(epoch(state, x, y, jax.random.key(2 + e)))
    instructions = step_module()
    kernel_shapes = {
        f"f32[{','.join(map(str, leaf.shape))}]"
        for path, leaf in jax.tree_util.tree_leaves_with_path(state.params)
        if path[-1].key == "kernel"
    }
    steps = [s for s in split_by_step(trace_events(trace_dir, set(instructions))) if len(s) > len(instructions) // 2]
    by_instruction = attribute(steps)
    categories = {name: category(*fields, kernel_shapes) for name, fields in instructions.items()} | {BETWEEN: BETWEEN}
    totals = collections.Counter()
    for name, micros in by_instruction.items():
        totals[categories[name]] += micros
    count, span = len(steps), sum(totals.values())
    print(f"S-FC α={args.alpha} {args.precision} batch {cfg.batch_size} {args.augment} {args.method}, one CPU device")
    print(f"{count} traced steps: {span / count / 1e3:.1f} ms/step in the trace", end="")
    print(f"; untraced epoch / steps {untraced * 1e3:.1f} ms")
    for name, micros in totals.most_common():
        print(f"{micros / count / 1e3:9.2f} ms  {100 * micros / span:5.1f} %  {name}")
    print("largest instructions (ms/step, category):")
    for name, micros in by_instruction.most_common(12):
        print(f"{micros / count / 1e3:9.2f} ms  {name:32s} {categories[name]}")


if __name__ == "__main__":
    main()
