"""Fitting shared by the voxel-wise baselines: subjects given as arrays, or a prepared split.

Both `tfsynth.baselines.lookup_table.IntensityMappingBaseline` and `tfsynth.baselines.linear_regression.LinearRegressionBaseline`
keep sufficient statistics that one ``accumulate(images, brain)`` call per subject adds to; this
mixin checks and feeds them (`AccumulatingFit.subject_arrays`), and saves and loads them as JSON
through the subclass's ``to_dict`` / ``from_dict``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from tfsynth.atomic import write_json
from tfsynth.contrasts import CONTRASTS, canonical
from tfsynth.data.normalize import brain_mask
from tfsynth.errors import TfsynthError


class AccumulatingFit:
    """``fit_arrays`` and ``fit_prepared`` over a subclass's ``accumulate(images, brain)``; ``save`` and ``load``.

    Attributes:
        DESCRIPTION: what the subclass is, for error messages.
        FILE_HINT: how the docs name its saved file, for error messages.
    """

    DESCRIPTION = "baseline"
    FILE_HINT = "BASELINE.json"

    def accumulate(self, images: Mapping[str, np.ndarray], brain: np.ndarray | None = None) -> None:
        raise NotImplementedError

    def subject_arrays(
        self, images: Mapping[str, np.ndarray], brain: np.ndarray | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """One subject's ``accumulate`` arguments, checked: its contrasts and its brain mask.

        Args:
            images: contrast name (any alias) -> ``[N, H, W]`` (or any shape) in [0, 1], the
                contrasts present for this subject, all the same shape.
            brain: mask of that shape; default: voxels where any given contrast is nonzero (the
                prepared data's brain mask, `tfsynth.data.normalize.brain_mask`).

        Returns:
            ``({canonical contrast name: float64 array}, bool brain mask)``.

        Raises:
            TfsynthError: contrasts of different shapes.
        """
        arrays = {canonical(name): np.asarray(array, dtype=np.float64) for name, array in images.items()}
        shapes = {array.shape for array in arrays.values()}
        if len(shapes) != 1:
            raise TfsynthError(f"{self.DESCRIPTION}: contrasts of one subject differ in shape: {sorted(shapes)}")
        brain = brain_mask(arrays.values()) if brain is None else np.asarray(brain, dtype=bool)
        return arrays, brain

    def fit_arrays(self, subjects: Iterable[Mapping[str, np.ndarray]]):
        """Fits on subjects given as dicts ``{contrast: [N, H, W] in [0, 1], optional "brain": mask}``.

        Returns:
            self.
        """
        for subject in subjects:
            subject = dict(subject)
            brain = subject.pop("brain", None)
            self.accumulate(subject, brain)
        return self

    def fit_prepared(self, prepared_dir: str | os.PathLike, split: str = "train"):
        """Fits on every slice of a split of a prepared directory (its brain masks, present contrasts).

        Returns:
            self.

        Raises:
            TfsynthError: not a prepared directory, or the split has no slices.
        """
        from tfsynth.data.tfrecord import iter_prepared_slices

        seen = 0
        for example in iter_prepared_slices(prepared_dir, split):
            present = example["present"]
            images = {c: example["images"][..., i] for i, c in enumerate(CONTRASTS) if present[i]}
            self.accumulate(images, example["brain"] > 0)
            seen += 1
        if not seen:
            raise TfsynthError(f"{prepared_dir}: split {split!r} has no slices to fit the {self.DESCRIPTION} on")
        return self

    def to_dict(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, values: dict):
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the statistics as JSON (``to_dict``), atomically."""
        write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Reads a file written by `save`.

        Raises:
            TfsynthError: missing, unreadable or not a file of this baseline, naming which.
        """
        try:
            values = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise TfsynthError(f"{path}: {cls.DESCRIPTION} file not found") from None
        except (OSError, ValueError) as error:
            raise TfsynthError(f"{path}: unreadable {cls.DESCRIPTION} file ({error})") from None
        try:
            return cls.from_dict(values)
        except (TfsynthError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise TfsynthError(f"{path}: {error}") from None
