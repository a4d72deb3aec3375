"""The anatomy the phantom is built from: nilearn's MNI152 2009a (symmetric) templates.

The grey- and white-matter probability maps and the skull-stripped T1 template that nilearn ships
inside its wheel (no download), as fractions in [0, 1] on their 1 mm grid, plus the deep
white-matter sites a tumour may grow from.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from tfsynth.errors import TfsynthError

TEMPLATE_FILES = {
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
}


def template_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise TfsynthError("the phantom needs the MNI152 templates of the nilearn package: pip install nilearn")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise TfsynthError(f"nilearn at {folder} lacks the MNI152 template files {missing}")
    return folder


@functools.lru_cache(maxsize=1)
def raw_template() -> dict:
    """GM, WM and brain-mask fractions [197, 233, 189] at 1 mm, their affine, and tumour sites."""
    import nibabel as nib

    folder = template_dir()
    images = {key: nib.load(folder / name) for key, name in TEMPLATE_FILES.items()}
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
def prefiltered_template(voxel_size: float) -> dict:
    """The template pre-filtered for ``voxel_size``: sampling it then gives partial volumes.

    A box of width v mm has variance v^2/12; the 1 mm template voxels already contribute 1/12.
    """
    raw = raw_template()
    sigma = math.sqrt(max(voxel_size**2 - 1.0, 0.0) / 12.0)
    smooth = {key: ndimage.gaussian_filter(raw[key], sigma) if sigma > 0 else raw[key] for key in ("gm", "wm", "mask")}
    return {**raw, **smooth}
