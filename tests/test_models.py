"""Models against the paper's parameter formulas (Tables 3 and 4) and against each other."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import blasso_jax as bj


def kernel_shapes(name, alpha, image_shape=(32, 32, 3), num_classes=10, **kwargs):
    model = bj.create_model(name, alpha=alpha, num_classes=num_classes, image_shape=image_shape, **kwargs)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_shape)), train=False))
    return variables["params"]


def paper_weights(name, alpha, h, w, c, k):
    """Weight counts written out from Tables 3/4 (no biases, no BatchNorm)."""
    a = alpha
    if name == "s-conv":
        return 81 * c * a + (h // 2) * (w // 2) * a * 24 * a + 24 * a * k
    if name == "s-local":
        return (h // 2) * (w // 2) * 81 * c * a + (h // 2) * (w // 2) * a * 24 * a + 24 * a * k
    if name == "s-fc":
        return h * w * c * (h * w * a // 4) + (h * w * a // 4) * 24 * a + 24 * a * k
    channels = [c, a, 2 * a, 2 * a, 4 * a, 4 * a, 8 * a, 8 * a, 16 * a]
    strides = [1, 2, 1, 2, 1, 2, 1, 2]
    head = (h // 16) * (w // 16) * 16 * a * 64 * a + 64 * a * k
    if name == "d-conv":
        return 9 * sum(channels[i] * channels[i + 1] for i in range(8)) + head
    sides = [(h, w)]
    for s in strides:
        sides.append((sides[-1][0] // s, sides[-1][1] // s))
    if name == "d-local":
        # Counted per output position. The paper's Table 1 prints 3.42M for D-LOCAL at α=15; the
        # real layer has 11,713,920 weights (its formula undercounts the stride-1 layers).
        return sum(sides[i + 1][0] * sides[i + 1][1] * 9 * channels[i] * channels[i + 1] for i in range(8)) + head
    if name == "d-fc":
        maps = [sides[i][0] * sides[i][1] * channels[i] for i in range(9)]
        return sum(maps[i] * maps[i + 1] for i in range(8)) + head
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["s-conv", "s-local", "s-fc", "d-conv", "d-local", "d-fc"])
@pytest.mark.parametrize(
    "alpha,image_shape,num_classes",
    [(1, (32, 32, 3), 10), (3, (32, 32, 3), 100), (2, (16, 48, 1), 7), (5, (64, 32, 3), 10)],
)
def test_weight_counts_match_paper_formulas(name, alpha, image_shape, num_classes):
    params = kernel_shapes(name, alpha, image_shape, num_classes)
    assert bj.count_params(params) == paper_weights(name, alpha, *image_shape, num_classes)


@pytest.mark.parametrize(
    "name,alpha,expected",
    [
        ("s-fc", 150, 256_240_800),
        ("s-conv", 150, 138_312_450),  # ≈ 138.31M in Table 1
        ("s-local", 150, 147_607_200),  # ≈ 147.61M
        ("d-conv", 15, 1_445_955),  # ≈ 1.45M
        ("d-local", 15, 11_713_920),  # the paper prints 3.42M: see paper_weights
    ],
)
def test_paper_sizes(name, alpha, expected):
    assert bj.count_params(kernel_shapes(name, alpha)) == expected


def test_s_fc_hidden_widths_at_alpha_150():
    params = kernel_shapes("s-fc", 150)
    assert params["layer1"]["kernel"].shape == (3072, 38_400)
    assert params["layer2"]["kernel"].shape == (38_400, 3_600)
    assert params["layer3"]["kernel"].shape == (3_600, 10)


@pytest.mark.parametrize("alpha,image_shape,num_classes", [(150, (32, 32, 3), 10), (4, (16, 16, 1), 5)])
def test_three_fc_width_is_nearest_to_s_fc_count(alpha, image_shape, num_classes):
    target = paper_weights("s-fc", alpha, *image_shape, num_classes)
    params = kernel_shapes("3-fc", alpha, image_shape, num_classes)
    h = params["layer1"]["kernel"].shape[1]
    assert params["layer2"]["kernel"].shape == (h, h)
    inputs = int(np.prod(image_shape))

    def count(width):
        return width * inputs + width * width + width * num_classes

    assert bj.count_params(params) == count(h)
    assert abs(count(h) - target) <= min(abs(count(h - 1) - target), abs(count(h + 1) - target))
    assert kernel_shapes("3-fc", alpha, image_shape, num_classes, width=17)["layer2"]["kernel"].shape == (17, 17)


def test_biases_only_on_the_classifier_and_bn_has_scale_and_offset():
    params = kernel_shapes("s-conv", 2)
    assert set(params) == {"layer1", "norm1", "layer2", "norm2", "layer3"}
    assert set(params["layer1"]) == set(params["layer2"]) == {"kernel"}
    assert set(params["layer3"]) == {"kernel", "bias"}
    assert set(params["norm1"]) == {"scale", "bias"}
    assert bj.count_params(params, kernels_only=False) == bj.count_params(params) + 10 + 2 * (2 + 48)


def test_weight_tied_s_local_equals_s_conv():
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    conv = bj.create_model("s-conv", alpha=3)
    local = bj.create_model("s-local", alpha=3)
    conv_vars = conv.init(jax.random.key(2), x, train=False)
    # Give every output position of the local layer the conv's filter, input channel slowest.
    kernel = conv_vars["params"]["layer1"]["kernel"]  # (9, 9, 3, 3)
    tied = jnp.transpose(kernel, (2, 0, 1, 3)).reshape(-1, kernel.shape[-1])
    local_params = dict(conv_vars["params"])
    local_params["layer1"] = {"kernel": jnp.broadcast_to(tied, (16, 16, *tied.shape))}
    local_vars = {"params": local_params, "batch_stats": conv_vars["batch_stats"]}
    # Sanity: the shapes we built are the ones the local model creates.
    expected = jax.eval_shape(lambda: local.init(jax.random.key(0), x, train=False))
    assert jax.tree.map(jnp.shape, local_vars) == jax.tree.map(lambda s: s.shape, expected)
    for train in (False, True):
        out_conv = conv.apply(conv_vars, x, train=train, mutable=["batch_stats"] if train else False)
        out_local = local.apply(local_vars, x, train=train, mutable=["batch_stats"] if train else False)
        np.testing.assert_allclose(
            np.asarray(jax.tree.leaves(out_local)[0]), np.asarray(jax.tree.leaves(out_conv)[0]), rtol=1e-4, atol=1e-4
        )


def test_fc_first_layer_unit_reshapes_to_an_image():
    model = bj.create_model("s-fc", alpha=1, image_shape=(8, 6, 3))
    x = jax.random.normal(jax.random.key(0), (2, 8, 6, 3))
    variables = model.init(jax.random.key(1), x, train=False)
    kernel = variables["params"]["layer1"]["kernel"]
    _, state = model.apply(variables, x, train=False, capture_intermediates=True, mutable=["intermediates"])
    hidden = state["intermediates"]["layer1"]["__call__"][0]
    units = np.asarray(kernel).T.reshape(-1, 8, 6, 3)  # each unit's weights as an [H, W, C] image
    expected = np.einsum("bhwc,uhwc->bu", np.asarray(x), units)
    np.testing.assert_allclose(np.asarray(hidden), expected, rtol=1e-4, atol=1e-4)


def test_mixed_precision_keeps_params_and_batchnorm_in_float32():
    model = bj.create_model("s-local", alpha=2, dtype=jnp.bfloat16)
    x = jnp.ones((2, 32, 32, 3))
    variables = model.init(jax.random.key(0), x, train=False)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    logits, state = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"])
    assert logits.dtype == jnp.float32
    assert {leaf.dtype for leaf in jax.tree.leaves(state["batch_stats"])} == {jnp.dtype(jnp.float32)}
    _, captured = model.apply(variables, x, train=False, capture_intermediates=True, mutable=["intermediates"])
    assert captured["intermediates"]["layer1"]["__call__"][0].dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(name="s-cnn", alpha=1), "valid models: s-conv, d-conv, s-local, d-local, s-fc, d-fc, 3-fc"),
        (dict(name="s-fc", alpha=0), "got 0"),
        (dict(name="s-fc", alpha=1, num_classes=1), "num_classes must be an integer >= 2, got 1"),
        (dict(name="d-conv", alpha=1, image_shape=(24, 32, 3)), "image side 24"),
        (dict(name="s-conv", alpha=1, image_shape=(31, 32, 3)), "not divisible by 2"),
        (dict(name="s-fc", alpha=1, image_shape=(32, 32)), "(height, width, channels)"),
    ],
)
def test_bad_arguments_fail_at_once_naming_the_value(kwargs, message):
    with pytest.raises(ValueError) as error:
        bj.create_model(**kwargs)
    assert message in str(error.value)


@pytest.mark.parametrize("name", ["s-conv", "s-fc", "3-fc", "d-local", "resnet18"])
def test_dropout_acts_on_the_inputs_of_the_last_two_dense_layers_in_training_only(name):
    shape = (16, 16, 3)
    images = jax.random.normal(jax.random.key(0), (64, *shape))
    plain = bj.create_model(name, 2, 10, shape)
    dropped = bj.create_model(name, 2, 10, shape, dropout=0.5)
    # Compiled, as training runs them: a few programs instead of a few hundred eager ops, each compiled alone.
    evaluate = jax.jit(lambda model, variables: model.apply(variables, images, train=False), static_argnums=0)

    @jax.jit
    def train(variables, key):
        return dropped.apply(
            variables,
            images,
            train=True,
            mutable=["batch_stats", "intermediates"],
            capture_intermediates=lambda module, method: isinstance(module, nn.Dropout),
            rngs={"dropout": key},
        )

    variables = jax.jit(lambda key: plain.init(key, images, train=False))(jax.random.key(1))
    # Same parameters: evaluation ignores dropout.
    np.testing.assert_array_equal(evaluate(dropped, variables), evaluate(plain, variables))
    (logits, state) = train(variables, jax.random.key(2))
    outputs = jax.tree.leaves(state["intermediates"])
    params = variables["params"]
    if name == "resnet18":  # one dense layer
        last = ["classifier"]
    else:
        last = sorted((k for k in params if k.startswith("layer")), key=lambda k: int(k[len("layer") :]))[-2:]
    expected = [params[k]["kernel"].shape[0] for k in last]  # the input widths of the last dense layers
    assert all(params[k]["kernel"].ndim == 2 for k in last)
    assert sorted(out.shape[1] for out in outputs) == sorted(expected)
    for out in outputs:
        # Half of the units dropped on top of ReLU's zeros (about half after BatchNorm; none after ResNet's pool).
        assert 0.4 < float(jnp.mean(out == 0)) < 0.9
    again, _ = train(variables, jax.random.key(2))
    other, _ = train(variables, jax.random.key(3))
    np.testing.assert_array_equal(logits, again)  # one key, one mask
    assert not np.allclose(logits, other)
    with pytest.raises(ValueError, match=r"dropout must be a rate in \[0, 1\), got 1.0"):
        bj.create_model(name, 2, 10, shape, dropout=1.0)
