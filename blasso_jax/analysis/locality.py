"""Per-unit locality of a dense first layer, against each unit's own sparsity-matched permutation null.

Sparse is not local: a unit with few non-zero weights has a high best-window share and a high
inverse participation ratio wherever its weights sit. So each unit is compared with itself after
its positions are shuffled: the same weights, the same sparsity, no spatial arrangement. A unit is
local when its best window holds several times the share that its shuffled copies' best windows hold.

Each unit's map is |w| summed over input channels, laid out on a `Geometry`: a ring (D sites,
periodic), a torus (D×D, periodic), an image (H×W, windows inside the image, as
`analysis.locality`) or a line (D sites, open: windows inside it). Per unit:

- `share`: the largest share of the unit's |w| inside any window of `window` sites (ring) or
  `window`×`window` sites (torus, image);
- `null`: the mean of that share over `draws` independent uniform permutations of the unit's own sites;
- `ratio` = share / null: ≈ 1 without spatial structure, up to 1/null for a unit inside one window;
- `ipr` = Σm⁴/(Σm²)² of the map m (Lufkin et al.'s convention; Ingrosso & Goldt's code returns its
  reciprocal), from 1/sites (dense, equal) to 1 (one site). IPR does not depend on where the weights are
  (it is exactly invariant under permuting positions), so its permutation null is itself: it measures
  concentration (sparsity), not locality, and is reported beside the ratio as such. Its reference level is
  `random_unit_ipr`, a dense Gaussian unit's: 3/(sites + 2) for one channel;
- `nonzeros`: sites with a non-zero weight in any channel.

`summarize` gives the medians over units with at least `min_nonzeros` non-zero sites (below that a
window share says little: a unit with one non-zero is in a window wherever it sits).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from blasso_jax.common import parallel
from blasso_jax.data.geometry import LINES, Geometry

DRAWS = 5  # permutations per unit: the fewest the null is defined with
MIN_NONZEROS = 5
# Units × sites × draws per chunk: bounds the working set (a few float64 arrays of this many entries).
_CHUNK_ENTRIES = 2**21


def unit_locality(
    kernel: Any, geometry: Geometry, key: jax.Array, *, draws: int = DRAWS, min_nonzeros: int = MIN_NONZEROS
) -> dict[str, Any]:
    """Per-unit best-window share, its permutation null, their ratio, IPR and non-zeros, and their `summary`.

    The channel sums run where the kernel lives; the rest runs on the host in float64, because XLA's
    sort on CPU (the only way to draw permutations there) is about 10x slower than numpy's shuffles.
    The `draws` permutations of the sites are drawn once from `key` and applied to every unit: each unit's
    null is the mean over permutations chosen without looking at any weight, so it is a function of the
    unit alone (permuting the hidden units permutes every per-unit array exactly and leaves `summary`
    unchanged; chunking never changes a number) and a continuous one (weights that differ by a rounding,
    as on another device count, give nulls that differ by about as much).

    Args:
      kernel: `[inputs, units]`, inputs in (row, column, channel) order as `geometry` lays them out.
      geometry: the sites and window (`Geometry`).
      key: a PRNG key for the permutations.
      draws: permutations per unit (at least 5).
      min_nonzeros: units with fewer non-zero sites are left out of `summary`.

    Returns:
      `{'share', 'null', 'ratio', 'ipr', 'nonzeros'}` as numpy arrays [units] (NaN for all-zero units),
      and `summary` (see `summarize`).

    Examples:
      >>> kernel = np.zeros((40, 2), np.float32); kernel[10:13, 0] = 1.0; kernel[::4, 1] = 1.0
      >>> result = unit_locality(kernel, Geometry("ring", (1, 40), window=3), jax.random.key(0))
      >>> result["share"].round(3).tolist(), bool(result["ratio"][0] > 2 > result["ratio"][1])
      ([1.0, 0.1], True)
    """
    if getattr(kernel, "ndim", None) != 2 or kernel.shape[0] != geometry.sites * geometry.channels:
        raise ValueError(
            f"kernel shape {tuple(getattr(kernel, 'shape', ()))} is not [inputs, units] with inputs = "
            f"{geometry.sites} sites x {geometry.channels} channels of the {geometry.kind} {geometry.shape}"
        )
    if draws < 5:
        raise ValueError(f"draws must be >= 5 permutations per unit, got {draws}")
    if kernel.shape[1] == 0:
        raise ValueError("kernel has no units (0 columns)")
    maps = np.asarray(parallel.fetch(_site_maps(jnp.asarray(kernel), geometry.channels)), np.float64)  # [units, S]
    seed = [int(v) for v in np.asarray(jax.random.key_data(key)).ravel()]
    generator = np.random.default_rng(seed)
    orders = np.stack([generator.permutation(geometry.sites) for _ in range(draws)])  # [draws, sites]
    chunk = max(1, _CHUNK_ENTRIES // (geometry.sites * draws))
    pieces = [_chunk(maps[start : start + chunk], geometry, orders) for start in range(0, len(maps), chunk)]
    per_unit = {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}
    nonzeros = (maps > 0).sum(1)
    squares = (maps**2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_unit["ratio"] = per_unit["share"] / per_unit["null"]
        per_unit["ipr"] = np.where(nonzeros > 0, (maps**4).sum(1) / squares**2, np.nan)
    per_unit["nonzeros"] = nonzeros
    return {**per_unit, "summary": summarize(per_unit, min_nonzeros, random_unit_ipr(geometry))}


IPR_FACTOR = 4  # a unit counts as concentrated at IPR ≥ this many times a dense random unit's


@functools.lru_cache(maxsize=16)
def random_unit_ipr(geometry: Geometry) -> float:
    """The expected IPR of a dense Gaussian unit's map on `geometry`: 3/(sites + 2) exactly for one channel (w²/Σw²
    is Beta(1/2, (D−1)/2)); with several channels (|w| summed per site) the mean over 512 units drawn with a
    fixed seed, so that it is the same number everywhere (its spread over units is a few % of it at 1,024 sites).

    Examples:
      >>> random_unit_ipr(Geometry("torus", (20, 20))) == 3 / 402
      True
    """
    if geometry.channels == 1:
        return 3 / (geometry.sites + 2)
    weights = np.random.default_rng(0).standard_normal((512, geometry.sites, geometry.channels))
    maps = np.abs(weights).sum(-1)
    return float(np.mean((maps**4).sum(1) / (maps**2).sum(1) ** 2))


def summarize(
    per_unit: dict[str, np.ndarray], min_nonzeros: int = MIN_NONZEROS, ipr_random: float | None = None
) -> dict[str, Any]:
    """Medians over the units with at least `min_nonzeros` non-zero sites, order-free and JSON-ready.

    Returns:
      `units` (counted), `units_sparse` (1 to min_nonzeros − 1 non-zeros, left out), `units_zero`,
      `ratio_median`, `ratio_ge2_fraction` (share ≥ 2× its null), `share_median`, `null_median`,
      `ipr_median`, `ipr_top_half_mean` (the mean IPR of the more concentrated half of the counted units) and
      `nonzeros_median`; with `ipr_random` (`random_unit_ipr`) also `ipr_random` and `ipr_ge4x_fraction` (units
      at IPR ≥ `IPR_FACTOR` × it). Medians are None when no unit counts.
    """
    nonzeros = per_unit["nonzeros"]
    counted = nonzeros >= min_nonzeros

    def median(name: str) -> float | None:
        return float(np.median(per_unit[name][counted])) if counted.any() else None

    iprs = np.sort(per_unit["ipr"][counted])
    concentration = {"ipr_top_half_mean": float(iprs[len(iprs) // 2 :].mean()) if len(iprs) else None}
    if ipr_random is not None:
        fraction = float((iprs >= IPR_FACTOR * ipr_random).mean()) if len(iprs) else None
        concentration.update(ipr_random=ipr_random, ipr_ge4x_fraction=fraction)
    return {
        **concentration,
        "units": int(counted.sum()),
        "units_sparse": int(((nonzeros > 0) & ~counted).sum()),
        "units_zero": int((nonzeros == 0).sum()),
        "min_nonzeros": min_nonzeros,
        "ratio_median": median("ratio"),
        "ratio_ge2_fraction": float((per_unit["ratio"][counted] >= 2).mean()) if counted.any() else None,
        "share_median": median("share"),
        "null_median": median("null"),
        "ipr_median": median("ipr"),
        "nonzeros_median": median("nonzeros"),
    }


def best_window_share(maps: np.ndarray, geometry: Geometry) -> np.ndarray:
    """[..., sites] non-negative maps -> [...] the largest window sum over the map's total (NaN for a zero map).

    Box sums are differences of cumulative sums along each axis (a summed-area table), in float64;
    periodic axes are extended by their first `window − 1` sites first, so windows wrap around the seam.
    """
    maps = np.asarray(maps, np.float64).reshape(*np.shape(maps)[:-1], *geometry.shape)
    total = maps.sum((-2, -1))
    windows = (1, geometry.window) if geometry.kind in LINES else (geometry.window, geometry.window)
    sums = maps
    for axis, window in zip((-2, -1), windows):
        sums = _box_sums(sums, axis, window, periodic=geometry.kind in ("ring", "torus"))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, sums.max((-2, -1)) / total, np.nan)


def _box_sums(values: np.ndarray, axis: int, window: int, *, periodic: bool) -> np.ndarray:
    """Sums of `window` consecutive entries along `axis`: one per start (wrapping if `periodic`)."""
    length = values.shape[axis]
    if window == 1:
        return values
    if periodic:
        values = np.concatenate([values, np.take(values, np.arange(window - 1), axis=axis)], axis=axis)
    prefix = np.cumsum(values, axis=axis)
    prefix = np.concatenate([np.zeros_like(np.take(prefix, [0], axis=axis)), prefix], axis=axis)
    starts = length if periodic else length - window + 1
    upper = np.take(prefix, np.arange(window, window + starts), axis=axis)
    return upper - np.take(prefix, np.arange(starts), axis=axis)


@functools.partial(jax.jit, static_argnames="channels")
def _site_maps(kernel: jax.Array, channels: int) -> jax.Array:
    """[inputs, units] -> [units, sites]: |w| summed over the channels of each site, in float32."""
    return jnp.abs(kernel.astype(jnp.float32)).reshape(-1, channels, kernel.shape[1]).sum(1).T


def _chunk(maps: np.ndarray, geometry: Geometry, orders: np.ndarray) -> dict[str, np.ndarray]:
    """Share and permutation null (the mean share over the site orders `orders` [draws, sites]) of a chunk of
    unit maps [n, sites]."""
    permuted = maps[:, orders]  # [n, draws, sites]
    return {"share": best_window_share(maps, geometry), "null": best_window_share(permuted, geometry).mean(1)}
