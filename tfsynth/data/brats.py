"""BraTS case discovery (every naming era) and per-case validation.

File names are ``<case id><sep><suffix>.nii[.gz]`` where the separator is ``_`` (BraTS
2018-2021: ``BraTS20_Training_001_t1ce.nii.gz``, ``BraTS2021_00000_flair.nii.gz``) or ``-``
(BraTS 2023+: ``BraTS-GLI-00000-000-t2f.nii.gz``, also ``BraTS-MEN-``, ``BraTS-SSA-``,
``BraTS-PED-`` ...). The suffix is any contrast alias `tfsynth.contrasts` knows, or ``seg``;
the case id is whatever precedes it, so no cohort prefix is hard-coded. Every other NIfTI file
(a brain mask, BraTS-MEN-RT's ``_gtv``) is ignored and listed once (`discover_cases`): the one
rule of every command that reads case folders.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tfsynth.contrasts import ALIASES, CONTRASTS
from tfsynth.data.brain_mask import CASE_ADVICE, check_zero_background
from tfsynth.data.geometry import TRAINING_ORIENTATION, Frame, axcodes
from tfsynth.data.nifti import AFFINE_ATOL_MM, MAX_AXIS, MAX_VOXELS, read_volume
from tfsynth.errors import TfsynthError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
SEG_SUFFIXES = ("seg",)
# Longest first so that "t2-flair" wins over "flair".
_SUFFIXES = sorted([*ALIASES, *SEG_SUFFIXES], key=len, reverse=True)
_NAME = re.compile(
    r"^(?P<case>.+?)(?P<sep>[_-])(?P<suffix>" + "|".join(re.escape(s) for s in _SUFFIXES) + r")$", re.IGNORECASE
)


@dataclasses.dataclass(frozen=True)
class Case:
    """One patient's files.

    Attributes:
        case_id: e.g. ``BraTS20_Training_001`` or ``BraTS-GLI-00000-000``.
        folder: the folder holding the files.
        files: canonical contrast name -> file, for the contrasts present.
        seg: the segmentation file, or None.
        naming: ``"brats2020"`` (``_`` separator) or ``"brats2023"`` (``-`` separator).
    """

    case_id: str
    folder: Path
    files: dict[str, Path]
    seg: Path | None
    naming: str

    def all_files(self) -> list[Path]:
        """Contrast files in canonical order, then the segmentation."""
        ordered = [self.files[c] for c in CONTRASTS if c in self.files]
        return ordered + ([self.seg] if self.seg is not None else [])


@dataclasses.dataclass
class LoadedCase:
    """A validated case in memory, in the slicing orientation (`tfsynth.data.geometry`).

    Attributes:
        case: the files it came from.
        volumes: canonical contrast -> float32 ``[X, Y, Z]``, voxel axes reoriented to ``LPS``.
        seg: uint8 ``[X, Y, Z]`` label map (BraTS 2023 labels: 1 necrotic core, 2 edema,
            3 enhancing tumour; label 4, the BraTS <= 2021 enhancing tumour, is mapped to 3), or None.
        affine: 4x4 voxel-to-world matrix of the reoriented volumes.
        zooms: voxel size in mm ``(x, y, z)`` along the reoriented axes.
        reference: the nibabel image of the first contrast (its original grid).
        orientation: the axis codes the files were stored in, e.g. ``"RAS"``.
    """

    case: Case
    volumes: dict[str, np.ndarray]
    seg: np.ndarray | None
    affine: np.ndarray
    zooms: tuple[float, float, float]
    reference: object
    orientation: str = TRAINING_ORIENTATION

    @property
    def shape(self) -> tuple[int, int, int]:
        return next(iter(self.volumes.values())).shape


def parse_name(path: Path) -> tuple[str, str, str] | None:
    """Splits a BraTS file name into ``(case_id, canonical contrast or "seg", naming)``.

    Returns None for a file that does not follow the BraTS pattern.
    """
    name = path.name
    for ext in NIFTI_SUFFIXES:
        if name.lower().endswith(ext):
            stem = name[: -len(ext)]
            break
    else:
        return None
    match = _NAME.match(stem)
    if not match:
        return None
    suffix = match["suffix"].lower()
    kind = "seg" if suffix in SEG_SUFFIXES else ALIASES[suffix]
    naming = "brats2023" if match["sep"] == "-" else "brats2020"
    return match["case"], kind, naming


def _is_nifti(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(NIFTI_SUFFIXES)


EXPECTED_NAMING = (
    "<case>_<t1|t1ce|t2|flair|seg>.nii[.gz] (BraTS <= 2021) or <case>-<t1n|t1c|t2w|t2f|seg>.nii.gz (BraTS 2023)"
)
# Ignored files named in the warning line; the rest are counted.
IGNORED_LISTED = 10


def print_warning(message: str) -> None:
    """``warning: message`` on stderr: the default ``warn`` of the data-reading functions."""
    print(f"warning: {message}", file=sys.stderr)


@dataclasses.dataclass
class Discovery:
    """What `discover_cases` found under a folder.

    Attributes:
        cases: the usable cases (each with at least one contrast), sorted by case id.
        failed: case id (or, for an empty folder, the folder) -> the one-line reason it cannot be
            used, in the order found: two files of one contrast, files in two folders, only a
            segmentation, no NIfTI file.
        ignored: NIfTI files named neither as a contrast nor as the segmentation (a brain mask,
            BraTS-MEN-RT's ``_gtv``), sorted.
    """

    cases: list[Case]
    failed: dict[str, str]
    ignored: list[Path]


def ignored_files_message(root: Path, ignored: list[Path]) -> str:
    """The one warning line listing the ignored files (relative to ``root``; the first `IGNORED_LISTED`)."""
    names = [os.path.relpath(path, root) for path in ignored[:IGNORED_LISTED]]
    more = f" and {len(ignored) - IGNORED_LISTED} more" if len(ignored) > IGNORED_LISTED else ""
    return (
        f"{root}: ignored {len(ignored)} NIfTI file(s) named neither as a contrast nor as the segmentation "
        f"(expected {EXPECTED_NAMING}): {', '.join(names)}{more}"
    )


def discover_cases(
    root: str | os.PathLike,
    exclude: str | os.PathLike | None = None,
    empty_folders: bool = False,
    warn: Callable[[str], None] = print_warning,
) -> Discovery:
    """Finds every BraTS case under ``root`` (any depth, symbolic links followed).

    The one rule for files every command follows: a NIfTI file whose name is a contrast
    (`parse_name`) or the segmentation belongs to its case; any other NIfTI file is ignored, and
    all of them are listed once, in one line through ``warn``; a case that cannot be used is in
    ``failed`` with its reason, and the others are unaffected.

    Args:
        root: a folder of case folders (or of case files).
        exclude: a folder under ``root`` not to look in (an output folder inside the input).
        empty_folders: a folder with neither NIfTI files nor subfolders (an empty case folder) is
            a failure too, under its path.
        warn: receives the line listing the ignored files (`ignored_files_message`), if any.

    Raises:
        TfsynthError: ``root`` is not a folder, holds no NIfTI file, or holds only ignored ones.
    """
    root = Path(root)
    if not root.is_dir():
        raise TfsynthError(f"{root}: not a directory")
    # Real paths of the folders walked or to be walked: a folder reached twice through links (or
    # a link back up the tree) is walked once; the excluded one never.
    seen_dirs = {os.path.realpath(root)}
    if exclude is not None:
        seen_dirs.add(os.path.realpath(exclude))
    found: dict[str, dict] = {}
    failed: dict[str, str] = {}
    ignored: list[Path] = []
    n_files = 0
    for folder, dirs, names in os.walk(root, followlinks=True):
        has_folders, walk = bool(dirs), []
        for d in sorted(d for d in dirs if not d.startswith(".")):
            real = os.path.realpath(Path(folder) / d)
            if real not in seen_dirs:
                seen_dirs.add(real)
                walk.append(d)
        dirs[:] = walk
        niftis = sorted(filter(_is_nifti, names))
        if empty_folders and not niftis and not has_folders and Path(folder) != root:
            failed[folder] = f"{folder}: no NIfTI files (.nii / .nii.gz) in this folder"
        for name in niftis:
            n_files += 1
            path = Path(folder) / name
            parsed = parse_name(path)
            if parsed is None:
                ignored.append(path)
                continue
            case_id, kind, naming = parsed
            entry = found.setdefault(case_id, {"folder": path.parent, "files": {}, "naming": naming})
            if entry["folder"] != path.parent:
                failed.setdefault(case_id, f"{path}: case {case_id} also has files in {entry['folder']}")
            elif kind in entry["files"]:
                failed.setdefault(case_id, f"{path}: case {case_id} has two {kind} files (also {entry['files'][kind]})")
            else:
                entry["files"][kind] = path
    if n_files == 0:
        raise TfsynthError(f"{root}: no NIfTI files (.nii / .nii.gz) found")
    ignored.sort()
    if ignored:
        warn(ignored_files_message(root, ignored))

    cases = []
    for case_id in sorted(set(found) - set(failed)):
        entry = found[case_id]
        files = {c: entry["files"][c] for c in CONTRASTS if c in entry["files"]}
        if not files:
            failed[case_id] = f"{entry['files']['seg']}: case {case_id} has a segmentation but no contrast file"
            continue
        cases.append(Case(case_id, entry["folder"], files, entry["files"].get("seg"), entry["naming"]))
    if not cases and not failed:
        raise TfsynthError(f"{root}: no BraTS case found; file names must be {EXPECTED_NAMING}")
    return Discovery(cases, failed, ignored)


def find_cases(
    root: str | os.PathLike,
    on_bad: Callable[[str], None] | None = None,
    warn: Callable[[str], None] = print_warning,
    exclude: str | os.PathLike | None = None,
    empty_folders: bool = False,
) -> list[Case]:
    """The usable BraTS cases under ``root``, sorted by case id (`discover_cases`).

    Args:
        root, warn, exclude, empty_folders: as for `discover_cases` (ignored files are listed
            through ``warn``, never an error).
        on_bad: if given, each case that cannot be used is passed to it as a one-line message and
            left out; otherwise the first one raises. A case with two files of one contrast, or
            files in two folders, is left out whole: which file is meant is unknowable.

    Returns:
        The cases, each with at least one contrast.

    Raises:
        TfsynthError: as `discover_cases`; no usable case; (without ``on_bad``) a case that
            cannot be used.
    """
    discovery = discover_cases(root, exclude, empty_folders, warn)
    for message in discovery.failed.values():
        if on_bad is None:
            raise TfsynthError(message)
        on_bad(message)
    if not discovery.cases:
        raise TfsynthError(f"{root}: no usable BraTS cases found")
    return discovery.cases


def _seg_labels(data: np.ndarray, path: Path, naming: str, warn: Callable[[str], None] = print_warning) -> np.ndarray:
    """Checks a segmentation holds integer labels 0..255 and harmonises label 4 -> 3.

    BraTS <= 2021 label the enhancing tumour 4, BraTS 2023 label it 3. A 2023-named file that still
    holds 4 (a converted older case) is mapped too, with a warning naming the file.
    """
    labels = np.unique(data)
    if np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() > 255:
        raise TfsynthError(f"{path}: segmentation values must be integer labels 0..255, got {labels[:8].tolist()}")
    seg = data.astype(np.uint8)
    if naming != "brats2020" and 4 in labels:
        warn(f"{path}: label 4 (BraTS <= 2021 enhancing tumour) in a BraTS 2023-named case; mapped to 3")
    seg[seg == 4] = 3
    return seg


def validate_case(
    case: Case,
    max_voxels: int = MAX_VOXELS,
    max_axis: int = MAX_AXIS,
    warn: Callable[[str], None] = print_warning,
) -> LoadedCase:
    """Reads and checks every file of a case, and reorients it to the slicing orientation.

    Checks (each failure names the file): readable, one 3-D volume, sane header size,
    positive voxel size, finite values, same shape and affine as the case's first contrast,
    some nonzero (brain) voxels in each contrast, a zero background (skull-stripped:
    `tfsynth.data.brain_mask.check_zero_background`), integer labels in the segmentation.
    Then every volume is brought to the closest ``LPS`` voxel order (`tfsynth.data.geometry`),
    the layout slices are cut in.

    Args:
        warn: receives one-line warnings (label 4 in a BraTS 2023-named segmentation).

    Returns:
        The loaded case.

    Raises:
        TfsynthError: the first problem found, in one line.
    """
    volumes: dict[str, np.ndarray] = {}
    seg = None
    ref_path = ref_img = None
    for path in case.all_files():
        data, img = read_volume(path, max_voxels=max_voxels, max_axis=max_axis)
        if ref_img is None:
            ref_path, ref_img = path, img
        elif data.shape != volumes[next(iter(volumes))].shape:
            raise TfsynthError(
                f"{path}: shape {data.shape} differs from {ref_path.name} {volumes[next(iter(volumes))].shape}"
            )
        elif not np.allclose(img.affine, ref_img.affine, rtol=0, atol=AFFINE_ATOL_MM):
            diff = float(np.abs(img.affine - ref_img.affine).max())
            raise TfsynthError(f"{path}: affine differs from {ref_path.name} by up to {diff:.4g} mm")
        if path == case.seg:
            seg = _seg_labels(data, path, case.naming, warn)
        else:
            if not np.any(data):
                raise TfsynthError(f"{path}: volume is all zero (no brain voxels)")
            check_zero_background(data, path, CASE_ADVICE)
            volumes[_kind_of(case, path)] = data
    frame = Frame.of(ref_img.affine, next(iter(volumes.values())).shape, TRAINING_ORIENTATION)
    volumes = {contrast: frame.forward(volume, order=0) for contrast, volume in volumes.items()}
    seg = frame.forward(seg, order=0) if seg is not None else None
    zooms = tuple(round(float(z), 6) for z in frame.oriented_zooms)
    return LoadedCase(case, volumes, seg, frame.affine, zooms, ref_img, axcodes(ref_img.affine))


def _kind_of(case: Case, path: Path) -> str:
    return next(c for c, p in case.files.items() if p == path)
