"""The built-in cohort: physics-based multi-contrast brain phantoms with a glioma, in BraTS layout.

Each subject is built in five steps:

1. Anatomy. The MNI152 2009a (symmetric) grey- and white-matter probability templates that
   nilearn ships inside its wheel are resampled onto the BraTS grid (240x240x155 at 1 mm,
   LPS voxel order) as partial-volume fractions. The brain mask is the skull-stripped T1
   template's support; CSF = brain - GM - WM, so ventricles and sulci are CSF.
2. Per-subject variation: head size, a small rotation and translation, a smooth random
   deformation (a few mm), small jitter of the tissue relaxation times.
3. A tumour in deep white matter: a lobulated ellipsoid with a necrotic core, an enhancing rim
   and a larger, more irregular edema that follows the white matter, pushing the
   surrounding anatomy outwards (mass effect). Labels as BraTS 2023: 1 necrotic core,
   2 edema, 3 enhancing tumour.
4. Contrasts from the signal equations, summed over the partial volumes of a voxel:
   spin echo ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)`` for T1 (short TR/TE) and T2 (long TR/TE);
   inversion recovery ``S = |PD (1 - 2 exp(-TI/T1) + exp(-TR/T1)) exp(-TE/T2)|`` for FLAIR with
   TI chosen to null CSF; T1c is the T1 sequence after gadolinium, which shortens T1 (and T2)
   in the enhancing rim: ``1/T1 = 1/T1_0 + r1 [Gd]``. TR/TE/TI are jittered per subject around
   the nominal protocol of an `Acquisition` (defaults: T1 TR/TE 500/10 ms, T2 5000/100 ms,
   FLAIR 9000/100 ms).
5. Scanner effects: a smooth multiplicative bias field per contrast, a receiver gain, and
   Rician noise (magnitude of signal + complex Gaussian) inside the brain only. Voxels outside
   the brain mask are exactly 0 in every contrast, as in skull-stripped BraTS data.

Everything is deterministic for ``(seed, subject index)`` and uses no network.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..atomic import atomic_directory, atomic_path
from ..contrasts import BRATS_NAMES, CONTRASTS
from ..errors import TfsynthError
from .acquisition import Acquisition

BRATS_GRID = (240, 240, 155)  # voxels at 1 mm, the SRI24 grid BraTS is distributed on
MIN_VOXEL_MM, MAX_VOXEL_MM = 0.75, 10.0  # below ~0.75 mm one subject needs several GB of RAM
TISSUES = ("wm", "gm", "csf", "necrosis", "enhancing", "edema")
SEG_LABELS = {"necrosis": 1, "edema": 2, "enhancing": 3}  # BraTS 2023 label convention
LESION_LUMPS, EDEMA_LUMPS = 0.10, 0.25  # std of the log radius modulation: the edema is more irregular

_TEMPLATE_FILES = {
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
}

# Relaxation parameters at 3 T: (proton density relative to CSF, T1 ms, T2 ms).
# WM, GM: Stanisz et al., MRM 2005;54:507 (T1 1084 / 1820 ms, T2 69 / 99 ms).
# CSF: T1 ~4.2 s (Lu et al., JMRI 2005;22:13), T2 ~2 s (free water).
# PD: water content WM ~0.69, GM ~0.80 (Neeb et al., NeuroImage 2006;31:1156), CSF 1.
# Tumour compartments: representative values in the ranges reported for glioblastoma at 3 T
# by MR fingerprinting (Badve et al., AJNR 2017;38:492): vasogenic edema and enhancing tumour
# have prolonged T1/T2 versus WM; the necrotic core is fluid-like (long T1, long T2).
TISSUE_PARAMS: dict[str, tuple[float, float, float]] = {
    "wm": (0.69, 1084.0, 69.0),
    "gm": (0.80, 1820.0, 99.0),
    "csf": (1.00, 4163.0, 2000.0),
    "necrosis": (0.92, 2600.0, 350.0),
    "enhancing": (0.85, 1700.0, 120.0),
    "edema": (0.86, 1600.0, 130.0),
}

# Gadolinium relaxivities of Gd-DTPA in plasma at 3 T, 1/(mM s) (Rohrer et al., Invest Radiol
# 2005;40:715). The concentration the tumour reaches is an `Acquisition` setting.
GD_R1, GD_R2 = 3.7, 5.2


def grid_shape(voxel_size: float) -> tuple[int, int, int]:
    """The BraTS grid at ``voxel_size`` mm: ``round(240/v), round(240/v), round(155/v)``."""
    return tuple(int(round(n / voxel_size)) for n in BRATS_GRID)


def grid_affine(voxel_size: float) -> np.ndarray:
    """Voxel-to-world affine [4, 4] of the phantom grid.

    LPS voxel order like BraTS (i towards the patient's left, j posterior, k superior), world in
    RAS mm (NIfTI convention) with the grid centre at the origin.
    """
    shape = np.array(grid_shape(voxel_size))
    affine = np.diag([-voxel_size, -voxel_size, voxel_size, 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((shape - 1) / 2.0)
    return affine


def check_voxel_size(voxel_size) -> float:
    """Returns ``voxel_size`` as a float, or raises TfsynthError if it is not a usable size in mm."""
    try:
        value = float(voxel_size)
    except (TypeError, ValueError):
        raise TfsynthError(f"voxel size {voxel_size!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise TfsynthError(f"voxel size must be a positive number of mm, got {voxel_size!r}")
    if not MIN_VOXEL_MM <= value <= MAX_VOXEL_MM:
        raise TfsynthError(f"voxel size {value} mm is outside the supported range {MIN_VOXEL_MM}..{MAX_VOXEL_MM} mm")
    return value


def _check_acquisition(acquisition) -> Acquisition:
    if acquisition is None:
        return Acquisition()
    if not isinstance(acquisition, Acquisition):
        raise TfsynthError(
            f"acquisition must be a tfsynth.data.acquisition.Acquisition, got {type(acquisition).__name__}"
        )
    return acquisition


def _check_seed(seed, what: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TfsynthError(f"{what} must be a non-negative integer, got {seed!r}")
    return int(seed)


def make_subject(
    seed: int = 0, voxel_size: float = 2.0, index: int = 0, acquisition: Acquisition | None = None
) -> dict:
    """Builds one phantom subject; deterministic for ``(seed, index, voxel_size, acquisition)``.

    Args:
        seed: cohort seed (non-negative).
        voxel_size: isotropic voxel size in mm (1 gives BraTS' 240x240x155 grid).
        index: subject number within the cohort (non-negative); with ``seed`` it seeds the RNG.
        acquisition: the scanner protocol, noise and bias field; ``None`` is ``Acquisition()``.
            The anatomy and tumour do not depend on it.

    Returns:
        A dict with ``t1``, ``t1c``, ``t2``, ``flair``: float32 [X, Y, Z] intensities, exactly 0
        outside the brain; ``seg``: uint8 [X, Y, Z] (1 necrotic core, 2 edema, 3 enhancing);
        ``brain``: bool [X, Y, Z]; ``tissues``: {name: float32 [X, Y, Z] volume fraction} for
        ``TISSUES``; ``affine``: float [4, 4]; ``params``: the subject's sequence parameters.
    """
    voxel_size = check_voxel_size(voxel_size)
    acquisition = _check_acquisition(acquisition)
    rng = np.random.default_rng([_check_seed(seed), _check_seed(index, "subject index")])
    template = _template(voxel_size)
    shape, affine = grid_shape(voxel_size), grid_affine(voxel_size)

    tumour = _draw_tumour(rng)
    warp = _draw_warp(rng, template, tumour)
    tissues, brain, region = _anatomy(rng, template, shape, affine, warp)
    seg = _insert_tumour(rng, tissues, brain, affine, warp, tumour, voxel_size)
    for name in TISSUES:
        tissues[name][region][~brain[region]] = 0.0

    params = _draw_protocol(rng, acquisition)
    relax = _subject_relaxation(rng, acquisition)
    subject = {}
    for contrast in CONTRASTS:
        # Everything outside ``region`` is background, so the physics runs on the brain's box only.
        image = _signal(contrast, {name: tissues[name][region] for name in TISSUES}, relax, params)
        subject[contrast] = np.zeros(shape, np.float32)
        subject[contrast][region] = _scanner(rng, image, brain[region], shape, region, acquisition)
    subject.update(seg=seg, brain=brain, tissues=tissues, affine=affine, params=params)
    return subject


# --------------------------------------------------------------------------- templates


def _template_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise TfsynthError("the phantom needs the MNI152 templates of the nilearn package: pip install nilearn")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in _TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise TfsynthError(f"nilearn at {folder} lacks the MNI152 template files {missing}")
    return folder


@functools.lru_cache(maxsize=1)
def _raw_template() -> dict:
    """GM, WM and brain-mask fractions [197, 233, 189] at 1 mm, their affine, and tumour sites."""
    import nibabel as nib

    folder = _template_dir()
    images = {key: nib.load(folder / name) for key, name in _TEMPLATE_FILES.items()}
    data = {key: np.asarray(img.dataobj, dtype=np.float32) / 255.0 for key, img in images.items()}
    mask = (data["t1"] > 0).astype(np.float32)  # the T1 template is skull-stripped
    affine = images["t1"].affine
    nonzero = np.argwhere(mask)
    lo, hi = nonzero.min(axis=0), nonzero.max(axis=0)
    corners = np.array([[(lo, hi)[(c >> axis) & 1][axis] for axis in range(3)] for c in range(8)], float)

    # Candidate tumour centres: hemispheric white matter (>= 12 mm off the midline, where most
    # gliomas arise) far from the brain surface. A 2 mm distance map is plenty to pick a site.
    depth = ndimage.distance_transform_edt(mask[::2, ::2, ::2] > 0, sampling=2.0)
    world = np.moveaxis(np.indices(depth.shape, dtype=np.float32) * 2.0, 0, -1) @ affine[:3, :3].T + affine[:3, 3]
    deep = (data["wm"][::2, ::2, ::2] > 0.9) & (depth >= 20.0) & (np.abs(world[..., 0]) >= 12.0)
    sites_world = world[deep]
    return {
        "gm": data["gm"] * mask,
        "wm": data["wm"] * mask,
        "mask": mask,
        "affine": affine,
        "centre": affine[:3, :3] @ ((lo + hi) / 2.0) + affine[:3, 3],
        "bbox_corners": corners,
        "sites": sites_world,
        "site_depth": depth[deep],
    }


@functools.lru_cache(maxsize=4)
def _template(voxel_size: float) -> dict:
    """The template pre-filtered for ``voxel_size``: sampling it then gives partial volumes.

    A box of width v mm has variance v^2/12; the 1 mm template voxels already contribute 1/12.
    """
    raw = _raw_template()
    sigma = math.sqrt(max(voxel_size**2 - 1.0, 0.0) / 12.0)
    smooth = {key: ndimage.gaussian_filter(raw[key], sigma) if sigma > 0 else raw[key] for key in ("gm", "wm", "mask")}
    return {**raw, **smooth}


# --------------------------------------------------------------------------- random fields


class SmoothField:
    """A smooth random field with zero mean and a given standard deviation over the whole grid.

    A sum of the lowest ``n_basis`` cosine (DCT-II) modes per axis with coefficients decaying as
    1/frequency. The coefficients are drawn once; the field can then be evaluated on any box of
    the grid (three small tensor contractions, a few ms even at 1 mm) with the same values.
    """

    def __init__(self, rng: np.random.Generator, n_basis: int, std: float):
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


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _rotation(rng: np.random.Generator, max_degrees: tuple[float, float, float]) -> np.ndarray:
    """A rotation matrix [3, 3] with independent angles about x, y, z up to ``max_degrees``."""
    ax, ay, az = (math.radians(rng.uniform(-m, m)) for m in max_degrees)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


# --------------------------------------------------------------------------- anatomy


def _draw_tumour(rng: np.random.Generator) -> dict:
    """Radii (mm) of the core, the enhancing rim's outer edge and the edema, plus shape."""
    core = _uniform(rng, 6.0, 13.0)
    enhancing = core + _uniform(rng, 4.0, 7.0)
    edema = enhancing + _uniform(rng, 8.0, 20.0)
    axes = np.exp(rng.normal(0.0, 0.15, 3))
    return {
        "core": core,
        "enhancing": enhancing,
        "edema": edema,
        "axes": axes / np.prod(axes) ** (1 / 3),
        "orientation": _rotation(rng, (180.0, 180.0, 180.0)),
        "mass_effect": _uniform(rng, 0.2, 0.6),  # < 1 keeps the radial push one-to-one
    }


def _draw_warp(rng: np.random.Generator, template: dict, tumour: dict) -> dict:
    """The subject-to-template map: head size, rotation, translation and the tumour site.

    Subject world ``x`` (mm, centred) maps to template world ``R (x / scale) + centre + shift``.
    """
    scale = 0.90 * np.exp(rng.normal(0.0, 0.02, 3))  # MNI152 2009 is larger than SRI24 brains
    rotation = _rotation(rng, (4.0, 3.0, 5.0))
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


def _world_axes(affine: np.ndarray, shape, region: tuple[slice, ...] | None = None) -> list[np.ndarray]:
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


def _brain_region(template: dict, warp: dict, shape, affine: np.ndarray, margin_mm: float = 10.0):
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


def _touches_cut(brain_box: np.ndarray, region: tuple[slice, ...], shape) -> bool:
    """Whether the brain reaches a face of ``region`` that is not also a face of the grid."""
    for axis, (box, n) in enumerate(zip(region, shape, strict=True)):
        faces = [(box.start, 0), (box.stop, -1)]
        for edge, at in faces:
            if edge not in (0, n) and np.take(brain_box, at, axis=axis).any():
                return True
    return False


def _anatomy(rng, template, shape, affine, warp) -> tuple[dict, np.ndarray, tuple[slice, ...]]:
    """Resamples the template through the subject warp.

    Returns:
        Tissue fractions {name: float32 [X, Y, Z]} (tumour compartments still 0), the brain mask
        bool [X, Y, Z], and the region (slices) outside which everything is background.
    """
    # Smooth random deformation, 1-2 mm standard deviation (the template's voxels are 1 mm).
    deform = [SmoothField(rng, 6, _uniform(rng, 1.0, 2.0)) for _ in range(3)]
    region = _brain_region(template, warp, shape, affine)
    mask, gm, wm = _sample_template(template, shape, affine, warp, deform, region)
    if _touches_cut(mask >= 0.5, region, shape):  # a margin too small: redo on the whole grid
        region = tuple(slice(0, n) for n in shape)
        mask, gm, wm = _sample_template(template, shape, affine, warp, deform, region)

    brain = np.zeros(shape, bool)
    brain[region] = mask >= 0.5
    tissues = {name: np.zeros(shape, np.float32) for name in TISSUES}
    tissues["gm"][region], tissues["wm"][region] = gm, wm
    tissues["csf"][region] = np.clip(mask - gm - wm, 0.0, 1.0)
    return tissues, brain, region


def _sample_template(template, shape, affine, warp, deform, region):
    """Brain-mask, GM and WM fractions (float32, ``region``'s shape) through the subject warp."""
    x = _world_axes(affine, shape, region)
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


def _lobes(rng: np.random.Generator, direction: list, std: float, frequency: tuple[float, float], terms: int = 8):
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


def _insert_tumour(rng, tissues, brain, affine, warp, tumour, voxel_size) -> np.ndarray:
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

    x = _world_axes(affine, shape, box)
    rel = [x[a] - np.float32(warp["tumour_centre"][a]) for a in range(3)]
    # Ellipsoid distance in the lesion's own frame.
    frame = tumour["orientation"].T / tumour["axes"][:, None]
    local = [frame[a, 0] * rel[0] + frame[a, 1] * rel[1] + frame[a, 2] * rel[2] for a in range(3)]
    radius = np.sqrt(local[0] ** 2 + local[1] ** 2 + local[2] ** 2)
    direction = [axis / np.maximum(radius, 1e-6) for axis in local]
    lesion_r = radius * np.exp(_lobes(rng, direction, LESION_LUMPS, (0.5, 1.5)))
    edema_r = radius * np.exp(_lobes(rng, direction, EDEMA_LUMPS, (1.0, 2.5)))

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


# --------------------------------------------------------------------------- physics


def spin_echo(pd, t1, t2, tr: float, te: float):
    """Spin-echo signal ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` (times in ms, TE << TR)."""
    return pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2)


def inversion_recovery(pd, t1, t2, tr: float, te: float, ti: float):
    """Signed inversion-recovery signal ``PD (1 - 2 exp(-TI/T1) + exp(-TR/T1)) exp(-TE/T2)``.

    The scanner shows the magnitude of the voxel's summed signal, so take ``abs`` after mixing.
    """
    return pd * (1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)


def null_inversion_time(t1: float, tr: float) -> float:
    """TI (ms) that nulls a tissue of longitudinal relaxation ``t1``: ``T1 ln(2 / (1 + exp(-TR/T1)))``.

    Tends to the textbook ``T1 ln 2`` for TR >> T1.
    """
    return t1 * math.log(2.0 / (1.0 + math.exp(-tr / t1)))


def _draw_protocol(rng: np.random.Generator, acquisition: Acquisition) -> dict:
    """The subject's sequence parameters (ms): the nominal protocol with +-5 % TR/TE jitter.

    FLAIR's TI is the acquisition's, or else what the protocol computes to null nominal CSF at
    this TR; either is set to within 2 %. ``gd_mm`` is drawn in the acquisition's range.
    """

    def jitter(tr: float, te: float) -> dict:
        return {key: value * _uniform(rng, 0.95, 1.05) for key, value in (("tr", tr), ("te", te))}

    a = acquisition
    csf_t1 = TISSUE_PARAMS["csf"][1] * a.tissue_t1_scale
    flair = jitter(a.flair_tr, a.flair_te)
    ti = a.flair_ti if a.flair_ti is not None else null_inversion_time(csf_t1, flair["tr"])
    flair["ti"] = ti * _uniform(rng, 0.98, 1.02)
    t1, t2 = jitter(a.t1_tr, a.t1_te), jitter(a.t2_tr, a.t2_te)
    return {"t1": t1, "t2": t2, "flair": flair, "gd_mm": _uniform(rng, *a.gd_mm)}


def _subject_relaxation(rng: np.random.Generator, acquisition: Acquisition) -> dict[str, tuple[float, float, float]]:
    """Tissue (PD, T1, T2): literature values times the acquisition's scales, with ~3 % biological
    variation of T1 and T2 per subject."""
    t1_scale, t2_scale = acquisition.tissue_t1_scale, acquisition.tissue_t2_scale
    return {
        name: (
            pd,
            t1 * t1_scale * float(np.exp(rng.normal(0.0, 0.03))),
            t2 * t2_scale * float(np.exp(rng.normal(0.0, 0.03))),
        )
        for name, (pd, t1, t2) in TISSUE_PARAMS.items()
    }


def _signal(contrast: str, tissues: dict, relax: dict, params: dict) -> np.ndarray:
    """Noise-free image [X, Y, Z]: the sequence's signal of each tissue, weighted by its fraction."""
    image = np.zeros(tissues["wm"].shape, np.float32)
    for name in TISSUES:
        pd, t1, t2 = relax[name]
        if contrast == "t1c" and name == "enhancing":
            # Gadolinium relaxivity: rates add, 1/T = 1/T0 + r [Gd]; r in 1/(mM s), times in ms.
            t1 = 1.0 / (1.0 / t1 + GD_R1 * params["gd_mm"] / 1000.0)
            t2 = 1.0 / (1.0 / t2 + GD_R2 * params["gd_mm"] / 1000.0)
        if contrast in ("t1", "t1c"):
            value = spin_echo(pd, t1, t2, **params["t1"])
        elif contrast == "t2":
            value = spin_echo(pd, t1, t2, **params["t2"])
        else:
            value = inversion_recovery(pd, t1, t2, **params["flair"])
        image += np.float32(value) * tissues[name]
    return np.abs(image)


def _scanner(rng: np.random.Generator, image: np.ndarray, brain: np.ndarray, shape, region, acquisition) -> np.ndarray:
    """Bias field, receiver gain and Rician noise inside the brain; exactly 0 outside.

    Args:
        image: noise-free signal on ``region`` of the grid ``shape``; brain: bool, same shape.
        acquisition: its ``bias_strength`` and ``snr`` ranges give this image's draws.

    Returns:
        float32 image of ``image``'s shape.
    """
    bias = np.exp(SmoothField(rng, 3, _uniform(rng, *acquisition.bias_strength))(shape, region))
    signal = (image * bias)[brain] * np.float32(1000.0 * np.exp(rng.normal(0.0, 0.15)))
    sigma = float(signal.mean()) / _uniform(rng, *acquisition.snr)
    real = signal + rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    imag = rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    out = np.zeros(image.shape, np.float32)
    # Magnitude of a complex Gaussian around the signal: Rician; > 0 almost surely inside.
    out[brain] = np.maximum(np.hypot(real, imag), np.finfo(np.float32).tiny)
    return out


# --------------------------------------------------------------------------- cohort on disk


def case_files(out_dir, index: int, naming: str) -> tuple[Path, dict[str, Path]]:
    """The case folder and file paths (canonical contrast or ``seg`` -> path) of subject ``index``.

    BraTS 2023: ``BraTS-GLI-{index:05d}-000/BraTS-GLI-{index:05d}-000-{t1n,t1c,t2w,t2f,seg}.nii.gz``;
    BraTS 2020: ``BraTS20_Training_{index+1:03d}/..._{t1,t1ce,t2,flair,seg}.nii.gz`` (1-based, like BraTS).
    """
    names = _check_naming(naming)
    if naming == "brats2023":
        case, sep = f"BraTS-GLI-{index:05d}-000", "-"
    else:
        case, sep = f"BraTS20_Training_{index + 1:03d}", "_"
    folder = Path(out_dir) / case
    suffixes = {**names, "seg": "seg"}
    return folder, {key: folder / f"{case}{sep}{suffix}.nii.gz" for key, suffix in suffixes.items()}


def _check_naming(naming) -> dict[str, str]:
    if naming not in BRATS_NAMES:
        raise TfsynthError(f"unknown naming {naming!r}; valid: {', '.join(BRATS_NAMES)}")
    return BRATS_NAMES[naming]


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def write_cohort(
    out_dir,
    subjects: int = 10,
    seed: int = 0,
    voxel_size: float = 2.0,
    naming: str = "brats2023",
    progress: bool = False,
    acquisition: Acquisition | None = None,
) -> list[Path]:
    """Writes ``subjects`` phantom cases as BraTS-layout NIfTI under ``out_dir``.

    ``acquisition`` (``None``: the defaults) sets every subject's protocol; see `make_subject`.

    Images are float32, the segmentation uint8. Each case folder is assembled under a temporary
    name and renamed when complete (an existing case of the same name is replaced), so a folder
    is either complete or absent.

    Returns:
        The case folders, in subject order.
    """
    if isinstance(subjects, bool) or not isinstance(subjects, (int, np.integer)) or subjects < 1:
        raise TfsynthError(f"number of subjects must be a positive integer, got {subjects!r}")
    seed = _check_seed(seed)
    voxel_size = check_voxel_size(voxel_size)
    _check_naming(naming)
    acquisition = _check_acquisition(acquisition)
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise TfsynthError(f"output {out_dir} exists and is not a directory")
    _template_dir()

    from tqdm import tqdm

    folders = []
    for index in tqdm(range(int(subjects)), desc="phantom", unit="subject", disable=not progress):
        subject = make_subject(seed, voxel_size, index, acquisition)
        folder, files = case_files(out_dir, index, naming)
        with atomic_directory(folder, replace=True) as tmp_folder:
            for key, path in files.items():
                data = subject[key].astype(np.uint8 if key == "seg" else np.float32, copy=False)
                _write_nifti(tmp_folder / path.name, data, subject["affine"])
        folders.append(folder)
    return folders
