"""NLGP: the non-linear Gaussian process task where a local first layer must emerge, and its Gaussian control.

Ingrosso & Goldt (PNAS 2022, "Data-driven emergence of convolutional structure in neural networks"):
z ~ N(0, C) on a ring (D sites) or a torus (D×D sites), C_ij = exp(−d_ij²/ξ²) with d the periodic
distance, and x = erf(g·z/√2)/Z(g) with Z(g)² = (2/π)·arcsin(g²/(1+g²)), so every site has unit
variance. Two balanced classes differ only in the correlation length, ξ₀ < ξ₁. At large gain g the
sites are bounded and platykurtic (negative excess kurtosis; uniform on [−1, 1] at g=1), which Lufkin,
Saxe & Grant (NeurIPS 2024) show drives localisation; as g → 0 they become Gaussian.

`nlgp_gaussian` draws Gaussian inputs with exactly the covariance of the NLGP's x (`erf_covariance`):
the same second-order statistics, no higher-order ones. A first layer that localises on `nlgp` and
not on `nlgp_gaussian` localises because of the non-Gaussian structure, not the correlations.

A dataset name is a spec string, `nlgp:dim=40,xi=1:3,gain=3,ndim=1` (every key optional):

- dim: sites per side (D ≥ 2; the torus has D×D sites), default 40;
- xi: the two correlation lengths ξ₀:ξ₁, 0 < ξ₀ < ξ₁, default 1:3;
- gain: g > 0, default 3;
- ndim: 1 (ring, inputs of shape (1, D, 1)) or 2 (torus, (D, D, 1)), default 1;
- train, test: examples drawn for the training split (the validation split is carved from it) and
  the test split, defaults 10000 and 2000;
- window: side of the locality window in sites, default 2·round(ξ₀)+1 (the sites within ξ₀ of a
  centre, where the shorter-range class is correlated above e⁻¹).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.special import erf

from blasso_jax.data.geometry import Geometry
from blasso_jax.data.local_data import Splits

KINDS = ("nlgp", "nlgp_gaussian")
SPEC_KEYS = ("dim", "xi", "gain", "ndim", "train", "test", "window")


@dataclasses.dataclass(frozen=True)
class NLGPSpec:
    """The parameters of an NLGP dataset (see the module docstring); `parse_spec` builds one from a name."""

    kind: str = "nlgp"
    dim: int = 40
    xi: tuple[float, float] = (1.0, 3.0)
    gain: float = 3.0
    ndim: int = 1
    train: int = 10000
    test: int = 2000
    window: int | None = None

    @property
    def sites(self) -> int:
        """D for the ring, D² for the torus."""
        return self.dim**self.ndim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(1, D, 1) for the ring, (D, D, 1) for the torus: the `Dataset` layout (NHWC without N)."""
        return (1, self.dim, 1) if self.ndim == 1 else (self.dim, self.dim, 1)

    @property
    def geometry(self) -> Geometry:
        """The ring or torus the locality measure reads each unit's weights on."""
        window = self.window if self.window is not None else min(self.dim, 2 * round(self.xi[0]) + 1)
        kind = "ring" if self.ndim == 1 else "torus"
        return Geometry(kind, self.image_shape[:2], channels=1, window=window)


def is_spec(name: str) -> bool:
    """Whether a dataset name is an NLGP spec ('nlgp', 'nlgp_gaussian', or either followed by ':key=value,…')."""
    return name.split(":", 1)[0] in KINDS


