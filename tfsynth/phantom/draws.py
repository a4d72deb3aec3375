"""Random draws of the phantom: smooth random fields, uniform numbers and small rotations."""

from __future__ import annotations

import math

import numpy as np


class SmoothField:
    """A smooth random field with zero mean and a given standard deviation over the whole grid.

    A sum of the lowest ``n_basis`` cosine (DCT-II) modes per axis with coefficients decaying as
    1/frequency. The coefficients are drawn once; the field can then be evaluated on any box of
    the grid (three small tensor contractions, a few ms even at 1 mm) with the same values.
    """

    def __init__(self, rng: np.random.StarGANGenerator, n_basis: int, std: float):
        freq = np.arange(n_basis)
        decay = 1.0 / (1.0 + freq[:, None, None] + freq[None, :, None] + freq[None, None, :])
        coeffs = rng.standard_normal((n_basis,) * 3) * decay
        coeffs[0, 0, 0] = 0.0
        # DCT-II modes are orthogonal on the grid with mean square 1 (constant) or 1/2: exact variance.
        weight = np.where(freq == 0, 1.0, 0.5)
        variance = float((coeffs**2 * weight[:, None, None] * weight[None, :, None] * weight[None, None, :]).sum())
        self.freq = freq
        self.coeffs = (coeffs * std / math.sqrt(variance)).astype(np.float32)

    def __call__(self, shape, region: tuple[slice, ...] | None = None) -> np.ndarray:
        """The field on ``shape``'s grid, or on ``region`` (slices) of it: float32 [X, Y, Z] or the box."""
        region = region or tuple(slice(0, n) for n in shape)
        bases = [
            np.cos(np.pi * np.outer(np.arange(n)[box] + 0.5, self.freq) / n).astype(np.float32)
            for n, box in zip(shape, region, strict=True)
        ]
        return np.einsum("abc,ia,jb,kc->ijk", self.coeffs, *bases, optimize=True)


def uniform(rng: np.random.StarGANGenerator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def random_rotation(rng: np.random.StarGANGenerator, max_degrees: tuple[float, float, float]) -> np.ndarray:
    """A rotation matrix [3, 3] with independent angles about x, y, z up to ``max_degrees``."""
    ax, ay, az = (math.radians(rng.uniform(-m, m)) for m in max_degrees)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx
