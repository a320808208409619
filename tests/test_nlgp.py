"""The NLGP task and its Gaussian control (blasso_jax.data.nlgp), as a dataset, and the models that read it."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from blasso_jax import count_params, create_model
from blasso_jax.data import augment, nlgp
from blasso_jax.data import datasets as data
from blasso_jax.reporting import report

N = 40_000
Z5 = 5.0  # a single sampling check allows 5 standard errors: a false alarm below 1 in 1.7 million


def z_for(count: int) -> float:
    """Standard errors allowed per entry when `count` entries are checked at once (Bonferroni): the chance that
    any of them falsely fails stays below 1e-6 under the normal approximation."""
    return float(stats.norm.isf(0.5e-6 / count))


def normal_expectation(f) -> tuple[float, float]:
    """E[f(z)] for z ~ N(0, 1) by adaptive quadrature on [-9, 9] (the tails beyond hold 2e-19 of the mass), with
    quad's error estimate."""
    return integrate.quad(lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -9, 9, epsabs=1e-12)


@pytest.mark.parametrize("gain", [0.5, 1.0, 3.0, 10.0])
def test_the_closed_form_erf_covariance_matches_numerical_integration(gain):
    """E[erf(a z_i) erf(a z_j)] for correlation rho, integrated over the bivariate normal density (scipy's dblquad
    with its own error estimate), against (2/π)·arcsin(2a²ρ/(1+2a²)); Z(g)² is the ρ = 1 case."""
    a = gain / math.sqrt(2)
    for rho in (0.3, 0.8):
        s = math.sqrt(1 - rho**2)

        def integrand(v, u, s=s, rho=rho):
            return (
                special.erf(a * u) * special.erf(a * (rho * u + s * v)) * math.exp(-(u * u + v * v) / 2) / (2 * math.pi)
            )

        value, error = integrate.dblquad(integrand, -9, 9, -9, 9, epsabs=1e-10, epsrel=1e-10)
        closed = (2 / math.pi) * math.asin(2 * a**2 * rho / (1 + 2 * a**2))
        assert abs(value - closed) <= 10 * error + 1e-18
    value, error = normal_expectation(lambda z: special.erf(a * z) ** 2)
    assert abs(nlgp.normaliser(gain) ** 2 - value) <= 10 * error + 1e-15


def empirical_covariance(x: np.ndarray) -> np.ndarray:
    return x.T @ x / len(x)  # the mean is 0 by symmetry, so it is not estimated


def product_variance(x: np.ndarray) -> np.ndarray:
    """Var(x_i x_j) estimated from the sample, E[x_i² x_j²] − E[x_i x_j]², without an [N, S, S] array."""
    return (x**2).T @ (x**2) / len(x) - empirical_covariance(x) ** 2


