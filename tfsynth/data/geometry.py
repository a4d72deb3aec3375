"""Where a volume's voxels lie for the model: the slicing orientation and the voxel size.

**Orientation.** tfsynth cuts volumes into slices along their third voxel axis, and learnt from
volumes whose voxel axes run towards the patient's Left, Posterior and Superior (``LPS``: the
BraTS layout, also what `tfsynth.phantom.cohort.grid_affine` writes). A volume stored otherwise
(RAS, as ``nibabel.as_closest_canonical`` or MONAI ``Orientation("RAS")`` leave it; the axial axis
first; ...) is brought to the closest ``LPS`` voxel order with nibabel's ``io_orientation`` /
``ornt_transform`` / ``apply_orientation`` -- axis permutations and flips only, so exact and
invertible -- and every result goes back through the inverse, onto the input's own grid.

**Voxel size.** As nnU-Net does (Isensee et al., Nat Methods 2021), a volume whose voxel size
differs from the model's is resampled to it before synthesis (third-order spline for
intensities, linear interpolation thresholded at 0.5 for masks, nearest neighbour for labels;
``scipy.ndimage.zoom`` with ``grid_mode=True``, i.e. the volume's extent is kept) and the result
is resampled back to the input's grid. Per-axis differences within `VOXEL_TOLERANCE` are ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from tfsynth.errors import TfsynthError

TRAINING_ORIENTATION = "LPS"
# Relative per-axis voxel-size difference below which no resampling happens.
VOXEL_TOLERANCE = 0.01
_PAIRS = ({"L", "R"}, {"A", "P"}, {"S", "I"})


def check_orientation(codes: str) -> str:
    """``codes`` (e.g. ``"LPS"``) if it names each of the three anatomical axes once.

    Raises:
        TfsynthError: anything else.
    """
    codes = str(codes).upper()
    axes = sorted(i for c in codes for i, pair in enumerate(_PAIRS) if c in pair)
    if len(codes) != 3 or axes != [0, 1, 2]:
        raise TfsynthError(f"orientation {codes!r} must name each axis once, e.g. LPS or RAS")
    return codes


def axcodes(affine: np.ndarray) -> str:
    """The closest axis codes of a voxel-to-world affine, e.g. ``"LPS"``."""
    return "".join(nib.aff2axcodes(np.asarray(affine, dtype=np.float64)))


def zooms_of(affine: np.ndarray) -> np.ndarray:
    """Voxel size [3] (mm) along each voxel axis of ``affine``."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