def parse_spec(name: str) -> NLGPSpec:
    """The `NLGPSpec` of a dataset name such as 'nlgp:dim=40,xi=1:3,gain=3,ndim=1'.

    Args:
      name: 'nlgp' or 'nlgp_gaussian', optionally followed by ':' and comma-separated key=value pairs.

    Returns:
      The spec, with defaults for the keys not given.

    Raises:
      ValueError: one line naming the bad key or value and the valid ones.

    Examples:
      >>> spec = parse_spec("nlgp_gaussian:dim=32,ndim=2,xi=1:4")
      >>> (spec.kind, spec.sites, spec.xi, spec.gain, spec.geometry.window)
      ('nlgp_gaussian', 1024, (1.0, 4.0), 3.0, 3)
    """
    kind, _, rest = name.partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown NLGP dataset {kind!r}; valid: {', '.join(KINDS)}")
    values: dict = {"kind": kind}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if key not in SPEC_KEYS or not sep:
            raise ValueError(
                f"bad NLGP spec entry {item!r} in {name!r}; valid keys (key=value): {', '.join(SPEC_KEYS)}"
            )
        values[key] = _parse_value(key, value, name)
    spec = NLGPSpec(**values)
    _check_spec(spec, name)
    return spec


def _parse_value(key: str, value: str, name: str):
    """One spec value in its type: xi a pair 'a:b', gain a float, the others integers."""
    try:
        if key == "xi":
            low, high = value.split(":")
            return (float(low), float(high))
        return float(value) if key == "gain" else int(value)
    except ValueError:
        form = "two numbers a:b" if key == "xi" else ("a number" if key == "gain" else "an integer")
        raise ValueError(f"NLGP spec key {key}={value!r} in {name!r} must be {form}") from None


def _check_spec(spec: NLGPSpec, name: str) -> None:
    """Raises a one-line ValueError for the first value out of range."""
    low, high = spec.xi
    checks = (
        ("dim", spec.dim >= 2, f"dim must be >= 2, got {spec.dim}"),
        ("ndim", spec.ndim in (1, 2), f"ndim must be 1 (ring) or 2 (torus), got {spec.ndim}"),
        ("xi", math.isfinite(high) and 0 < low < high, f"xi must be xi0:xi1 with 0 < xi0 < xi1, got {low:g}:{high:g}"),
        ("gain", math.isfinite(spec.gain) and spec.gain > 0, f"gain must be > 0, got {spec.gain:g}"),
        ("train", spec.train >= 2, f"train must be >= 2 (one example per class), got {spec.train}"),
        ("test", spec.test >= 2, f"test must be >= 2 (one example per class), got {spec.test}"),
        (
            "window",
            spec.window is None or 1 <= spec.window <= spec.dim,
            f"window must be 1 to dim={spec.dim} sites, got {spec.window}",
        ),
    )
    for key, ok, message in checks:
        if not ok:
            raise ValueError(f"NLGP spec {name!r}: {message} (key {key!r})")
    for xi in spec.xi:
        spectrum = correlation_spectrum(spec.dim, spec.ndim, xi)
        if spectrum.min() < -_PSD_TOLERANCE * spectrum.max():
            raise ValueError(
                f"NLGP spec {name!r}: exp(-d²/ξ²) with xi={xi:g} is not a covariance on a "
                f"{'ring of ' + str(spec.dim) if spec.ndim == 1 else f'{spec.dim}x{spec.dim} torus of'} sites "
                f"(eigenvalue {spectrum.min() / spectrum.max():.1e} of the largest); use a larger dim (about 8·xi) "
                "or a shorter xi (key 'dim')"
            )


# A periodic Gaussian kernel is positive semi-definite only when the ring is long enough for ξ. Eigenvalues
# below −1e-6 of the largest are refused; smaller ones are round-off or a change far below any sampling error.
_PSD_TOLERANCE = 1e-6


def correlation_spectrum(dim: int, ndim: int, xi: float) -> np.ndarray:
    """The eigenvalues of C = exp(−d²/ξ²) on the ring or torus: C is (block-)circulant, so they are the DFT of
    its first row, in O(sites·log sites) instead of an eigendecomposition."""
    offsets = np.arange(dim)
    ring = np.minimum(offsets, dim - offsets).astype(np.float64) ** 2
    squared = ring if ndim == 1 else ring[:, None] + ring[None, :]
    return np.real(np.fft.fftn(np.exp(-squared / xi**2)))


