"""Sparse inference and the sparse export, against float64 numpy references and bounds from float error analysis.

Error bound (per logit, for one float32 evaluation against the exact value of the same weights and input):
every dot product of n terms, summed in any order, with or without FMA, errs by at most
γ_n·Σ|x_i w_i|, γ_n = n·u/(1 - n·u), u = 2⁻²⁴ (Higham, Accuracy and Stability, Thm 3.5). An input already
off by e reaches the output as |W|ᵀe, and the rounded magnitudes add γ_n·|W|ᵀe. BatchNorm (flax: subtract,
rsqrt(var + eps), two multiplies, add, in float32) errs relatively by at most ε = 6u: 4 roundings plus 2u
for rsqrt (XLA's CPU rsqrt is sqrt then divide, each correctly rounded, fast-math off). ReLU is
1-Lipschitz and exact. `error_bound` propagates these through the network with numpy's float64
reference; the dense and the sparse model each lie within it, so they differ by at most twice it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import sys
import tarfile
import warnings
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blasso_jax.config.train_config import TrainConfig
from blasso_jax.data import augment
from blasso_jax.data.permute import permute_pixels
from blasso_jax.models.networks import MODEL_NAMES, STACK_MODELS, create_model
from blasso_jax.sparse import benchmark as sparse_benchmark
from blasso_jax.sparse import export
from blasso_jax.sparse import inference as sparse

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("numpy_forward", ROOT / "examples" / "numpy_forward.py")
nf = importlib.util.module_from_spec(_spec)
sys.modules["numpy_forward"] = nf
_spec.loader.exec_module(nf)

U = 2.0**-24  # float32 unit roundoff
BN_EPS = 6 * U  # BatchNorm's relative error in float32 (module docstring)
SHAPE = (16, 16, 3)
CLASSES = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")


def gamma(n):
    return n * U / (1 - n * U)


def pruned_variables(name, seed=0, keep=0.1):
    """Variables of `name` (α=1, 16×16×3), drawn with numpy: ~90 % of kernel entries zero, unit 0 of every dense
    kernel all zero, random BatchNorm affine parameters and running statistics of a real batch."""
    model = create_model(name, alpha=1, image_shape=SHAPE)
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.standard_normal((64, *SHAPE)), jnp.float32)
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(seed), images[:1])

    def draw(path, leaf):
        if path[-1].key == "kernel":
            fan_in = leaf.shape[-2] if leaf.ndim == 4 and name.endswith("local") else math.prod(leaf.shape[:-1])
            kernel = rng.standard_normal(leaf.shape) / math.sqrt(keep * fan_in)
            kernel[rng.random(leaf.shape) >= keep] = 0.0
            if leaf.ndim == 2:
                kernel[:, 0] = 0.0  # a unit with zero non-zeros
            return kernel.astype(np.float32)
        if path[-1].key == "scale":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        return rng.normal(0.0, 0.1, leaf.shape).astype(np.float32)  # BatchNorm and classifier biases

    params = jax.tree_util.tree_map_with_path(draw, shapes["params"])
    # One training-mode pass normalises every BatchNorm by its batch statistics and moves the running ones
    # 10 % of the way there (momentum 0.9) from mean 0, var 1; setting the running statistics to the batch
    # ones makes eval mode compute what that pass did, with every unit in a realistic range.
    old = jax.tree_util.tree_map_with_path(
        lambda path, s: np.full(s.shape, 0.0 if path[-1].key == "mean" else 1.0, np.float32), shapes["batch_stats"]
    )
    train_pass = jax.jit(lambda v: model.apply(v, images, train=True, mutable=["batch_stats"])[1]["batch_stats"])
    new = train_pass({"params": params, "batch_stats": old})
    stats = jax.tree.map(lambda o, n: np.maximum((np.asarray(n) - 0.9 * o) / 0.1, 0.0), old, new)
    return model, {"params": params, "batch_stats": stats}


def info_for(name, permutation=None):
    config = TrainConfig(model=name, alpha=1, precision="fp32", permute_pixels=permutation is not None).to_dict()
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    return export.ModelInfo(config, 10, CLASSES, SHAPE, mean, std, permutation)


def error_bound(reference, x, input_error=0.0):
    """Per-logit bound on |float32 network − exact| for float64 inputs `x` that the float32 evaluation
    received with error at most `input_error` (elementwise), using the numpy reference's layers."""
    h, e = x, np.broadcast_to(input_error, x.shape)
    for layer in reference["model"]["layers"]:
        shape, indices, values = nf.kernel(reference, layer)
        fan_in = shape[-2] if layer["kind"] == "local" else math.prod(shape[:-1])  # terms per output
        z = nf.weight_layer(h, layer, shape, indices, values)
        magnitude = nf.weight_layer(np.abs(h), layer, shape, indices, np.abs(values))
        e = (1 + gamma(fan_in)) * nf.weight_layer(e, layer, shape, indices, np.abs(values))
        e = e + gamma(fan_in) * magnitude
        if layer["bias"]:
            z = z + nf.array(reference, f"params/{layer['name']}/bias")
            e = e + U * (np.abs(z) + e)
        if layer["batch_norm"] is not None:
            norm = layer["batch_norm"]
            mean = nf.array(reference, f"batch_stats/{norm}/mean")
            var = nf.array(reference, f"batch_stats/{norm}/var")
            shift = nf.array(reference, f"params/{norm}/bias")
            m = nf.array(reference, f"params/{norm}/scale") / np.sqrt(var + reference["model"]["batch_norm_epsilon"])
            e = (1 + 2 * BN_EPS) * np.abs(m) * e + BN_EPS * (np.abs((z - mean) * m) + np.abs(shift))
            z = np.maximum((z - mean) * m + shift, 0.0)
        h = z
    return h, e