@dataclasses.dataclass(frozen=True)
class Frame:
    """The mapping of one volume into the model's frame (orientation, then voxel size) and back.

    Build it with `Frame.of`. ``forward`` takes arrays shaped like the input volume ``[X, Y, Z]``
    to the model's frame ``[X', Y', Z']``; ``backward`` returns arrays of the model's frame to the
    input's exact shape and voxel order.

    Attributes:
        shape: the input volume's shape.
        to_model: nibabel orientation transform from the input's voxel axes to ``orientation``.
        from_model: its inverse.
        oriented_shape: the shape after reorientation.
        oriented_zooms: voxel size (mm) after reorientation.
        model_shape: the shape in the model's frame (after any resampling).
        affine: the voxel-to-world affine of the model's frame.
    """

    shape: tuple[int, int, int]
    to_model: np.ndarray
    from_model: np.ndarray
    oriented_shape: tuple[int, int, int]
    oriented_zooms: tuple[float, float, float]
    model_shape: tuple[int, int, int]
    affine: np.ndarray

    @classmethod
    def of(
        cls,
        affine: np.ndarray,
        shape: Sequence[int],
        orientation: str = TRAINING_ORIENTATION,
        voxel_size_mm: Sequence[float] | None = None,
    ) -> Frame:
        """The frame of a volume with ``affine`` and ``shape`` for a model.

        Args:
            affine: the volume's voxel-to-world matrix [4, 4].
            shape: its 3-D shape.
            orientation: the model's slicing orientation (axis codes).
            voxel_size_mm: the model's voxel size [3] in that orientation; None: no resampling.
        """
        affine = np.asarray(affine, dtype=np.float64)
        shape = tuple(int(n) for n in shape)
        start = nib.orientations.io_orientation(affine)
        end = nib.orientations.axcodes2ornt(check_orientation(orientation))
        to_model = nib.orientations.ornt_transform(start, end)
        oriented_affine = affine @ nib.orientations.inv_ornt_aff(to_model, shape)
        oriented_shape = tuple(int(shape[int(axis)]) for axis in np.argsort(to_model[:, 0]))
        zooms = zooms_of(oriented_affine)
        model_shape = oriented_shape
        if voxel_size_mm is not None:
            target = np.asarray(voxel_size_mm, dtype=np.float64)
            if np.any(np.abs(zooms / target - 1) > VOXEL_TOLERANCE):
                model_shape = tuple(
                    max(1, int(round(n * z / t))) for n, z, t in zip(oriented_shape, zooms, target, strict=True)
                )
        scale = np.array(oriented_shape, dtype=np.float64) / np.array(model_shape, dtype=np.float64)
        # grid_mode: voxel i of the new grid covers [i, i + 1) * scale of the old one.
        model_affine = oriented_affine @ np.vstack(
            [np.hstack([np.diag(scale), ((scale - 1) / 2)[:, None]]), [0, 0, 0, 1]]
        )
        from_model = nib.orientations.ornt_transform(end, start)
        return cls(shape, to_model, from_model, oriented_shape, tuple(zooms.tolist()), model_shape, model_affine)

    @property
    def resampled(self) -> bool:
        return self.model_shape != self.oriented_shape

    @property
    def reoriented(self) -> bool:
        return not np.array_equal(self.to_model, [[0, 1], [1, 1], [2, 1]])

    def forward(self, data: np.ndarray, order: int = 3) -> np.ndarray:
        """``[X, Y, Z]`` on the input's grid -> the model's frame (``order``: spline order, 0 for labels)."""
        data = self._check(data, self.shape, "input")
        oriented = nib.orientations.apply_orientation(data, self.to_model)
        return _zoom(oriented, self.model_shape, order)

    def forward_mask(self, mask: np.ndarray) -> np.ndarray:
        """A boolean mask on the input's grid -> bool in the model's frame (linear, > 0.5)."""
        if not self.resampled:
            return self.forward(np.asarray(mask, dtype=bool), order=0)
        return self.forward(np.asarray(mask, dtype=np.float32), order=1) > 0.5

    def normalized(
        self, volume: np.ndarray, name: str, brain: np.ndarray | None = None, model_brain: np.ndarray | None = None
    ) -> np.ndarray:
        """A contrast volume on the input's grid, normalised as ``prepare`` does, in the model's frame.

        `tfsynth.data.normalize.percentile_normalize` over the brain's voxels on the input's grid,
        then `forward`; the result is in [0, 1] and exactly 0 outside the brain (the model's
        inputs are zero there, and a spline would ring into the background). Normalising before
        resampling keeps the percentiles of the voxels ``prepare`` saw.

        Args:
            volume: ``[X, Y, Z]`` raw intensities.
            name: what to call the volume in an error (e.g. its file).
            brain: bool ``[X, Y, Z]``; default: the volume's nonzero voxels.
            model_brain: ``forward_mask(brain)`` if the caller has it already (resampling a mask
                costs a pass over the volume).

        Raises:
            TfsynthError: a brain of a single intensity, naming ``name``.
        """
        from tfsynth.data.normalize import percentile_normalize

        brain = volume != 0 if brain is None else brain
        try:
            normalized = percentile_normalize(volume, brain)[0]
        except TfsynthError as error:
            raise TfsynthError(f"{name}: {error}") from None
        model_brain = self.forward_mask(brain) if model_brain is None else model_brain
        return np.clip(self.forward(normalized), 0.0, 1.0) * model_brain

    def backward(self, data: np.ndarray, order: int = 3) -> np.ndarray:
        """Inverse of `forward`: an array of the model's frame -> exactly the input's shape and voxel order."""
        data = self._check(data, self.model_shape, "model-frame")
        oriented = _zoom(data, self.oriented_shape, order)
        return np.ascontiguousarray(nib.orientations.apply_orientation(oriented, self.from_model))

    @staticmethod
    def _check(data: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
        data = np.asarray(data)
        if data.shape != tuple(shape):
            raise TfsynthError(f"{what} array of shape {data.shape} does not fit the frame's {tuple(shape)}")
        return data


def _zoom(data: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    """``data`` resampled to ``shape`` over the same extent (a copy of ``data`` if already that shape)."""
    if data.shape == tuple(shape):
        return np.ascontiguousarray(data)
    from scipy import ndimage

    factors = [n / m for n, m in zip(shape, data.shape, strict=True)]
    source = data.astype(np.float32) if order > 0 else data
    return ndimage.zoom(source, factors, order=order, mode="nearest", grid_mode=True)
