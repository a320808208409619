"""Where a first layer's inputs sit: rings, tori, images and lines of sites, with the window locality is measured in.

The data describe their inputs with it (`datasets.Dataset.geometry`, NLGP's spec) and the analysis measures
locality on it (`blasso_jax.analysis.locality`), so it lives with the data, below both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

GEOMETRY_KINDS = ("ring", "torus", "image", "line")
LINES = ("ring", "line")  # one row of sites


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where a first layer's inputs sit: `kind` ('ring', 'torus', 'image' or 'line'), `shape` (rows, columns) of
    sites ((1, D) for a ring or line), input `channels` (slowest to fastest: row, column, channel, as NHWC) and the
    `window` side in sites. Ring and torus windows wrap around; image and line windows lie inside.

    Examples:
      >>> Geometry("torus", (16, 16), window=3).sites
      256
    """

    kind: str
    shape: tuple[int, int]
    channels: int = 1
    window: int = 3

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.kind not in GEOMETRY_KINDS:
            raise ValueError(f"unknown geometry kind {self.kind!r}; valid: {', '.join(GEOMETRY_KINDS)}")
        if len(self.shape) != 2 or min(self.shape) < 1 or (self.kind in LINES and self.shape[0] != 1):
            raise ValueError(f"geometry shape {self.shape} must be (rows, columns) >= 1, (1, D) for a ring or line")
        if self.channels < 1:
            raise ValueError(f"geometry channels must be >= 1, got {self.channels}")
        if not 1 <= self.window <= self.window_limit:
            raise ValueError(
                f"geometry window {self.window} must be 1 to {self.window_limit} for a {self.kind} {self.shape}"
            )

    @property
    def window_limit(self) -> int:
        """The largest window: the ring's or line's length, else the shorter side."""
        return self.shape[1] if self.kind in LINES else min(self.shape)

    @property
    def sites(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def window_sites(self) -> int:
        """Sites in one window: `window` on a ring or line, `window`² otherwise."""
        return self.window if self.kind in LINES else self.window**2

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "shape": list(self.shape), "channels": self.channels, "window": self.window}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Geometry:
        return cls(values["kind"], tuple(values["shape"]), values["channels"], values["window"])

    @classmethod
    def image(cls, image_shape: tuple[int, int, int], window: int = 9) -> Geometry:
        """An H×W×C image with a `window`×`window` window clamped to the shorter side, as `analysis.locality`."""
        height, width, channels = (int(d) for d in image_shape)
        return cls("image", (height, width), channels, min(window, height, width))