def reference_of(tmp_path, name, variables, permutation=None):
    path = tmp_path / f"{name}.npz"
    export.save(path, variables["params"], variables["batch_stats"], info=info_for(name, permutation))
    return path, nf.read_export(path)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_sparse_logits_equal_dense_ones_on_every_model(name, tmp_path):
    model, variables = pruned_variables(name)
    dense = jax.jit(lambda v, x: model.apply(v, x, train=False))
    apply = jax.jit(functools.partial(sparse.sparse_apply, model))
    every_layer = sparse.sparsify(variables, dense_above=1.0)
    assert len(every_layer.kernels) == sum(v.ndim == 2 for v in jax.tree.leaves(variables["params"])) > 0
    assert not sparse.sparsify(variables, dense_above=0.05).kernels  # ~10 % dense: all stay dense
    reference = reference_of(tmp_path, name, variables)[1] if name in STACK_MODELS else None
    # Batch 40: a chunk of 32 and a zero-padded one. S-FC also runs 3 (one unpadded chunk) and 1 (loop-free).
    for batch in (1, 3, 40) if name == "s-fc" else (40,):
        x = np.random.default_rng(batch).standard_normal((batch, *SHAPE)).astype(np.float32)
        got, want = np.asarray(apply(every_layer, x), np.float64), np.asarray(dense(variables, x), np.float64)
        assert np.abs(want).max() > 0.1  # the logits carry signal
        if reference is not None:
            exact, bound = error_bound(reference, x.astype(np.float64))
            assert np.all(np.abs(got - exact) <= bound) and np.all(np.abs(want - exact) <= bound)
            assert np.all(np.abs(got - want) <= 2 * bound)
        else:
            assert_classifier_within_bound(model, variables, every_layer, x)


