"""The paper's architectures (Tables 3 and 4) as pure `flax.linen` modules.

Every model is a stack of weight layers named `layer1 … layerN`. Each but the last is followed by
BatchNorm (`norm{i}`) and ReLU; the last maps to the class logits. Conv and local layers use the
paper's symmetric zero padding (k // 2), so a 9x9 stride-2 layer halves a 32x32 image exactly as
PyTorch's `padding=4` does (flax's 'SAME' would pad 3 before and 4 after).

Layers followed by BatchNorm carry no bias: BN's offset would absorb it, and a bias would be one
more dense tensor β-LASSO cannot prune. BatchNorm keeps its scale and offset (one per channel or
unit), which β-LASSO leaves alone (see `optim.kernel_mask`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from blasso_jax.models.counting import kernel_sizes
from blasso_jax.models.resnet import ResNet18

LayerKind = Literal["conv", "local", "dense"]


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One weight layer: a conv, a locally-connected layer or a dense layer and its output width.

    `features` counts output channels for conv and local layers and output units for dense layers.
    """

    kind: LayerKind
    features: int
    kernel_size: int = 1
    stride: int = 1


class Network(nn.Module):
    """A feed-forward stack of `LayerSpec`s, each followed by BatchNorm and ReLU, then a linear classifier.

    Dense layers flatten their input in image order (NHWC, row-major), so the kernel of a dense
    first layer reshapes to `[H, W, C, units]` and each unit's weights form an image.
    BatchNorm normalises per channel after conv/local layers and per unit after dense ones.
    `dtype` is the compute dtype of the weight layers; parameters are kept in `param_dtype` and
    BatchNorm always runs in float32.
    """

    layers: Sequence[LayerSpec]
    num_classes: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    bn_momentum: float = 0.9
    dropout: float = 0.0  # on the inputs of the last two weight layers (dense in every model), in training

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        x = x.astype(self.dtype)
        for index, spec in enumerate(self.layers, start=1):
            x = _flatten(x) if spec.kind == "dense" else x
            if index == len(self.layers):
                x = _dropout(x, self.dropout, train)
            x = self._weight_layer(spec, f"layer{index}")(x)
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                dtype=jnp.float32,
                param_dtype=jnp.float32,
                name=f"norm{index}",
            )(x.astype(jnp.float32))
            x = nn.relu(x).astype(self.dtype)
        logits = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=f"layer{len(self.layers) + 1}",
        )(_dropout(_flatten(x), self.dropout, train))
        return logits.astype(jnp.float32)

    def _weight_layer(self, spec: LayerSpec, name: str) -> nn.Module:
        common = dict(use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
        if spec.kind == "dense":
            return nn.Dense(spec.features, **common)
        layer = nn.Conv if spec.kind == "conv" else nn.ConvLocal
        pad = spec.kernel_size // 2
        return layer(
            spec.features,
            kernel_size=(spec.kernel_size, spec.kernel_size),
            strides=(spec.stride, spec.stride),
            padding=((pad, pad), (pad, pad)),
            **common,
        )


def _flatten(x: jnp.ndarray) -> jnp.ndarray:
    return x.reshape(x.shape[0], -1)


def _dropout(x: jnp.ndarray, rate: float, train: bool) -> jnp.ndarray:
    """Dropout at `rate` in training (the 'dropout' rng); nothing at rate 0 or in evaluation."""
    return nn.Dropout(rate, deterministic=not train)(x) if rate > 0 else x


# The paper's Tables 3/4 as `Network` stacks (`layer_specs`), and ResNet18 (Figure 5, `blasso_jax.models.resnet`); every
# model, these and any registered later, is an entry of `MODELS` below.
STACK_MODELS = ("s-conv", "d-conv", "s-local", "d-local", "s-fc", "d-fc", "3-fc", "2-fc")
MODEL_NAMES = (*STACK_MODELS[:-1], "resnet18")  # the paper's (2-FC is the NLGP benchmark's)
KERNEL_SIZES = tuple(range(3, 16, 2))  # ResNet18's block kernels in Figure 5
TWO_FC_WIDTH = 100  # 2-FC's hidden units K when `width` is not given (not a paper model: the NLGP benchmark's)

# D-CONV (Table 4): output channels as multiples of α and strides of the eight 3x3 convolutions.
_DEEP_CHANNELS = (1, 2, 2, 4, 4, 8, 8, 16)
_DEEP_STRIDES = (1, 2, 1, 2, 1, 2, 1, 2)


def layer_specs(
    name: str, alpha: int, image_shape: Sequence[int], num_classes: int = 10, width: int | None = None
) -> tuple[LayerSpec, ...]:
    """The hidden layers of model `name` (the classifier layer is added by `Network`).

    S-* models: one 9x9 stride-2 layer with α channels, then a 24α-unit dense layer. D-* models:
    eight 3x3 layers (channels α…16α, strides 1,2,…), then a 64α-unit dense layer. *-LOCAL drop the
    weight sharing, *-FC replace each conv by a dense layer between flattened maps of the same
    sizes. 3-FC has two hidden layers of `width` units (default: `three_fc_width` matching S-FC's
    weight count at the same α). 2-FC (not in the paper; the NLGP benchmark's two-layer network) has one
    hidden layer of `width` units (default `TWO_FC_WIDTH`); α does not change it.

    Args:
      name: one of `MODEL_NAMES`.
      alpha: base channels α.
      image_shape: `(H, W, C)` of the inputs.
      num_classes: classes of the classifier (3-FC's default width depends on it).
      width: 3-FC's and 2-FC's hidden width; ignored by the other models.

    Returns:
      One `LayerSpec` per hidden layer, in order.

    Examples:
      >>> [(s.kind, s.features, s.kernel_size, s.stride) for s in layer_specs("s-conv", 150, (32, 32, 3))]
      [('conv', 150, 9, 2), ('dense', 3600, 1, 1)]
    """
    if name not in STACK_MODELS:
        raise ValueError(f"{name} is not a stack of layers; layer_specs covers {', '.join(STACK_MODELS)}")
    _check_arguments(name, alpha, image_shape, num_classes)
    height, width_px, channels = image_shape
    if name == "2-fc":
        return (LayerSpec("dense", width or TWO_FC_WIDTH),)
    if name == "3-fc":
        if width is None:
            pixels = height * width_px
            s_fc_hidden = pixels * alpha // 4
            target = pixels * channels * s_fc_hidden + s_fc_hidden * 24 * alpha + 24 * alpha * num_classes
            width = three_fc_width(target, pixels * channels, num_classes)
        return (LayerSpec("dense", width), LayerSpec("dense", width))
    depth, kind = name.split("-")
    if depth == "s":
        convs = [(alpha, 9, 2)]
        hidden = 24 * alpha
    else:
        convs = [(c * alpha, 3, s) for c, s in zip(_DEEP_CHANNELS, _DEEP_STRIDES)]
        hidden = 64 * alpha
    specs = []
    scale = 1
    for features, kernel, stride in convs:
        scale *= stride
        if kind == "fc":
            features = (height // scale) * (width_px // scale) * features
            specs.append(LayerSpec("dense", features))
        else:
            specs.append(LayerSpec(kind, features, kernel, stride))
    specs.append(LayerSpec("dense", hidden))
    return tuple(specs)


def three_fc_width(target_weights: int, input_dim: int, num_classes: int) -> int:
    """Width h of 3-FC (input → h → h → classes) whose weight count h² + h·(input + classes) is nearest the target.

    Args:
      target_weights: the weight count to match (S-FC's at the same α, by default).
      input_dim: H·W·C of the inputs.
      num_classes: classes of the classifier.

    Returns:
      The width h ≥ 1.

    Examples:
      >>> three_fc_width(256_240_800, 3072, 10)
      14541
    """
    b = input_dim + num_classes
    root = (-b + math.sqrt(b * b + 4 * target_weights)) / 2
    candidates = [max(1, math.floor(root)), max(1, math.ceil(root))]
    return min(candidates, key=lambda h: abs(h * h + h * b - target_weights))


def _check_arguments(name: str, alpha: int, image_shape: Sequence[int], num_classes: int) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    if not isinstance(alpha, int) or alpha < 1:
        raise ValueError(f"alpha (base channels) must be an integer >= 1, got {alpha!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
        raise ValueError(f"image_shape must be (height, width, channels), got {tuple(image_shape)!r}")
    divisor = MODELS[name].total_stride
    for side in image_shape[:2]:
        if side % divisor:
            raise ValueError(
                f"image side {side} of image_shape {tuple(image_shape)} is not divisible by {divisor}, "
                f"the total stride of {name}"
            )


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: everything the trainer, the configs and the paper's tables need to know of it.

    Attributes:
      name: the `--model` value.
      build: `(alpha, num_classes, image_shape, **options) -> flax module`; options are `width`, `kernel_size`,
        `dropout`, `dtype` and `param_dtype` (a builder ignores those it has no use for).
      total_stride: the product of the strides; image sides must be divisible by it.
      paper_alpha: α at the paper's sizes (Table 1 implies 150 for the shallow models and 15 for the deep
        ones; ResNet18's standard width is 64).
    """

    name: str
    build: Callable[..., nn.Module]
    total_stride: int
    paper_alpha: int


MODELS: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Adds `entry` to `MODELS` (replacing one of the same name) and returns it: `--model`, the configs and the
    tables then know it."""
    MODELS[entry.name] = entry
    return entry


def _build_stack(name: str) -> Callable[..., nn.Module]:
    """The builder of the stack model `name` (`layer_specs` in a `Network`)."""

    def build(alpha, num_classes, image_shape, *, width=None, dropout=0.0, dtype=jnp.float32, **options):
        specs = layer_specs(name, alpha, tuple(image_shape), num_classes, width)
        param_dtype = options.get("param_dtype", jnp.float32)
        return Network(layers=specs, num_classes=num_classes, dtype=dtype, param_dtype=param_dtype, dropout=dropout)

    return build


def _build_resnet18(alpha, num_classes, image_shape, *, kernel_size=3, dropout=0.0, dtype=jnp.float32, **options):
    if kernel_size not in KERNEL_SIZES:
        raise ValueError(f"kernel_size must be one of {KERNEL_SIZES} for resnet18, got {kernel_size!r}")
    param_dtype = options.get("param_dtype", jnp.float32)
    return ResNet18(alpha, num_classes, kernel_size, dtype=dtype, param_dtype=param_dtype, dropout=dropout)


for _name, _stride, _alpha in (
    ("s-conv", 2, 150),
    ("d-conv", 16, 15),
    ("s-local", 2, 150),
    ("d-local", 16, 15),
    ("s-fc", 2, 150),
    ("d-fc", 16, 15),
    ("3-fc", 1, 150),
    ("2-fc", 1, 1),  # α unused: K hidden units from `width`
):
    register_model(ModelEntry(_name, _build_stack(_name), total_stride=_stride, paper_alpha=_alpha))
register_model(ModelEntry("resnet18", _build_resnet18, total_stride=8, paper_alpha=64))


def create_model(
    name: str,
    alpha: int,
    num_classes: int = 10,
    image_shape: Sequence[int] = (32, 32, 3),
    *,
    width: int | None = None,
    kernel_size: int = 3,
    dropout: float = 0.0,
    dtype: jnp.dtype = jnp.float32,
    param_dtype: jnp.dtype = jnp.float32,
) -> nn.Module:
    """The registered model `name` (see `MODELS`) with base channels α, for images of `image_shape`.

    Args:
      name: a key of `MODELS` (the paper's: `MODEL_NAMES`).
      alpha: base channels α.
      num_classes: classes of the classifier layer.
      image_shape: `(H, W, C)` of the inputs.
      width: 3-FC's and 2-FC's hidden width (ignored by the other models).
      kernel_size: ResNet18's block kernel size, odd, 3 to 15 (ignored by the other models).
      dropout: the rate of dropout on the inputs of the last two weight layers in training (the paper's grid
        includes it; ResNet18 has one dense layer and drops out before it only); 0 adds none.
      dtype: the compute dtype (e.g. bfloat16 for mixed precision).
      param_dtype: the parameters' dtype.

    Returns:
      A flax.linen module (`Network`, or `resnet.ResNet18`); `apply(..., train=True)` updates BatchNorm
      statistics.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from blasso_jax import count_params
      >>> model = create_model("s-fc", alpha=1, num_classes=10, image_shape=(32, 32, 3))
      >>> shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
      >>> count_params(shapes["params"])
      792816
    """
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a rate in [0, 1), got {dropout}")
    _check_arguments(name, alpha, image_shape, num_classes)
    options = dict(width=width, kernel_size=kernel_size, dropout=dropout, dtype=dtype, param_dtype=param_dtype)
    return MODELS[name].build(alpha, num_classes, tuple(image_shape), **options)


def layer_weights(name: str, alpha: int, num_classes: int, image_shape: Sequence[int], **options) -> dict[str, int]:
    """Kernel entries per layer of model `name` (`options` as `create_model`'s), from `jax.eval_shape` of its
    init: nothing is allocated."""
    model = create_model(name, alpha, num_classes, tuple(image_shape), **options)
    init = functools.partial(model.init, train=False)
    shapes = jax.eval_shape(init, jax.random.key(0), jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
    return kernel_sizes(shapes["params"])
