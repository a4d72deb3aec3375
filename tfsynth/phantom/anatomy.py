"""A subject's normal anatomy: the template warped by head size, pose, deformation and mass effect.

Output is partial-volume tissue fractions on the subject grid; the tumour compartments are filled
in afterwards by `tfsynth.phantom.tumour`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tfsynth.phantom.draws import SmoothField, random_rotation, uniform

TISSUES = ("wm", "gm", "csf", "necrosis", "enhancing", "edema")


def draw_warp(rng: np.random.StarGANGenerator, template: dict, tumour: dict) -> dict:
    """The subject-to-template map: head size, rotation, translation and the tumour site.

    Subject world ``x`` (mm, centred) maps to template world ``R (x / scale) + centre + shift``.
    """
    scale = 0.90 * np.exp(rng.normal(0.0, 0.02, 3))  # MNI152 2009 is larger than SRI24 brains
    rotation = random_rotation(rng, (4.0, 3.0, 5.0))
    shift = rng.uniform(-3.0, 3.0, 3)
    # Tumour site: deep enough (in template mm) that the enhancing tumour stays inside the brain.
    need = tumour["enhancing"] * float(tumour["axes"].max()) / scale.min() + 4.0
    ok = template["site_depth"] >= need
    candidates = np.flatnonzero(ok) if ok.any() else np.array([int(np.argmax(template["site_depth"]))])
    site = template["sites"][rng.choice(candidates)]
    centre_subject = scale * (rotation.T @ (site - template["centre"] - shift))
    return {
        "scale": scale,
        "rotation": rotation,
        "shift": shift,
        "tumour_centre": centre_subject,
        "mass_effect": tumour["mass_effect"],
        "mass_radius": tumour["enhancing"],
    }


def world_axes(affine: np.ndarray, shape, region: tuple[slice, ...] | None = None) -> list[np.ndarray]:
    """Subject world coordinate (mm) of each voxel along each axis of the grid (or of ``region``).

    Returns:
        Three float32 arrays shaped [X, 1, 1], [1, Y, 1], [1, 1, Z] (broadcast to the box).
    """
    region = region or tuple(slice(0, n) for n in shape)
    axes = []
    for axis, (n, box) in enumerate(zip(shape, region, strict=True)):
        coord = affine[axis, axis] * np.arange(n)[box] + affine[axis, 3]
        axes.append(coord.astype(np.float32).reshape([-1 if d == axis else 1 for d in range(3)]))
    return axes


def brain_region(template: dict, warp: dict, shape, affine: np.ndarray, margin_mm: float = 10.0):
    """Slices of the grid that contain the warped brain: the template's brain box mapped to the
    subject, plus a margin for the deformation and the mass effect."""
    corners = template["bbox_corners"]
    corners_world = corners @ template["affine"][:3, :3].T + template["affine"][:3, 3]
    subject = warp["scale"] * ((corners_world - template["centre"] - warp["shift"]) @ warp["rotation"])
    index = np.linalg.solve(affine[:3, :3], (subject - affine[:3, 3]).T).T
    margin = margin_mm / abs(affine[0, 0])
    lo = np.maximum(np.floor(index.min(0) - margin), 0).astype(int)
    hi = np.minimum(np.ceil(index.max(0) + margin) + 1, shape).astype(int)
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def touches_cut(brain_box: np.ndarray, region: tuple[slice, ...], shape) -> bool:
    """Whether the brain reaches a face of ``region`` that is not also a face of the grid."""
    for axis, (box, n) in enumerate(zip(region, shape, strict=True)):
        faces = [(box.start, 0), (box.stop, -1)]
        for edge, at in faces:
            if edge not in (0, n) and np.take(brain_box, at, axis=axis).any():
                return True
    return False


def warped_anatomy(rng, template, shape, affine, warp) -> tuple[dict, np.ndarray, tuple[slice, ...]]:
    """Resamples the template through the subject warp.

    Returns:
        Tissue fractions {name: float32 [X, Y, Z]} (tumour compartments still 0), the brain mask
        bool [X, Y, Z], and the region (slices) outside which everything is background.
    """
    # Smooth random deformation, 1-2 mm standard deviation (the template's voxels are 1 mm).
    deform = [SmoothField(rng, 6, uniform(rng, 1.0, 2.0)) for _ in range(3)]
    region = brain_region(template, warp, shape, affine)
    mask, gm, wm = sample_template(template, shape, affine, warp, deform, region)
    if touches_cut(mask >= 0.5, region, shape):  # a margin too small: redo on the whole grid
        region = tuple(slice(0, n) for n in shape)
        mask, gm, wm = sample_template(template, shape, affine, warp, deform, region)

    brain = np.zeros(shape, bool)
    brain[region] = mask >= 0.5
    tissues = {name: np.zeros(shape, np.float32) for name in TISSUES}
    tissues["gm"][region], tissues["wm"][region] = gm, wm
    tissues["csf"][region] = np.clip(mask - gm - wm, 0.0, 1.0)
    return tissues, brain, region


def sample_template(template, shape, affine, warp, deform, region):
    """Brain-mask, GM and WM fractions (float32, ``region``'s shape) through the subject warp."""
    x = world_axes(affine, shape, region)
    centre = warp["tumour_centre"].astype(np.float32)
    rel = [x[a] - centre[a] for a in range(3)]
    radius2 = rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2
    # Mass effect: the voxel at distance r from the tumour shows the anatomy from distance
    # r (1 - a exp(-r^2/R^2)) < r, i.e. tissue is pushed outwards; one-to-one for a < 1.
    push = 1.0 - warp["mass_effect"] * np.exp(-radius2 / np.float32(warp["mass_radius"] ** 2))
    pushed = [centre[a] + rel[a] * push for a in range(3)]
    del rel, radius2, push

    to_template = np.linalg.inv(template["affine"])
    linear = (to_template[:3, :3] @ warp["rotation"] @ np.diag(1.0 / warp["scale"])).astype(np.float32)
    offset = to_template[:3, :3] @ (template["centre"] + warp["shift"]) + to_template[:3, 3]
    coords = np.stack(
        [
            linear[a, 0] * pushed[0]
            + linear[a, 1] * pushed[1]
            + linear[a, 2] * pushed[2]
            + np.float32(offset[a])
            + deform[a](shape, region)
            for a in range(3)
        ]
    )
    del pushed

    def sample(key: str, points: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(template[key], points, order=1, mode="constant", cval=0.0, prefilter=False)

    mask = sample("mask", coords)
    # Tissue outside the brain mask is never shown, so sample GM/WM only inside it.
    inside = mask >= 0.5
    points = coords[:, inside]
    gm, wm = np.zeros_like(mask), np.zeros_like(mask)
    gm[inside] = np.clip(sample("gm", points), 0.0, 1.0)
    wm[inside] = np.clip(sample("wm", points), 0.0, 1.0 - gm[inside])
    return mask, gm, wm