@pytest.mark.parametrize("batch", [1, 33])  # one chunk; two chunks, the second zero-padded
def test_gather_matmul_equals_numpy_matmul(batch):
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 200)).astype(np.float32)
    kernels = {
        "all zero": np.zeros((200, 7), np.float32),
        "one dense unit among empty ones": np.pad(rng.standard_normal((200, 1)), ((0, 0), (3, 3))).astype(np.float32),
        "5 %": (rng.standard_normal((200, 50)) * (rng.random((200, 50)) < 0.05)).astype(np.float32),
    }
    for name, kernel in kernels.items():
        got = np.asarray(jax.jit(sparse.gather_matmul)(x, sparse.gather_kernel(kernel)), np.float64)
        exact = x.astype(np.float64) @ kernel.astype(np.float64)
        assert np.all(np.abs(got - exact) <= gamma(200) * (np.abs(x) @ np.abs(kernel))), name


def assert_classifier_within_bound(model, variables, sparse_model, x):
    """ResNet18: only the classifier is sparse. Each program's logits lie within the dot-product bound of
    its own classifier input f; the two programs' f may differ by rounding, which |W|ᵀ|Δf| carries over."""

    def with_classifier_input(apply):
        def run(*args):
            seen = []

            def record(next_fun, args, kwargs, context):
                if context.module.name == "classifier":
                    seen.append(args[0])
                return next_fun(*args, **kwargs)

            with nn.intercept_methods(record):
                logits = apply(*args)
            return logits, seen[0]

        return jax.jit(run)

    sparse_apply = functools.partial(sparse.sparse_apply, model)
    dense_apply = functools.partial(model.apply, train=False)
    got, f_sparse = (np.asarray(a, np.float64) for a in with_classifier_input(sparse_apply)(sparse_model, x))
    want, f_dense = (np.asarray(a, np.float64) for a in with_classifier_input(dense_apply)(variables, x))
    w, b = (np.asarray(variables["params"]["classifier"][k], np.float64) for k in ("kernel", "bias"))
    bounds = []
    for f, logits in ((f_sparse, got), (f_dense, want)):
        exact, magnitude = f @ w + b, np.abs(f) @ np.abs(w)
        bound = gamma(w.shape[0]) * magnitude + U * (np.abs(exact) + gamma(w.shape[0]) * magnitude)
        assert np.all(np.abs(logits - exact) <= bound)
        bounds.append(bound)
    assert np.all(np.abs(got - want) <= bounds[0] + bounds[1] + np.abs(f_sparse - f_dense) @ np.abs(w))


def assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def test_export_round_trip_is_bitwise_and_small(tmp_path):
    _, variables = pruned_variables("s-fc")
    params = jax.tree.map(np.copy, variables["params"])
    params["layer1"]["kernel"].reshape(-1)[np.flatnonzero(params["layer1"]["kernel"] == 0)[0]] = -0.0  # kept
    params["layer2"]["kernel"][:] = 1.5  # dense: stored whole
    permutation = tuple(int(i) for i in np.random.default_rng(0).permutation(SHAPE[0] * SHAPE[1]))
    info = info_for("s-fc", permutation)
    path = tmp_path / "export.npz"
    export.save(path, params, variables["batch_stats"], info=info)
    loaded = export.load(path)
    assert_bitwise_equal((loaded.params, loaded.batch_stats), (params, variables["batch_stats"]))
    assert loaded.info == info
    with np.load(path) as archive:
        assert "params/layer1/kernel:gaps" in archive.files and "params/layer2/kernel" in archive.files
    dense = tmp_path / "dense.npz"
    np.savez(dense, *jax.tree.leaves(params), *jax.tree.leaves(variables["batch_stats"]))
    assert path.stat().st_size < 0.5 * dense.stat().st_size  # layer 1 (10 % dense) is most of the weights

    bf16 = {"layer1": {"kernel": jnp.array([[0.0, 1.5], [-2.0, -0.0]], jnp.bfloat16)}, "norm": {"scale": jnp.ones(2)}}
    export.save(tmp_path / "bf16.npz", bf16)
    loaded = export.load(tmp_path / "bf16.npz")
    assert_bitwise_equal(loaded.params, bf16)
    assert loaded.info is None and loaded.batch_stats is None


