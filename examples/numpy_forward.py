"""Test accuracy of a blasso_jax sparse export with numpy alone (and Pillow to decode images): no JAX, no blasso_jax.

    python examples/numpy_forward.py runs/table2/X/sparse_params.npz ../shared/data/cifar10_jpeg_q75_images.tar.gz

The export (`<workdir>/sparse_params.npz`, format in docs/sparse_format.md) holds the weights as non-zero
(index, value) pairs, BatchNorm statistics, the class names and the input normalisation. This file is a
reference: plain float64 numpy, written to be read. It runs the stack models (s-fc, 3-fc, d-fc, s-conv,
d-conv, s-local, d-local) and refuses resnet18. The dataset is an image folder `<root>/test/<class>/<image>`,
a `.tar.gz` of one, or an `.npz` with `x_test` (uint8 [N, H, W, C]) and `y_test`.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

FORMAT, VERSIONS = "blasso_jax.sparse", (2,)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_CHUNK_PRODUCTS = 2**24  # images x non-zeros per step of a sparse dense layer: bounds memory to ~128 MB


def read_export(path):
    """The export as a dict: `model` and `input` (from its JSON), `arrays` (name -> array), `permutation`."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise ValueError(f"cannot read {path}: not a complete .npz archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["__meta__"]))
            arrays = {name: archive[name] for name in archive.files if name != "__meta__"}
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read {path}: not a blasso_jax sparse export ({err})") from err
    if meta.get("format") != FORMAT or meta.get("version") not in VERSIONS:
        raise ValueError(f"{path} has format {meta.get('format')!r} {meta.get('version')!r}; this reads {FORMAT} 2")
    model = meta.get("model")
    if model is None:
        raise ValueError(f"{path} holds weights only, no model description; re-export it with its run's info")
    if model["layers"] is None:
        raise ValueError(f"{path} holds model {model['name']!r}; this reference runs stack models only, not resnet18")
    return {
        "model": model,
        "input": meta["input"],
        "leaves": meta["leaves"],
        "arrays": arrays,
        "permutation": arrays.get("input/pixel_permutation"),
    }


def array(export, name):
    """A stored array as float64 (bfloat16 is stored as its uint16 bits: those are float32's upper half)."""
    value = export["arrays"][name]
    if export["leaves"][name.split(":")[0]]["dtype"] == "bfloat16":
        value = (value.astype(np.uint32) << 16).view(np.float32)
    return value.astype(np.float64)


def kernel(export, layer):
    """(shape, flat row-major indices, values) of a layer's non-zero kernel entries."""
    name = f"params/{layer['name']}/kernel"
    shape = tuple(export["leaves"][name]["shape"])
    if export["leaves"][name]["sparse"]:  # the indices are the running sum of the stored gaps
        return shape, np.cumsum(export["arrays"][f"{name}:gaps"], dtype=np.int64), array(export, f"{name}:values")
    whole = array(export, name).reshape(-1)  # a kernel stored whole
    indices = np.flatnonzero(whole)
    return shape, indices, whole[indices]


def dense_kernel(shape, indices, values):
    """The kernel as a dense float64 array."""
    out = np.zeros(int(np.prod(shape)))
    out[indices] = values
    return out.reshape(shape)


def weight_layer(x, layer, shape, indices, values):
    """One weight layer (no bias, no BatchNorm) on float64 `x`; linear in `x` and in `values`."""
    if layer["kind"] == "dense":
        return sparse_dense(x.reshape(len(x), -1), shape, indices, values)
    patches = im2col(x, layer["kernel_size"], layer["stride"], layer["padding"])
    w = dense_kernel(shape, indices, values)
    if layer["kind"] == "conv":  # [kh, kw, C, O] -> [C*kh*kw, O], the patches' order (channel slowest)
        return patches @ w.transpose(2, 0, 1, 3).reshape(-1, shape[-1])
    if layer["kind"] == "local":  # [H_out, W_out, C*kh*kw, O]: one filter per output position
        return np.einsum("bhwp,hwpo->bhwo", patches, w)
    raise ValueError(f"unknown layer kind {layer['kind']!r}; this reference knows dense, conv and local")


def sparse_dense(x, shape, indices, values):
    """x [B, inputs] @ W [inputs, units] from W's non-zeros: each unit's x[:, input] * value, summed."""
    rows, cols = np.divmod(indices, shape[1])
    order = np.argsort(cols, kind="stable")
    rows, cols, values = rows[order], cols[order], values[order]
    units, starts = np.unique(cols, return_index=True)
    out = np.zeros((len(x), shape[1]))
    step = max(1, _CHUNK_PRODUCTS // max(1, len(values)))
    for begin in range(0, len(x), step):
        products = x[begin : begin + step][:, rows] * values
        if len(units):
            out[begin : begin + step, units] = np.add.reduceat(products, starts, axis=1)
    return out


def im2col(x, size, stride, pad):
    """[B, H, W, C] -> [B, H_out, W_out, C*size*size] patches with zero padding `pad`, channel slowest."""
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(1, 2))  # [B, H', W', C, k, k]
    windows = windows[:, ::stride, ::stride]
    return windows.reshape(*windows.shape[:3], -1)


