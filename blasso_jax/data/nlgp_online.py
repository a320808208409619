"""Ingrosso & Goldt's own setting of the NLGP task: the setting and its inputs, drawn on device.

Their code (`sgoldt/conv_emerge`: conv_emerge_online.py, inputs.py, tasks.py, network.py) trains an erf network
online (`blasso_jax.training.online`) with a fresh batch of one every step and time t = steps/D. Inputs are L×L
(`ndim=2`) or L sites (`ndim=1`), D = L^ndim, labelled y = ±1 (+1 for the shorter correlation length). The latent
z ~ N(0, C + 10⁻³·I), C = exp(−d²/ξ²) with d the open (their default) or periodic (`--pbc`) distance, the 2-D
C a Kronecker product of two 1-D ones; NLGP inputs are erf(g·z/√2)/Z(g), the Gaussian control draws x with
the NLGP's covariance (`nlgp.erf_covariance`). ξ are given as they give them (`--xis`), multiplied by L
when `extensive_xis` (`--extensivexis`). Biases: 'none' (their default, held at 0), 'trained' (`--bias`:
±1 for the two halves of the units, learning rate lr/D) or 'fixed' (`--bias b`: ±b, not trained).

The inputs of `chunk` steps are drawn in one matrix product (`draw`); the input of step s depends only on the
data key and s (`fold_in(key, s)`), not on the chunking.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from blasso_jax.common import rng
from blasso_jax.data import nlgp
from blasso_jax.data.geometry import Geometry

BIAS_MODES = ("none", "trained", "fixed")
KINDS = nlgp.KINDS  # ('nlgp', 'nlgp_gaussian')


@dataclasses.dataclass(frozen=True)
class OnlineSetting:
    """One online setting; each field names the flag of `conv_emerge_online.py` it reproduces. Defaults: their
    defaults except `ndim=2, side=20` (their figure's 20×20 inputs, D = 400), `extensive_xis`, `gain=3` and
    `bias='trained'` (their figure's command is not in their repository: docs/results.md says why these) and
    `time=1e4` (their figure's last t)."""

    side: int = 20  # -D: sites per side (their D is the side; the input dimension is side**dim)
    ndim: int = 2  # --dim
    xis: tuple[float, float] = (0.1, 0.5)  # --xis: the correlation lengths of class +1 and class -1
    extensive_xis: bool = True  # --extensivexis: ξ = xis·side sites
    gain: float = 3.0  # --gain (their default 1)
    periodic: bool = False  # --pbc
    units: int = 8  # -K
    learning_rate: float = 0.05  # --lr, before their mean-field ×K
    init_std: float = 0.1  # std0 of network.TwoLayer
    bias: str = "trained"  # none | trained (--bias) | fixed (--bias b)
    bias_value: float = 1.0  # ±b of the two halves of the units (their trained biases start at ±1)
    batch: int = 1  # --bs
    time: float = 1e4  # --time: the last t = steps/D
    points: int = 48  # recording times after t=0, log-spaced from one chunk to `time`
    chunk: int = 100  # steps whose inputs are drawn in one matrix product
    perturbation: float = 1e-3  # added to the diagonal of C, as theirs

    def __post_init__(self):
        for message in _problems(self):
            raise ValueError(message)

    @property
    def sites(self) -> int:
        """D = side**ndim, the input dimension."""
        return self.side**self.ndim

    @property
    def xi_sites(self) -> tuple[float, float]:
        """ξ in sites: `xis`, times `side` when extensive."""
        return tuple(x * self.side if self.extensive_xis else x for x in self.xis)

    @property
    def kernel_lr(self) -> float:
        """Their first-layer rate: lr·K (`--model mf`)."""
        return self.learning_rate * self.units

    @property
    def bias_lr(self) -> float:
        """Their bias rate: lr·K/D."""
        return self.kernel_lr / self.sites

    @property
    def total_steps(self) -> int:
        """`time`·D steps, rounded up to whole chunks."""
        return self.chunk * math.ceil(self.time * self.sites / self.chunk)

    @property
    def record_steps(self) -> tuple[int, ...]:
        """0, then `points` log-spaced steps from one chunk to `total_steps`, rounded to whole chunks."""
        chunks = self.total_steps // self.chunk
        spaced = np.unique(np.round(np.geomspace(1, chunks, self.points)).astype(int))
        return (0, *(int(c) * self.chunk for c in spaced))

    @property
    def geometry(self) -> Geometry:
        """Where the locality measure reads a unit: a torus or ring when periodic, an image or line when open;
        its window 2·round(ξ₀)+1 sites (within ξ₀ of a centre), at most the side."""
        window = max(1, min(self.side, 2 * round(self.xi_sites[0]) + 1))
        if self.ndim == 1:
            return Geometry("ring" if self.periodic else "line", (1, self.side), window=window)
        return Geometry("torus" if self.periodic else "image", (self.side, self.side), window=window)


def _problems(s: OnlineSetting) -> list[str]:
    """One line per out-of-range field, naming the value and the valid range."""
    checks = (
        (s.ndim in (1, 2), f"ndim must be 1 (L sites) or 2 (L×L sites), got {s.ndim}"),
        (s.side >= 2, f"side L must be >= 2 sites, got {s.side}"),
        (
            len(s.xis) == 2 and all(math.isfinite(x) and x > 0 for x in s.xis) and s.xis[0] != s.xis[1],
            f"xis must be two different correlation lengths > 0, got {s.xis}",
        ),
        (math.isfinite(s.gain) and s.gain > 0, f"gain must be a finite number > 0, got {s.gain}"),
        (s.units >= 2 and s.units % 2 == 0, f"units K must be even and >= 2 (two halves of biases), got {s.units}"),
        (math.isfinite(s.learning_rate) and s.learning_rate > 0, f"learning_rate must be > 0, got {s.learning_rate}"),
        (math.isfinite(s.init_std) and s.init_std > 0, f"init_std must be > 0, got {s.init_std}"),
        (s.bias in BIAS_MODES, f"bias must be one of {', '.join(BIAS_MODES)}, got {s.bias!r}"),
        (math.isfinite(s.bias_value), f"bias_value must be finite, got {s.bias_value}"),
        (s.batch >= 1, f"batch must be >= 1, got {s.batch}"),
        (math.isfinite(s.time) and s.time > 0, f"time must be > 0 (t = steps/D), got {s.time}"),
        (s.points >= 1 and s.chunk >= 1, f"points and chunk must be >= 1, got {s.points} and {s.chunk}"),
        (s.perturbation >= 0, f"perturbation must be >= 0, got {s.perturbation}"),
    )
    return [message for ok, message in checks if not ok]


def latent_covariance(setting: OnlineSetting, xi: float) -> np.ndarray:
    """C + perturbation·I, C_ij = exp(−d_ij²/ξ²) (ξ in sites), float64 [D, D], as their `inputs.trans_inv_var`:
    d open or periodic along each axis, the 2-D matrix the Kronecker product of two 1-D ones."""
    positions = np.arange(setting.side, dtype=np.float64)
    distances = np.abs(positions[None] - positions[:, None])
    if setting.periodic:
        distances = np.minimum(distances, setting.side - distances)
    line = np.exp(-(distances**2) / xi**2)
    full = line if setting.ndim == 1 else np.kron(line, line)
    return full + setting.perturbation * np.eye(len(full))


def sampling_covariances(setting: OnlineSetting, kind: str) -> np.ndarray:
    """[2, D, D] float64: per class, the covariance of the Gaussian that is drawn (the latent z for NLGP, the
    inputs themselves for the Gaussian control, which has the NLGP's covariance)."""
    if kind not in KINDS:
        raise ValueError(f"unknown input kind {kind!r}; valid: {', '.join(KINDS)}")
    latent = [latent_covariance(setting, xi) for xi in setting.xi_sites]
    if kind == "nlgp_gaussian":
        latent = [nlgp.erf_covariance(c, setting.gain) for c in latent]
    return np.stack(latent)


def factors(setting: OnlineSetting, kind: str) -> np.ndarray:
    """[2, D, D] float32 lower Cholesky factors A (A·Aᵀ = covariance) per class; a covariance that is not
    positive definite (a periodic exp(−d²/ξ²) with ξ too long for the side) is refused in one line."""
    result = []
    for xi, covariance in zip(setting.xi_sites, sampling_covariances(setting, kind)):
        try:
            result.append(np.linalg.cholesky(covariance))
        except np.linalg.LinAlgError:
            smallest = np.linalg.eigvalsh(covariance)[0]
            raise ValueError(
                f"the {kind} covariance for xi={xi:g} sites on {'a periodic' if setting.periodic else 'an open'} "
                f"side of {setting.side} is not positive definite (smallest eigenvalue {smallest:.2e}); valid: "
                "open boundaries, a longer side, a shorter xi or a larger perturbation"
            ) from None
    return np.stack(result).astype(np.float32)


def draw(
    chol: jax.Array, key: jax.Array, first_step: int | jax.Array, steps: int, batch: int, gain: float, nonlinear: bool
) -> tuple[jax.Array, jax.Array]:
    """The inputs and labels of steps first_step … first_step+steps−1: x [steps, batch, D] float32 and y
    [steps, batch] (+1: class 0, the shorter ξ; −1: class 1), balanced in expectation as their `Mixture`.
    `chol` from `factors`; `nonlinear` (may be traced): NLGP's erf(g·z/√2)/Z(g), else the Gaussian itself.
    Step s uses `fold_in(key, s)` alone, so a step's batch is the same whatever the chunking."""

    def one(step):
        step_key = jax.random.fold_in(key, step)
        label = jax.random.bernoulli(rng.child(step_key, "online_label"), shape=(batch,))
        noise = jax.random.normal(rng.child(step_key, "online_noise"), (batch, chol.shape[-1]))
        return label, noise

    labels, noise = jax.vmap(one)(first_step + jnp.arange(steps))
    z = jnp.where(labels[..., None], noise @ chol[1].T, noise @ chol[0].T)
    x = jnp.where(nonlinear, jax.scipy.special.erf(gain * z / math.sqrt(2)) / nlgp.normaliser(gain), z)
    return x, 1.0 - 2.0 * labels.astype(jnp.float32)
