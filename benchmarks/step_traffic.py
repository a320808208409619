"""Where one training step's bytes go: the compiled epoch's step, instruction by instruction.

    python benchmarks/step_traffic.py --precision=fp32     # S-FC α=2, batch 512, one device
    python benchmarks/step_traffic.py --precision=bf16 --alpha=4

Counts what XLA's cost analysis counts (operands plus result of each top-level instruction of the
scan body) and prints the largest, so a bytes ratio above the analytic minimum can be traced to
its passes. The sum matches `cost_analysis()["bytes accessed"]` to within the epoch's once-per-epoch
work.
"""

import argparse
import re

import jax
import numpy as np

from blasso_jax.common import parallel
from blasso_jax.config import train_config as config
from blasso_jax.config.train_config import model_from_config
from blasso_jax.data import augment
from blasso_jax.methods import registry as methods
from blasso_jax.training import benchmark, step

ITEMSIZE = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "s64": 8, "u64": 8, "u8": 1, "s8": 1, "pred": 1}
DEFINITION = re.compile(r"^\s*(?:ROOT )?%(\S+) = (.+?) ([\w-]+)\((.*)$")
FREE = ("parameter", "get-tuple-element", "tuple", "bitcast", "constant")

parser = argparse.ArgumentParser()
parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
parser.add_argument("--alpha", type=int, default=2)
parser.add_argument("--examples", type=int, default=2048)
parser.add_argument("--top", type=int, default=12)
args = parser.parse_args()


def shape_bytes(text: str) -> int:
    return sum(
        ITEMSIZE[dtype] * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
        for dtype, dims in re.findall(r"(\w+)\[([\d,]*)\]", text)
        if dtype in ITEMSIZE
    )


cfg = config.preset("table2", alpha=args.alpha, precision=args.precision, augment="crop_flip")
mesh = parallel.make_mesh(jax.devices()[:1])
model = model_from_config(cfg, 10, (32, 32, 3))
steps = args.examples // cfg.batch_size
state = parallel.init_sharded(
    lambda key: step.create_train_state(model, (32, 32, 3), methods.optimizer(cfg, steps), key), jax.random.key(0), mesh
)
x = parallel.put_rows(np.zeros((args.examples, 32, 32, 3), np.uint8), mesh)
y = parallel.put_rows(np.zeros(args.examples, np.int32), mesh)
policy = augment.resolve(cfg.augment, cfg.dataset)
epoch = step.make_train_epoch(mesh, args.examples, policy, (0.5,) * 3, (0.25,) * 3, **cfg.step_options())
compiled = epoch.lower(state, x, y, jax.random.key(0)).compile()

computations, current = {}, None
for line in compiled.as_text().splitlines():
    header = re.match(r"^(?:ENTRY )?%(\S+) .*\{$", line)
    if header:
        current = computations.setdefault(header.group(1), [])
    elif current is not None:
        current.append(line)
sizes = {
    m.group(1): shape_bytes(m.group(2)) for lines in computations.values() for m in map(DEFINITION.match, lines) if m
}
body = max(
    (c for c in computations if any(" dot(" in line for line in computations[c])), key=lambda c: len(computations[c])
)
rows = []
for m in filter(None, map(DEFINITION.match, computations[body])):
    name, result, op, rest = m.groups()
    if op not in FREE:
        operands = re.findall(r"%([\w.\-]+)", rest.split(", kind=")[0] if op == "fusion" else rest.split("),")[0])
        rows.append((shape_bytes(result) + sum(sizes.get(o, 0) for o in operands), name, op, result.split("{")[0]))
rows.sort(reverse=True)
minimum = benchmark.analytic_step_cost(cfg, (32, 32, 3), 10)["bytes"]
xla = benchmark.compiled_step_cost(compiled)["bytes"]
print(f"S-FC α={args.alpha} {args.precision} batch {cfg.batch_size} on {jax.devices()[0].device_kind}")
print(
    f"cost analysis {xla / 1e6:.1f} MB/step; scan body by instruction {sum(r[0] for r in rows) / 1e6:.1f} MB; ", end=""
)
print(f"analytic minimum {minimum / 1e6:.1f} MB; ratio {xla / minimum:.2f}")
for size, name, op, result in rows[: args.top]:
    print(f"{size / 1e6:8.2f} MB  {op:14s} {name:32s} {result}")