def periodic_squared_distances(dim: int, ndim: int) -> np.ndarray:
    """[sites, sites] squared periodic distances on the ring (ndim=1) or torus (ndim=2), sites in row-major order."""
    offsets = np.abs(np.arange(dim)[:, None] - np.arange(dim)[None, :])
    ring = np.minimum(offsets, dim - offsets).astype(np.float64) ** 2
    if ndim == 1:
        return ring
    return (ring[:, None, :, None] + ring[None, :, None, :]).reshape(dim * dim, dim * dim)


def correlation(spec: NLGPSpec, xi: float) -> np.ndarray:
    """C_ij = exp(−d_ij²/ξ²) of the latent Gaussian z, float64 [sites, sites]."""
    return np.exp(-periodic_squared_distances(spec.dim, spec.ndim) / xi**2)


def erf_covariance(C: np.ndarray, gain: float) -> np.ndarray:
    """Covariance of x = erf(g·z/√2)/Z(g) for z ~ N(0, C) with unit diagonal, in closed form.

    For a = g/√2, E[erf(a z_i) erf(a z_j)] = (2/π)·arcsin(2a²C_ij / (1 + 2a²)) (C_ii = 1), and Z(g)² is the
    diagonal of that, so Cov(x_i, x_j) = arcsin(g²C_ij/(1+g²)) / arcsin(g²/(1+g²)): 1 on the diagonal.
    """
    s = gain**2 / (1 + gain**2)
    return np.arcsin(s * C) / np.arcsin(s)


def normaliser(gain: float) -> float:
    """Z(g) = sqrt((2/π)·arcsin(g²/(1+g²))), the standard deviation of erf(g·z/√2) for z ~ N(0, 1)."""
    return math.sqrt(2 / math.pi * math.asin(gain**2 / (1 + gain**2)))


def _square_root(covariance: np.ndarray) -> np.ndarray:
    """A with A·Aᵀ = covariance, from its eigendecomposition (negative round-off eigenvalues clipped to 0):
    a Gaussian kernel exp(−d²/ξ²) is numerically rank-deficient for long ξ, so Cholesky would fail."""
    values, vectors = np.linalg.eigh(covariance)
    return vectors * np.sqrt(np.clip(values, 0, None))


def sample(spec: NLGPSpec, xi: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` inputs of correlation length `xi`, float32 [count, sites]: NLGP or its Gaussian control."""
    C = correlation(spec, xi)
    if spec.kind == "nlgp":
        z = rng.standard_normal((count, spec.sites)) @ _square_root(C).T
        return (erf(spec.gain * z / math.sqrt(2)) / normaliser(spec.gain)).astype(np.float32)
    return (rng.standard_normal((count, spec.sites)) @ _square_root(erf_covariance(C, spec.gain)).T).astype(np.float32)


def _split(spec: NLGPSpec, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` examples, half of each class (label c has correlation length ξ_c), in random order."""
    labels = rng.permutation(np.arange(count) % 2).astype(np.int32)
    x = np.empty((count, spec.sites), np.float32)
    for label in (0, 1):
        chosen = labels == label
        x[chosen] = sample(spec, spec.xi[label], int(chosen.sum()), rng)
    return x.reshape(count, *spec.image_shape), labels


def generate(spec: NLGPSpec, seed: int) -> Splits:
    """Train and test splits of `spec`, deterministic from `seed`: each split from its own stream
    (`default_rng([seed, split])`), so the test set does not change with the training size.

    Examples:
      >>> splits = generate(parse_spec("nlgp:dim=8,xi=0.5:1,train=6,test=4"), seed=0)
      >>> splits.x_train.shape, splits.x_train.dtype.name, sorted(splits.y_test.tolist())
      ((6, 1, 8, 1), 'float32', [0, 0, 1, 1])
    """
    x_train, y_train = _split(spec, spec.train, np.random.default_rng([seed, 0]))
    x_test, y_test = _split(spec, spec.test, np.random.default_rng([seed, 1]))
    names = tuple(f"xi={xi:g}" for xi in spec.xi)
    return Splits(x_train, y_train, x_test, y_test, names)