def test_version_1_exports_still_load(tmp_path):
    spec = {"dtype": "float32", "shape": [2, 2], "sparse": True}
    meta = np.array(json.dumps({"format": "blasso_jax.sparse/1", "trees": {"params": {"l/kernel": spec}}}))
    arrays = {"params/l/kernel:indices": np.uint32([1, 3]), "params/l/kernel:values": np.float32([2.5, -1])}
    np.savez(tmp_path / "v1.npz", __meta__=meta, **arrays)
    assert np.array_equal(export.load(tmp_path / "v1.npz").params["l"]["kernel"], [[0.0, 2.5], [0.0, -1.0]])


def jax_logits(path, reference, images, permutation=None):
    """The JAX model's logits of uint8 `images` from the export at `path`, the exact ones, and their bound."""
    model, exported = export.load_model(path)
    info = exported.info
    fed = images if permutation is None else permute_pixels(images, np.asarray(permutation))
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    logits = np.asarray(apply(exported.variables, augment.normalize(fed, info.mean, info.std)))
    x = nf.normalise(reference, images)
    # blasso_jax normalises in float32: /255, -mean, /std, and mean and std rounded to float32 err by at most
    # 4u|x| + 2u|mean/std| to first order; 5u(|x| + |mean/std|) covers it.
    exact, bound = error_bound(reference, x, 5 * U * (np.abs(x) + np.abs(np.asarray(info.mean) / np.asarray(info.std))))
    return logits, exact, bound


@pytest.mark.parametrize("name", STACK_MODELS)
def test_numpy_reference_matches_the_jax_model(name, tmp_path):
    _, variables = pruned_variables(name, seed=1)
    permutation = tuple(int(i) for i in np.random.default_rng(1).permutation(256)) if name == "s-fc" else None
    path, reference = reference_of(tmp_path, name, variables, permutation)
    images = np.random.default_rng(2).integers(0, 256, (5, *SHAPE), dtype=np.uint8)
    logits, exact, bound = jax_logits(path, reference, images, permutation)
    assert np.all(np.abs(logits - exact) <= bound)
    # numpy's float64 forward errs by the same bound in float64, 2⁻²⁹ of it in float32 terms.
    assert np.all(np.abs(nf.forward(reference, images) - logits) <= bound * (1 + 2.0**-29))


def labelled_images(tmp_path, count=20):
    """An S-FC export, uint8 images, and labels that the JAX model gets right for exactly half of them."""
    _, variables = pruned_variables("s-fc", seed=3)
    path, reference = reference_of(tmp_path, "s-fc", variables)
    images = np.random.default_rng(4).integers(0, 256, (count, *SHAPE), dtype=np.uint8)
    logits, exact, bound = jax_logits(path, reference, images)
    top2 = np.sort(exact, axis=1)[:, -2:]
    assert np.all(top2[:, 1] - top2[:, 0] > 2 * bound.max(axis=1))  # no near tie: numpy and JAX agree on argmax
    predicted = logits.argmax(1)
    labels = np.where(np.arange(count) % 2 == 0, predicted, (predicted + 1) % 10)
    return path, images, labels


