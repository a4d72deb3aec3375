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

The steps live in their own modules: `tfsynth.phantom.template` (the MNI152 templates),
`tfsynth.phantom.anatomy` (steps 1-2), `tfsynth.phantom.tumour` (step 3) and
`tfsynth.phantom.physics` (steps 4-5); this module assembles a subject and writes the cohort.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tfsynth.atomic import atomic_directory, atomic_path
from tfsynth.contrasts import BRATS_NAMES, CONTRASTS
from tfsynth.errors import TfsynthError
from tfsynth.phantom.acquisition import Acquisition
from tfsynth.phantom.anatomy import TISSUES, draw_warp, warped_anatomy
from tfsynth.phantom.physics import (
    GD_R1,
    GD_R2,
    TISSUE_PARAMS,
    draw_protocol,
    inversion_recovery,
    null_inversion_time,
    scanner_effects,
    signal_image,
    spin_echo,
    subject_relaxation,
)
from tfsynth.phantom.template import prefiltered_template, template_dir
from tfsynth.phantom.tumour import SEG_LABELS, draw_tumour, insert_tumour

__all__ = [
    "BRATS_GRID",
    "GD_R1",
    "GD_R2",
    "SEG_LABELS",
    "TISSUES",
    "TISSUE_PARAMS",
    "case_files",
    "check_voxel_size",
    "grid_affine",
    "grid_shape",
    "inversion_recovery",
    "make_subject",
    "null_inversion_time",
    "spin_echo",
    "write_cohort",
]

BRATS_GRID = (240, 240, 155)  # voxels at 1 mm, the SRI24 grid BraTS is distributed on
MIN_VOXEL_MM, MAX_VOXEL_MM = 0.75, 10.0  # below ~0.75 mm one subject needs several GB of RAM


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
            f"acquisition must be a tfsynth.phantom.acquisition.Acquisition, got {type(acquisition).__name__}"
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
    template = prefiltered_template(voxel_size)
    shape, affine = grid_shape(voxel_size), grid_affine(voxel_size)

    tumour = draw_tumour(rng)
    warp = draw_warp(rng, template, tumour)
    tissues, brain, region = warped_anatomy(rng, template, shape, affine, warp)
    seg = insert_tumour(rng, tissues, brain, affine, warp, tumour, voxel_size)
    for name in TISSUES:
        tissues[name][region][~brain[region]] = 0.0

    params = draw_protocol(rng, acquisition)
    relax = subject_relaxation(rng, acquisition)
    subject = {}
    for contrast in CONTRASTS:
        # Everything outside ``region`` is background, so the physics runs on the brain's box only.
        image = signal_image(contrast, {name: tissues[name][region] for name in TISSUES}, relax, params)
        subject[contrast] = np.zeros(shape, np.float32)
        subject[contrast][region] = scanner_effects(rng, image, brain[region], shape, region, acquisition)
    subject.update(seg=seg, brain=brain, tissues=tissues, affine=affine, params=params)
    return subject


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
    template_dir()

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
