"""Ingrosso & Goldt's online setting (blasso_jax.data.nlgp_online, blasso_jax.training.online), checked against
independent numpy constructions."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from entry_points import run

from blasso_jax.data import nlgp_online as online
from blasso_jax.training import online as loop
from blasso_jax.training import online_streams as runs

SMALL = online.OnlineSetting(side=4, ndim=2, xis=(0.25, 0.75), gain=3.0, time=0.5, points=2, chunk=2)
U32 = 2.0**-24


def explicit_covariance(side: int, xi: float, periodic: bool, perturbation: float) -> np.ndarray:
    """exp(−(dx² + dy²)/ξ²) + perturbation·δ over every pair of pixels (row-major), from their coordinates: no
    Kronecker product."""
    rows, cols = np.divmod(np.arange(side * side), side)

    def axis_distance(a):
        d = np.abs(a[:, None] - a[None, :]).astype(np.float64)
        return np.minimum(d, side - d) if periodic else d

    squared = axis_distance(rows) ** 2 + axis_distance(cols) ** 2
    return np.exp(-squared / xi**2) + perturbation * np.eye(side * side)


@pytest.mark.parametrize("periodic", [False, True], ids=["open", "periodic"])
def test_the_2d_covariance_equals_a_pixel_by_pixel_numpy_construction(periodic):
    setting = dataclasses.replace(SMALL, side=7, periodic=periodic)
    for xi in setting.xi_sites:  # 1.75 and 5.25 sites: extensive, as their --extensivexis
        expected = explicit_covariance(7, xi, periodic, 1e-3)
        # exp(a)·exp(b) against exp(a + b) in float64: a few units of 2^-53 apart
        np.testing.assert_allclose(online.latent_covariance(setting, xi), expected, rtol=1e-14, atol=1e-15)
    # The control has the NLGP's covariance, in their form: (2/π/γ)·arcsin(g²/(1+g²)·C), γ = (2/π)·arcsin(g²/(1+g²)).
    s = setting.gain**2 / (1 + setting.gain**2)
    control = online.sampling_covariances(setting, "nlgp_gaussian")
    for c, xi in zip(control, setting.xi_sites):
        gamma = 2 / math.pi * math.asin(s)
        expected = 2 / math.pi / gamma * np.arcsin(s * explicit_covariance(7, xi, periodic, 1e-3))
        np.testing.assert_allclose(c, expected, rtol=1e-13)


@pytest.mark.parametrize("kind", ["nlgp", "nlgp_gaussian"])
def test_drawn_inputs_have_each_class_covariance_and_balanced_labels(kind):
    setting = SMALL
    chol = jnp.asarray(online.factors(setting, kind))
    n = 40_000
    x, y = online.draw(chol, jax.random.key(3), 0, n, 1, setting.gain, kind == "nlgp")
    x, y = np.asarray(x[:, 0], np.float64), np.asarray(y[:, 0])
    gain_s = setting.gain**2 / (1 + setting.gain**2)
    for label, xi in zip((1.0, -1.0), setting.xi_sites):
        latent = explicit_covariance(setting.side, xi, False, 1e-3)
        expected = np.arcsin(gain_s * latent) / np.arcsin(gain_s)  # the NLGP's x, and the control's by design
        chosen = x[y == label]
        empirical = chosen.T @ chosen / len(chosen)
        # |x| <= 1/Z(3) < 1.2, so each product has variance below 2: 5 standard errors of a mean of ~n/2 of them
        assert np.abs(empirical - expected).max() < 5 * math.sqrt(2 / (n / 2))
    assert abs((y == 1).mean() - 0.5) < 5 * 0.5 / math.sqrt(n)
    if kind == "nlgp":  # bounded: erf(·)/Z(g)
        assert np.abs(x).max() <= 1 / math.sqrt(2 / math.pi * math.asin(gain_s)) + 1e-6


def test_online_sampling_gives_a_new_batch_each_step_and_the_same_one_for_the_same_key():
    chol = jnp.asarray(online.factors(SMALL, "nlgp"))
    key = jax.random.key(7)
    x, y = online.draw(chol, key, 0, 6, 3, SMALL.gain, True)
    again, y_again = online.draw(chol, key, 0, 6, 3, SMALL.gain, True)
    np.testing.assert_array_equal(x, again)
    np.testing.assert_array_equal(y, y_again)
    flat = np.asarray(x).reshape(18, -1)
    assert len({row.tobytes() for row in flat}) == 18  # every input of every step is new
    later, _ = online.draw(chol, key, 4, 2, 3, SMALL.gain, True)  # steps 4 and 5 alone: the same inputs
    np.testing.assert_array_equal(later, x[4:])
    other, _ = online.draw(chol, jax.random.key(8), 0, 6, 3, SMALL.gain, True)
    assert not any(np.array_equal(a, b) for a, b in zip(np.asarray(other), np.asarray(x)))


def _analytic_gradients(params, x, y):
    """∂/∂W and ∂/∂b of mean((Σ_k v_k·erf(h_k/√2) − y)²), h = xW/√D + b, in float64 (d/dh erf(h/√2) =
    √(2/π)·e^{−h²/2}), with math.erf for the forward pass."""
    w, b, v = (np.asarray(params[k], np.float64) for k in ("kernel", "bias", "readout"))
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    h = x @ w / math.sqrt(x.shape[1]) + b
    out = np.array([sum(v[k] * math.erf(h[i, k] / math.sqrt(2)) for k in range(len(v))) for i in range(len(x))])
    slope = math.sqrt(2 / math.pi) * np.exp(-(h**2) / 2)  # d/dh erf(h/√2)
    delta = 2 * (out - y)[:, None] * v * slope / len(x)  # [batch, K]
    return x.T @ delta / math.sqrt(x.shape[1]), delta.sum(0)


@pytest.mark.parametrize("bias", ["none", "trained", "fixed"])
def test_the_erf_network_with_a_fixed_readout_has_gradients_only_in_the_first_layer(bias):
    setting = dataclasses.replace(SMALL, bias=bias, bias_value=0.5)
    params = loop.init_params(setting, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, setting.sites))
    y = jnp.array([1.0, -1.0, 1.0, 1.0, -1.0])
    grads = jax.grad(loop.loss)(params, x, y, bias == "trained")
    assert not np.any(np.asarray(grads["readout"]))
    kernel, bias_grad = _analytic_gradients(params, x, y)
    # float32 forward and backward over D = 16 inputs: a few hundred roundings at most, relative to the largest entry
    scale = np.abs(kernel).max()
    np.testing.assert_allclose(grads["kernel"], kernel, atol=256 * U32 * scale)
    if bias == "trained":
        np.testing.assert_allclose(grads["bias"], bias_grad, atol=256 * U32 * np.abs(bias_grad).max())
    else:
        assert not np.any(np.asarray(grads["bias"]))
    expected_bias = {"none": 0.0, "trained": 1.0, "fixed": 0.5}[bias] * np.array([1, 1, 1, 1, -1, -1, -1, -1])
    np.testing.assert_array_equal(params["bias"], expected_bias.astype(np.float32))
    np.testing.assert_array_equal(params["readout"], np.full(8, 1 / 8, np.float32))


def _stack(tree, count):
    return jax.tree.map(lambda a: jnp.stack([a] * count), tree)


def test_one_online_step_is_their_sgd_step_and_chunking_does_not_change_the_run():
    setting = dataclasses.replace(SMALL, chunk=1)
    chol = jnp.asarray(online.factors(setting, "nlgp"))
    key = jax.random.key(2)
    params = _stack(loop.init_params(setting, jax.random.key(0)), 1)
    hyper = (jnp.zeros(1), jnp.zeros(1))  # λ = β = 0: plain SGD
    opt = jax.vmap(lambda p, lam, beta: loop.optimizer(setting, lam, beta).init(p))(params, *hyper)
    stepped, _ = loop.advance((params, opt), hyper, chol, key, 0, 1, True, setting=setting)
    x, y = online.draw(chol, key, 0, 1, 1, setting.gain, True)
    kernel, bias = _analytic_gradients(jax.tree.map(lambda a: a[0], params), x[0], y[0])
    lr = 0.05 * 8  # their lr times K (mean-field)
    np.testing.assert_allclose(stepped["kernel"][0], params["kernel"][0] - lr * kernel, rtol=0, atol=1e-6)
    np.testing.assert_allclose(stepped["bias"][0], params["bias"][0] - lr / 16 * bias, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(stepped["readout"], params["readout"])
    whole, _ = loop.advance((params, opt), hyper, chol, key, 0, 6, True, setting=setting)
    parts = (params, opt)
    for first, count in ((0, 2), (2, 4)):
        parts = loop.advance(parts, hyper, chol, key, first, count, True, setting=setting)
    np.testing.assert_array_equal(whole["kernel"], parts[0]["kernel"])


def test_the_l1_arms_step_through_optim_blasso_and_do_not_disturb_each_other():
    """Runs stacked together take the same inputs: the SGD run is the same alone or beside two β-LASSO runs, and
    a β-LASSO run holds exactly zero wherever |w| < βλ, as `optim.blasso` does."""
    setting = dataclasses.replace(SMALL, chunk=4)
    chol = jnp.asarray(online.factors(setting, "nlgp_gaussian"))
    key = jax.random.key(4)
    init = loop.init_params(setting, jax.random.key(0))

    def run(l1, beta):
        params, hyper = _stack(init, len(l1)), (jnp.array(l1), jnp.array(beta))
        opt = jax.vmap(lambda p, lam, b: loop.optimizer(setting, lam, b).init(p))(params, *hyper)
        return loop.advance((params, opt), hyper, chol, key, 0, 3, False, setting=setting)[0]

    alone, together = run([0.0], [0.0]), run([0.0, 1e-3, 1e-3], [0.0, 50.0, 1.0])
    np.testing.assert_allclose(together["kernel"][0], alone["kernel"][0], rtol=0, atol=1e-6)
    pruned = np.asarray(together["kernel"][1])
    assert np.all((pruned == 0) | (np.abs(pruned) >= 50 * 1e-3)) and (pruned == 0).any()
    assert not np.array_equal(pruned, np.asarray(together["kernel"][0]))


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("ndim", 3, "ndim must be 1 (L sites) or 2 (L×L sites), got 3"),
        ("side", 1, "side L must be >= 2 sites, got 1"),
        ("xis", (0.0, 0.5), "xis must be two different correlation lengths > 0, got (0.0, 0.5)"),
        ("xis", (0.5, 0.5), "got (0.5, 0.5)"),
        ("gain", -1.0, "gain must be a finite number > 0, got -1.0"),
        ("gain", float("nan"), "got nan"),
        ("units", 3, "units K must be even and >= 2"),
        ("bias", "learned", "bias must be one of none, trained, fixed, got 'learned'"),
    ],
)
def test_settings_that_make_no_sense_are_refused_in_one_line(field, value, fragment):
    with pytest.raises(ValueError) as error:
        dataclasses.replace(SMALL, **{field: value})
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_covariance_that_is_not_positive_definite_is_refused_in_one_line():
    # A periodic exp(−d²/ξ²) with ξ = 12 sites on a ring of 6 has a negative eigenvalue (−0.027) that 1e-3 does
    # not lift; open boundaries keep it positive definite.
    setting = online.OnlineSetting(side=6, ndim=1, xis=(0.1, 2.0), periodic=True)
    with pytest.raises(ValueError, match="xi=12 sites on a periodic side of 6 is not positive definite") as error:
        online.factors(setting, "nlgp")
    assert "\n" not in str(error.value) and "valid: open boundaries" in str(error.value)
    assert online.factors(dataclasses.replace(setting, periodic=False), "nlgp").shape == (2, 6, 6)
    with pytest.raises(ValueError, match="unknown arms \\['sgd2'\\]; valid: sgd, l1, beta1, beta50"):
        runs.Plan(arms=("sgd2",))


def test_the_quick_variant_writes_one_record_per_run_a_table_and_figures_and_reads_them_back(tmp_path, capsys):
    from experiments import nlgp as experiment

    results, figures = tmp_path / "results", tmp_path / "figures"
    argv = ["--setting=ingrosso_goldt", "--quick", f"--workdir={tmp_path}", f"--figures_dir={figures}"]
    run(experiment, argv)
    names = sorted(p.stem for p in results.glob("*.json"))
    assert names == sorted(
        f"{k}-{a}-seed0" for k in ("nlgp", "nlgp_gaussian") for a in ("sgd", "l1", "beta1", "beta50")
    )
    record = __import__("json").loads((results / "nlgp-beta50-seed0.json").read_text())
    assert (record["dataset"], record["arm"], record["seed"], record["l1"], record["beta"]) == (
        "nlgp",
        "beta50",
        0,
        1e-5,
        50.0,
    )
    assert np.array(record["first_layer_kernel"]).shape == (400, 8)  # [D, K]
    assert record["t"][0] == 0 and record["t"][-1] == 20 and len(record["unit_ipr"]) == len(record["t"])
    assert all(len(units) == 8 for units in record["unit_ipr"])
    assert record["unit_ipr"][-1] == record["unit_iprs"] and record["locality"]["ipr_random"] == 3 / 402
    assert record["command"] == "python -m experiments.nlgp --setting=ingrosso_goldt --quick --seeds=0"
    assert record["wall_seconds"] > 0 and record["host"]["cpu_model"]
    assert record["lambda_selection"]["grid"][0]["l1"] == 1e-5 and record["validation"]["count"] == 2000
    table = (results / "table.md").read_text()
    assert "| NLGP | SGD | - | 1 |" in table and "| Gaussian control | β-LASSO β=50 | 1e-05 | 1 |" in table
    for name in ("nlgp_ingrosso_goldt_ipr", "nlgp_ingrosso_goldt_fields"):
        assert (figures / f"{name}.png").stat().st_size > 0
    mtimes = {p: p.stat().st_mtime_ns for p in results.glob("*.json")}
    run(experiment, argv)  # finished streams are read back, not trained again
    assert {p: p.stat().st_mtime_ns for p in results.glob("*.json")} == mtimes
    assert "NLGP" in capsys.readouterr().out