@pytest.mark.parametrize("layout", ["npz", "folder", "tar.gz"])
def test_numpy_forward_command_reproduces_the_jax_accuracy(layout, tmp_path, capsys):
    from PIL import Image

    path, images, labels = labelled_images(tmp_path)
    data = tmp_path / "data"
    if layout == "npz":
        data = tmp_path / "data.npz"
        np.savez(data, x_test=images, y_test=labels)
    else:
        for i, (image, label) in enumerate(zip(images, labels)):
            (data / "test" / CLASSES[label]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(data / "test" / CLASSES[label] / f"{i}.png")
        if layout == "tar.gz":
            with tarfile.open(tmp_path / "data.tar.gz", "w:gz") as archive:
                archive.add(data, arcname="top")
            data = tmp_path / "data.tar.gz"
    assert nf.main([str(path), str(data)]) == 0
    assert "test accuracy 50.00 % (10 / 20)" in capsys.readouterr().out


def test_bad_files_fail_with_one_line_naming_the_file(tmp_path, capsys):
    _, variables = pruned_variables("s-fc")
    good = tmp_path / "good.npz"
    export.save(good, variables["params"], variables["batch_stats"], info=info_for("s-fc"))
    truncated, foreign, text, npy = (tmp_path / n for n in ("truncated.npz", "foreign.npz", "notes.txt", "array.npy"))
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    np.savez(foreign, weights=np.ones(3))
    text.write_text("not an export")
    np.save(npy, np.ones(3))
    for bad in (truncated, foreign, text, npy, tmp_path / "missing.npz"):
        for reader in (export.load, nf.read_export):
            with pytest.raises(ValueError, match=bad.name) as caught:
                reader(bad)
            assert "\n" not in str(caught.value)
        assert nf.main([str(bad), str(tmp_path)]) == 1
        assert capsys.readouterr().err.count("\n") == 1
    assert nf.main([str(good), str(truncated)]) == 1 and "truncated.npz" in capsys.readouterr().err  # as dataset

    export.save(tmp_path / "weights_only.npz", variables["params"], variables["batch_stats"])
    export.save(
        tmp_path / "resnet.npz", {"classifier": {"kernel": np.eye(2, dtype=np.float32)}}, info=info_for("resnet18")
    )
    for reader, name, message in (
        (nf.read_export, "weights_only.npz", "weights_only.npz .*no model description"),
        (export.load_model, "weights_only.npz", "weights_only.npz .*no model description"),
        (nf.read_export, "resnet.npz", "resnet.npz .*resnet18"),
    ):
        with pytest.raises(ValueError, match=message):
            reader(tmp_path / name)


def test_exporting_a_model_without_zeros_warns_and_still_exports(tmp_path):
    params = {"layer1": {"kernel": np.full((3, 2), 0.5, np.float32), "bias": np.zeros(2, np.float32)}}
    with pytest.warns(UserWarning, match="dense.npz: no kernel entry is zero"):
        export.save(tmp_path / "dense.npz", params)
    assert_bitwise_equal(export.load(tmp_path / "dense.npz").params, params)
    with warnings.catch_warnings(action="error"):
        export.save(tmp_path / "sparse.npz", {"layer1": {"kernel": np.eye(2, dtype=np.float32)}})
        export.save(tmp_path / "quiet.npz", params, warn_if_dense=False)  # as training exports an SGD run


@pytest.mark.parametrize("density", [0, -0.1, 1.5, float("nan")])
def test_a_density_outside_zero_one_fails_naming_it(density):
    with pytest.raises(ValueError, match=f"^dense_above must be a density in \\(0, 1\\].*, got {density}"):
        sparse.sparsify({"params": {}}, dense_above=density)
    with pytest.raises(ValueError, match=f"^density must be a density in \\(0, 1\\].*, got {density}"):
        sparse_benchmark.run(densities=[0.01, density])


def test_sparse_benchmark_reports_every_row(tmp_path):
    report = sparse_benchmark.run(alphas=[1], densities=[0.01], batch_sizes=[2], repeats=1)
    (timing,) = report["timings"]
    assert timing["first_layer"] == "gather" and set(timing["seconds"]) == {"dense", "sparse", "gather", "rest"}
    (sizes,) = report["sizes"]
    assert sizes["sparse_export"] < 0.2 * sizes["dense_npz"]  # 1 % of layer 1 as (gap, value) pairs, against all
    assert "| 1 | 1 % | 2 | gather |" in sparse_benchmark.markdown(report)
    _, variables = pruned_variables("s-fc")
    path, _ = reference_of(tmp_path, "s-fc", variables)
    (row,) = sparse_benchmark.time_export(path, [3], repeats=1)
    assert row["batch_size"] == 3 and row["first_layer"] == "gather" and row["nonzeros"] > 0