def batch_norm(export, layer, z):
    """BatchNorm in eval mode: (z - mean) / sqrt(var + eps) * scale + bias, per channel or unit."""
    norm = layer["batch_norm"]
    mean, var = array(export, f"batch_stats/{norm}/mean"), array(export, f"batch_stats/{norm}/var")
    scale, bias = array(export, f"params/{norm}/scale"), array(export, f"params/{norm}/bias")
    return (z - mean) / np.sqrt(var + export["model"]["batch_norm_epsilon"]) * scale + bias


def normalise(export, images):
    """uint8 [N, H, W, C] -> float64 network inputs: pixels permuted if the run did, then (x/255 - mean) / std."""
    if export["permutation"] is not None:
        n, h, w, c = images.shape
        images = images.reshape(n, h * w, c)[:, export["permutation"]].reshape(n, h, w, c)
    spec = export["input"]
    return (images.astype(np.float64) * spec["scale"] - np.asarray(spec["mean"])) / np.asarray(spec["std"])


def forward(export, images):
    """Logits [N, classes] of uint8 images [N, H, W, C], in float64."""
    h = normalise(export, images)
    for layer in export["model"]["layers"]:
        h = weight_layer(h, layer, *kernel(export, layer))
        if layer["bias"]:
            h = h + array(export, f"params/{layer['name']}/bias")
        if layer["batch_norm"] is not None:
            h = np.maximum(batch_norm(export, layer, h), 0.0)
    return h


def read_test_split(path, class_names):
    """(images uint8 [N, H, W, C], labels int64 [N]) of the test split; labels index `class_names`."""
    path = Path(path)
    if path.is_file() and path.name.lower().endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            if "x_test" not in archive.files or "y_test" not in archive.files:
                raise ValueError(f"{path} lacks x_test or y_test; it has {archive.files}")
            images, labels = archive["x_test"], archive["y_test"].astype(np.int64)
        return (images[..., None] if images.ndim == 3 else images), labels
    if path.is_dir():
        names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        entries = ((name, (path / name).read_bytes) for name in names if _is_test_image(name))
        return _decode(entries, class_names, path)
    if path.is_file() and path.name.lower().endswith((".tar.gz", ".tgz")):
        with tarfile.open(path) as archive:  # read in archive order: a gzip stream cannot seek back cheaply
            members = [m for m in archive if m.isfile() and _is_test_image(m.name)]
            return _decode(((m.name, archive.extractfile(m).read) for m in members), class_names, path)
    raise ValueError(f"cannot read {path}: give an image folder, a .tar.gz or an .npz")


def _is_test_image(name):
    """`[top/]test/<class>/<image>`, not hidden."""
    parts = PurePosixPath(name).parts
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in parts)
    return len(parts) >= 3 and parts[-3] == "test" and name.lower().endswith(IMAGE_SUFFIXES) and not hidden


def _decode(entries, class_names, source):
    """Decode (name, read) entries of test images with Pillow, as blasso_jax does; labels from the class folders."""
    from PIL import Image

    images, labels = [], []
    for name, read in entries:
        parts = PurePosixPath(name).parts
        if parts[-2] not in class_names:
            raise ValueError(f"{source}: class folder {parts[-2]!r} is not one of the model's {list(class_names)}")
        with Image.open(io.BytesIO(read())) as image:
            if image.mode not in ("L", "RGB"):
                image = image.convert("L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
            pixels = np.asarray(image, dtype=np.uint8)
        images.append(pixels[..., None] if pixels.ndim == 2 else pixels)
        labels.append(class_names.index(parts[-2]))
    if not images:
        raise ValueError(f"{source} holds no test/<class>/<image> files")
    return np.stack(images), np.asarray(labels, np.int64)


def accuracy(export, images, labels, batch=1000):
    """Share of `images` whose largest logit is at their label."""
    correct = sum(
        int((forward(export, images[i : i + batch]).argmax(1) == labels[i : i + batch]).sum())
        for i in range(0, len(images), batch)
    )
    return correct / len(images)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export", help="a sparse export (sparse_params.npz)")
    parser.add_argument("dataset", help="image folder, .tar.gz or .npz holding the test split")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images")
    args = parser.parse_args(argv)
    try:
        export = read_export(args.export)
        images, labels = read_test_split(args.dataset, export["model"]["class_names"])
    except (ValueError, OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as err:
        named = str(err) if str(args.export) in str(err) or str(args.dataset) in str(err) else None
        print(f"error: {named or f'cannot read {args.dataset}: {err}'}", file=sys.stderr)
        return 1
    images, labels = images[: args.limit], labels[: args.limit]
    shape = tuple(export["model"]["image_shape"])
    if images.shape[1:] != shape:
        print(f"error: {args.dataset} has images of shape {images.shape[1:]}, the model takes {shape}", file=sys.stderr)
        return 1
    result = accuracy(export, images, labels)
    print(f"test accuracy {100 * result:.2f} % ({round(result * len(labels))} / {len(labels)}) of {args.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
