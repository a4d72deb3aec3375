"""Reading and writing NIfTI volumes, with every check a user's file can fail stated in one line.

`read_volume` checks the header (dimensionality, size, voxel size) before it touches the
voxel data, so a corrupt or absurd header is refused without allocating memory for it;
then it reads the data (a truncated ``.nii.gz`` fails here) and checks it is finite.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np

from tfsynth.atomic import atomic_paths
from tfsynth.data.output_dir import write_error
from tfsynth.errors import TfsynthError

# Affines may differ by float32 rounding between files written by different tools.
AFFINE_ATOL_MM = 1e-3

# BraTS volumes are 240x240x155; clinical in-plane matrices reach 1024 (640x640x31, 1024x1024x24
# exist), so 2048 per axis refuses only headers no scanner writes. The voxel cap (1 GiB as float32)
# refuses absurd headers before numpy allocates them.
MAX_AXIS = 2048
MAX_VOXELS = 2**28
# NIfTI intents that store a colour or vector per voxel in an extra dimension.
_VECTOR_INTENTS = {"rgb vector": "RGB", "rgba vector": "RGBA", "vector": "vector"}


def _not_grey_level(img: nib.spatialimages.SpatialImage, shape: tuple[int, ...]) -> str | None:
    """Why the image holds something other than one grey level per voxel (colour, vectors,
    complex values), or None."""
    dtype = img.header.get_data_dtype()
    if dtype.names:  # NIfTI rgb24 / rgba32: a structured dtype with one field per channel
        return f"{''.join(dtype.names)} colour image (one {len(dtype.names)}-channel value per voxel)"
    if dtype.kind == "c":
        return f"complex-valued image ({dtype})"
    get_intent = getattr(img.header, "get_intent", None)
    intent = get_intent()[0] if get_intent is not None else "none"
    if intent in _VECTOR_INTENTS and len(shape) > 3:
        kind = _VECTOR_INTENTS[intent]
        return f"{kind} image stored as {shape[-1]} components per voxel (intent {intent!r}, shape {shape})"
    if len(shape) > 3 and shape[-1] in (3, 4) and dtype == np.uint8 and all(n == 1 for n in shape[3:-1]):
        return f"{'RGB' if shape[-1] == 3 else 'RGBA'} colour image (uint8, {shape[-1]} channels, shape {shape})"
    return None


def header_shape(img: nib.spatialimages.SpatialImage, path: str | os.PathLike) -> tuple[int, int, int]:
    """Returns the 3-D shape stated by the header, refusing anything that is not one 3-D volume.

    Trailing singleton dimensions (e.g. ``[X, Y, Z, 1]`` written by some tools) are accepted.

    Raises:
        TfsynthError: a colour (RGB/RGBA), vector or complex-valued image; not 3-D after dropping
            trailing singletons; or an empty axis.
    """
    shape = tuple(int(n) for n in img.header.get_data_shape())
    not_grey = _not_grey_level(img, shape)
    if not_grey:
        raise TfsynthError(f"{path}: {not_grey}; one grey-level volume expected per file")
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise TfsynthError(f"{path}: {len(shape)}-D image of shape {shape}; expected one 3-D volume per file")
    if min(shape) < 1:
        raise TfsynthError(f"{path}: header states an empty dimension {shape}")
    return shape  # type: ignore[return-value]


def read_volume(
    path: str | os.PathLike, max_voxels: int = MAX_VOXELS, max_axis: int = MAX_AXIS
) -> tuple[np.ndarray, nib.spatialimages.SpatialImage]:
    """Reads one 3-D NIfTI volume after validating it.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        max_voxels: refuse headers stating more voxels than this (checked before loading).
        max_axis: refuse headers stating more than this many voxels along any axis.

    Returns:
        ``(data, img)``: data float32 ``[X, Y, Z]`` (scaling applied), and the nibabel image
        (header and affine; use it as the reference grid for `write_like`).

    Raises:
        TfsynthError: unreadable header, not one grey-level 3-D volume, absurd dimensions, invalid voxel size,
            truncated or corrupt voxel data, or non-finite values. The message names ``path``.
    """
    path = Path(path)
    try:
        img = nib.load(path)
    except FileNotFoundError:
        raise TfsynthError(f"{path}: file not found") from None
    except Exception as error:  # nibabel raises many types for a bad header
        raise TfsynthError(f"{path}: cannot read NIfTI header ({type(error).__name__}: {error})") from None
    shape = header_shape(img, path)
    if max(shape) > max_axis or int(np.prod(shape, dtype=np.int64)) > max_voxels:
        raise TfsynthError(
            f"{path}: header states an implausible size {shape} "
            f"(limits: {max_axis} voxels per axis, {max_voxels} voxels in all)"
        )
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=np.float64)
    if not (np.all(np.isfinite(zooms)) and np.all(zooms > 0)):
        raise TfsynthError(f"{path}: invalid voxel size {tuple(zooms.tolist())} in header")
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as error:  # EOFError, zlib.error, ValueError (mmap too short), OSError ...
        raise TfsynthError(
            f"{path}: cannot read voxel data, file truncated or corrupt ({type(error).__name__}: {error})"
        ) from None
    data = data.reshape(shape)
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise TfsynthError(f"{path}: {bad} non-finite voxel values (NaN or inf)")
    return data, img


DESCRIP_BYTES = 80  # the NIfTI-1 header's descrip field


def write_like(
    path: str | os.PathLike,
    data: np.ndarray,
    reference_img: nib.spatialimages.SpatialImage,
    descrip: str = "written by tfsynth",
) -> Path:
    """Writes ``data`` as a float32 NIfTI on exactly the reference image's grid, atomically.

    One file of `write_all_like`, which says what is copied from the reference and what not.

    Args:
        path: output ``.nii`` or ``.nii.gz`` path.
        data: ``[X, Y, Z]`` array with the reference's 3-D shape.
        reference_img: the image whose grid to copy (as returned by `read_volume`).
        descrip: the header description (at most 80 bytes are kept), e.g. ``"tfsynth: T2 synthesised
            from T1 by tfsynth v3, range 0-1"``.

    Returns:
        ``path`` as a Path.

    Raises:
        TfsynthError: ``data`` does not have the reference's shape.
        OutputError: the file cannot be written (naming it and the reason); nothing is left behind.
    """
    return write_all_like({path: (data, descrip)}, reference_img)[0]


def write_all_like(
    volumes: Mapping[str | os.PathLike, tuple[np.ndarray, str]],
    reference_img: nib.spatialimages.SpatialImage,
) -> list[Path]:
    """Writes float32 NIfTI volumes on exactly the reference image's grid, as one set: all or none.

    For one case's outputs (`tfsynth.atomic.atomic_paths`): each goes to a temporary name beside
    its path and all are renamed at the end, so an interruption (Ctrl-C, ``kill``, a full disk)
    leaves none of them and existing files as they were.

    The shape, affine, qform/sform (with their codes), voxel sizes and units are copied from the
    reference, so each result overlays the source volume in any viewer. What describes the
    reference's *intensities* is not copied: the display window ``cal_min``/``cal_max`` is reset
    to 0/0 (unset: viewers such as FSLeyes, MRIcroGL and niivue then use the data range), the
    scaling is ``scl_slope`` 1 / ``scl_inter`` 0, intent and aux file are cleared, and the
    ``descrip`` given says what the file is.

    Args:
        volumes: output ``.nii`` / ``.nii.gz`` path -> (``[X, Y, Z]`` array of the reference's 3-D
            shape, header description of at most 80 bytes).
        reference_img: the image whose grid to copy (as returned by `read_volume`).

    Returns:
        The paths, in the order of ``volumes``.

    Raises:
        TfsynthError: an array does not have the reference's shape (before anything is written).
        OutputError: a file cannot be written (naming it and the reason); nothing is left behind.
    """
    images = {
        Path(path): _image_like(Path(path), data, reference_img, descrip) for path, (data, descrip) in volumes.items()
    }
    current = None  # the file being written, for the error
    try:
        with atomic_paths(images) as tmps:
            for (path, image), tmp in zip(images.items(), tmps, strict=True):
                current = path
                nib.save(image, tmp)
            current = None
    except OSError as error:  # a full disk raises "[Errno 28]" naming no file
        # None: creating the folder or the renames at the end failed; the folder is what to name.
        raise write_error(current or next(iter(images)).parent, error) from None
    return list(images)


def _image_like(path: Path, data: np.ndarray, reference_img, descrip: str) -> nib.Nifti1Image:
    """``data`` as a float32 image with the reference's grid and a fresh intensity description (see `write_all_like`)."""
    shape = header_shape(reference_img, "reference image")
    data = np.asarray(data, dtype=np.float32)
    if data.shape != shape:
        raise TfsynthError(f"{path}: data shape {data.shape} differs from the reference grid {shape}")
    klass = type(reference_img) if isinstance(reference_img, (nib.Nifti1Image, nib.Nifti2Image)) else nib.Nifti1Image
    header = reference_img.header.copy() if klass is type(reference_img) else None
    img = klass(data, reference_img.affine, header=header)
    img.set_data_dtype(np.float32)
    img.header.set_slope_inter(1.0, 0.0)
    img.header.set_zooms(tuple(reference_img.header.get_zooms()[:3]))
    img.header["cal_min"], img.header["cal_max"] = 0.0, 0.0
    img.header.set_intent("none")
    img.header["aux_file"] = b""
    img.header["descrip"] = descrip.encode("utf-8")[:DESCRIP_BYTES]
    if isinstance(reference_img, (nib.Nifti1Image, nib.Nifti2Image)):
        sform, scode = reference_img.get_sform(coded=True)
        qform, qcode = reference_img.get_qform(coded=True)
        img.set_sform(sform if sform is not None else reference_img.affine, code=int(scode))
        img.set_qform(qform if qform is not None else reference_img.affine, code=int(qcode))
    return img