def test_nlgp_sites_have_unit_variance_the_latent_field_has_covariance_c_and_x_the_closed_form():
    spec = nlgp.parse_spec("nlgp:dim=12,xi=1:2,gain=1")
    x = nlgp.sample(spec, 2.0, N, np.random.default_rng(0)).astype(np.float64)
    C = nlgp.correlation(spec, 2.0)
    # The latent z back from x (erf is invertible; at g=1 x stays away from the float32 saturation of erf).
    z = math.sqrt(2) * special.erfinv(np.clip(x * nlgp.normaliser(1.0), -1, 1)) / 1.0
    # For Gaussian z, Var(z_i z_j) = 1 + C_ij², so the sample covariance has standard error sqrt((1 + C²)/N).
    z_entries = z_for(12 * 13 // 2)  # the distinct entries of a symmetric 12x12 matrix
    np.testing.assert_array_less(np.abs(empirical_covariance(z) - C), z_entries * np.sqrt((1 + C**2) / N))
    target = nlgp.erf_covariance(C, 1.0)
    np.testing.assert_allclose(np.diag(target), 1.0, rtol=1e-12)
    # x is bounded, so x_i x_j has a finite variance, estimated from the sample (the plug-in standard error).
    standard_error = np.sqrt(product_variance(x) / N)
    np.testing.assert_array_less(np.abs(empirical_covariance(x) - target), z_entries * standard_error)


def test_the_gaussian_control_has_exactly_the_nlgp_covariance():
    for ndim, dim, xi in ((1, 40, 3.0), (2, 16, 2.0)):
        tail = f"dim={dim},ndim={ndim},gain=3,xi=1:{xi:g}"
        target = nlgp.erf_covariance(nlgp.correlation(nlgp.parse_spec(f"nlgp:{tail}"), xi), 3.0)
        gaussian = nlgp.sample(nlgp.parse_spec(f"nlgp_gaussian:{tail}"), xi, N, np.random.default_rng(1))
        gaussian = gaussian.astype(np.float64)
        z_entries = z_for(len(target) * (len(target) + 1) // 2)
        # Gaussian: Var(x_i x_j) = Σ_ii Σ_jj + Σ_ij² = 1 + Σ_ij².
        gaussian_error = (1 + target**2) / N
        np.testing.assert_array_less(
            np.abs(empirical_covariance(gaussian) - target), z_entries * np.sqrt(gaussian_error)
        )
        nonlinear = nlgp.sample(nlgp.parse_spec(f"nlgp:{tail}"), xi, N, np.random.default_rng(2)).astype(np.float64)
        both = np.sqrt(gaussian_error + product_variance(nonlinear) / N)  # the two estimates are independent
        difference = np.abs(empirical_covariance(gaussian) - empirical_covariance(nonlinear))
        np.testing.assert_array_less(difference, z_entries * both)


def excess_kurtosis_and_error(values: np.ndarray) -> tuple[float, float]:
    """Sample excess kurtosis m4/m2² − 3 and its delta-method standard error (independent values)."""
    m2, m4 = (values**2).mean(), (values**4).mean()
    gradient = np.array([-2 * m4 / m2**3, 1 / m2**2])
    covariance = np.cov(np.stack([values**2, values**4]))
    return m4 / m2**2 - 3, math.sqrt(gradient @ covariance @ gradient / len(values))


@pytest.mark.parametrize("gain", [0.1, 1.0, 10.0])
def test_nlgp_excess_kurtosis_is_negative_at_large_gain_and_near_zero_at_small_gain(gain):
    a = gain / math.sqrt(2)
    # The population value by quadrature: E[erf(az)^4] / E[erf(az)^2]^2 - 3.
    m2 = normal_expectation(lambda z: special.erf(a * z) ** 2)[0]
    m4 = normal_expectation(lambda z: special.erf(a * z) ** 4)[0]
    population = m4 / m2**2 - 3
    spec = nlgp.parse_spec(f"nlgp:dim=8,xi=0.5:1,gain={gain}")
    site = nlgp.sample(spec, 1.0, 4 * N, np.random.default_rng(3))[:, 0].astype(np.float64)  # one site: independent
    kurtosis, standard_error = excess_kurtosis_and_error(site)
    assert abs(kurtosis - population) < Z5 * standard_error
    if gain == 1.0:
        assert population == pytest.approx(-1.2, abs=1e-6)  # uniform on [-1, 1]
    if gain >= 1.0:
        assert kurtosis < -1.0
    else:
        # erf(u) = (2/√π)(u − u³/3 + …) gives excess kurtosis −8a² = −4g² to leading order, O(g⁴) after it.
        assert population == pytest.approx(-4 * gain**2, rel=0.1)
        assert abs(kurtosis) < 4 * gain**2 * 1.1 + Z5 * standard_error


def test_datasets_are_deterministic_from_the_seed_and_balanced():
    spec = "nlgp:dim=8,ndim=2,xi=1:1.5,train=64,test=32"
    first, again = (data.load_dataset(spec, validation_size=16, seed=7) for _ in range(2))
    other = data.load_dataset(spec, validation_size=16, seed=8)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.x_test, other.x_test)
    more = nlgp.generate(nlgp.parse_spec(spec.replace("train=64", "train=80")), 7)
    np.testing.assert_array_equal(more.x_test, first.x_test)  # the test split has its own stream
    splits = nlgp.generate(nlgp.parse_spec(spec), 7)
    assert np.bincount(splits.y_train).tolist() == [32, 32] and np.bincount(splits.y_test).tolist() == [16, 16]
    assert first.x_train.dtype == np.float32 and first.image_shape == (8, 8, 1)
    assert (first.mean, first.std, first.augment) == ((0.0,), (1.0,), "none")
    assert first.geometry.kind == "torus" and first.geometry.shape == (8, 8) and first.geometry.window == 3
    ring = data.load_dataset("nlgp_gaussian:dim=40,xi=2:5,train=40,test=10", validation_size=10, seed=0)
    assert ring.image_shape == (1, 40, 1) and ring.geometry.kind == "ring" and ring.geometry.window == 5
    assert len(ring.x_train) == 30 and len(ring.x_val) == 10


@pytest.mark.parametrize(
    "spec, key",
    [
        ("nlgp:depth=3", "depth"),
        ("nlgp:xi=3:1", "xi"),
        ("nlgp:xi=2:2", "xi"),
        ("nlgp:dim=1", "dim"),
        ("nlgp:gain=0", "gain"),
        ("nlgp:gain=-1", "gain"),
        ("nlgp:ndim=3", "ndim"),
        ("nlgp:dim=forty", "dim"),
        ("nlgp_gaussian:window=50", "window"),
        ("nlgp:dim=10,xi=1:3", "dim"),  # exp(-d²/9) is not positive semi-definite on a 10-site ring
    ],
)
def test_a_bad_spec_fails_with_one_line_naming_the_key(spec, key):
    with pytest.raises(ValueError) as error:
        data.load_dataset(spec)
    message = str(error.value)
    assert "\n" not in message and key in message and spec in message


def test_float_signals_are_normalised_without_the_image_scale_and_take_no_augmentation():
    x = jnp.asarray([[[[0.5], [-2.0]]]], jnp.float32)
    np.testing.assert_allclose(augment.normalize(x, (0.5,), (2.0,)), [[[[0.0], [-1.25]]]])
    dataset = data.load_dataset("nlgp:dim=8,xi=0.5:1,train=20,test=4", validation_size=4)
    assert dataset.augment == "none"
    for name in ("auto", "none"):
        assert augment.resolve(name, dataset.name, images=False) == "none"
    with pytest.raises(ValueError, match="augment 'crop_flip' does not apply to 'nlgp:dim=8,xi=0.5:1,train=20,test=4'"):
        augment.resolve("crop_flip", dataset.name, images=False)


def test_fc_models_read_torus_inputs_and_two_fc_has_k_hidden_units():
    x = jnp.asarray(data.load_dataset("nlgp:dim=8,ndim=2,xi=0.5:1,train=20,test=4", validation_size=4).x_train[:4])
    for name in ("s-fc", "3-fc", "2-fc"):
        model = create_model(name, 1, 2, (8, 8, 1), width=5)
        variables = model.init(jax.random.key(0), x, train=False)
        assert model.apply(variables, x, train=False).shape == (4, 2)
    variables = create_model("2-fc", 1, 2, (8, 8, 1), width=5).init(jax.random.key(0), x, train=False)
    # Weights: 64 inputs x 5 units (no bias: BatchNorm follows) and the 5 x 2 classifier; with every entry, also
    # BatchNorm's scale and offset per unit and the classifier's 2 biases.
    assert count_params(variables["params"]) == 64 * 5 + 5 * 2
    assert count_params(variables["params"], kernels_only=False) == 64 * 5 + 5 * 2 + 2 * 5 + 2
    assert variables["params"]["layer1"]["kernel"].shape == (64, 5)
    assert create_model("2-fc", 1, 2, (1, 40, 1)).init(jax.random.key(0), jnp.zeros((1, 1, 40, 1)), train=False)[
        "params"
    ]["layer1"]["kernel"].shape == (40, 100)


def test_tables_name_an_nlgp_dataset_by_its_spec_not_as_a_local_copy():
    spec = "nlgp:dim=40,xi=1:3,gain=3"
    assert report.dataset_label(spec) == spec
    assert report.dataset_label("/data/cifar10_jpeg.tar.gz") == "cifar10_jpeg.tar.gz (local copy)"
