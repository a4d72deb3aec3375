"""The glioma: a lobulated lesion (necrotic core, enhancing rim) and a larger edema that follows
the white matter, written into a subject's tissue fractions with BraTS 2023 labels."""

from __future__ import annotations

import math

import numpy as np

from tfsynth.phantom.anatomy import world_axes
from tfsynth.phantom.draws import random_rotation, uniform

SEG_LABELS = {"necrosis": 1, "edema": 2, "enhancing": 3}  # BraTS 2023 label convention
LESION_LUMPS, EDEMA_LUMPS = 0.10, 0.25  # std of the log radius modulation: the edema is more irregular


def draw_tumour(rng: np.random.StarGANGenerator) -> dict:
    """Radii (mm) of the core, the enhancing rim's outer edge and the edema, plus shape."""
    core = uniform(rng, 6.0, 13.0)
    enhancing = core + uniform(rng, 4.0, 7.0)
    edema = enhancing + uniform(rng, 8.0, 20.0)
    axes = np.exp(rng.normal(0.0, 0.15, 3))
    return {
        "core": core,
        "enhancing": enhancing,
        "edema": edema,
        "axes": axes / np.prod(axes) ** (1 / 3),
        "orientation": random_rotation(rng, (180.0, 180.0, 180.0)),
        "mass_effect": uniform(rng, 0.2, 0.6),  # < 1 keeps the radial push one-to-one
    }


def lobes(rng: np.random.StarGANGenerator, direction: list, std: float, frequency: tuple[float, float], terms: int = 8):
    """A smooth random function of the direction from the lesion centre, clipped to +-2 ``std``.

    A sum of plane waves on the unit sphere; used as a log-radius it makes star-shaped, lobulated
    lesions whose outline depends on the direction only (so shells stay nested).
    """
    waves = rng.normal(size=(terms, 3))
    waves /= np.linalg.norm(waves, axis=1, keepdims=True)
    waves *= np.pi * rng.uniform(*frequency, size=(terms, 1))
    phases = rng.uniform(0.0, 2.0 * np.pi, terms)
    total = sum(
        np.cos(w[0] * direction[0] + w[1] * direction[1] + w[2] * direction[2] + p)
        for w, p in zip(waves, phases, strict=True)
    )
    # Each wave has variance 1/2 over random phases.
    return np.clip(total * np.float32(std / math.sqrt(terms / 2)), -2 * std, 2 * std).astype(np.float32)


def insert_tumour(rng, tissues, brain, affine, warp, tumour, voxel_size) -> np.ndarray:
    """Writes tumour fractions into ``tissues`` (in place) and returns the label map uint8 [X, Y, Z].

    Works in a box around the lesion. The core and rim are a lobulated ellipsoid that replaces
    every normal tissue; the edema is a larger, more lobulated one that replaces white matter
    (and a quarter of grey matter: vasogenic edema spreads along white-matter tracts).
    """
    shape = brain.shape
    seg = np.zeros(shape, np.uint8)
    centre_index = np.linalg.solve(affine[:3, :3], warp["tumour_centre"] - affine[:3, 3])
    # Lobes scale the radius by exp(g), |g| <= 2 std, so the edema reaches at most
    # R_edema * max axis * exp(2 * EDEMA_LUMPS) from the centre.
    reach = tumour["edema"] * float(tumour["axes"].max()) * math.exp(2 * EDEMA_LUMPS)
    half = int(math.ceil(reach / voxel_size)) + 2
    lo = [max(int(round(c)) - half, 0) for c in centre_index]
    hi = [min(int(round(c)) + half + 1, n) for c, n in zip(centre_index, shape, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    box_shape = tuple(b - a for a, b in zip(lo, hi, strict=True))

    x = world_axes(affine, shape, box)
    rel = [x[a] - np.float32(warp["tumour_centre"][a]) for a in range(3)]
    # Ellipsoid distance in the lesion's own frame.
    frame = tumour["orientation"].T / tumour["axes"][:, None]
    local = [frame[a, 0] * rel[0] + frame[a, 1] * rel[1] + frame[a, 2] * rel[2] for a in range(3)]
    radius = np.sqrt(local[0] ** 2 + local[1] ** 2 + local[2] ** 2)
    direction = [axis / np.maximum(radius, 1e-6) for axis in local]
    lesion_r = radius * np.exp(lobes(rng, direction, LESION_LUMPS, (0.5, 1.5)))
    edema_r = radius * np.exp(lobes(rng, direction, EDEMA_LUMPS, (1.0, 2.5)))

    def inside(r: np.ndarray, limit: float) -> np.ndarray:
        # Partial volume: linear ramp over one voxel across the boundary.
        return np.clip((limit - r) / voxel_size + 0.5, 0.0, 1.0).astype(np.float32)

    in_brain = brain[box]
    lesion = inside(lesion_r, tumour["enhancing"]) * in_brain
    core = inside(lesion_r, tumour["core"]) * in_brain
    wm, gm, csf = (tissues[k][box] * (1.0 - lesion) for k in ("wm", "gm", "csf"))
    swelling = inside(edema_r, tumour["edema"]) * (1.0 - lesion)
    edema = swelling * (wm + 0.25 * gm)
    tissues["wm"][box] = wm * (1.0 - swelling)
    tissues["gm"][box] = gm * (1.0 - 0.25 * swelling)
    tissues["csf"][box] = csf
    tissues["necrosis"][box] = core
    tissues["enhancing"][box] = lesion - core
    tissues["edema"][box] = edema

    labels = np.zeros(box_shape, np.uint8)
    labels[edema >= 0.3] = SEG_LABELS["edema"]
    labels[(lesion_r < tumour["enhancing"]) & in_brain] = SEG_LABELS["enhancing"]
    labels[(lesion_r < tumour["core"]) & in_brain] = SEG_LABELS["necrosis"]
    seg[box] = labels
    return seg
