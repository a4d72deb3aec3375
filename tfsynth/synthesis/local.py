"""Local inference with an exported SavedModel: the same graph TF Serving runs, in-process.

`load_synthesizer` accepts a training run directory (uses ``RUN/saved_model``), a SavedModel
directory, or a TF Serving model directory ``<base>/<name>`` (its highest integer version).
The returned `Synthesizer` calls the SavedModel's signatures (declared in `tfsynth.savedmodel.contract`), so local
results and served results come from one implementation of the preprocessing: one contrast to
another (`Synthesizer.synthesize_raw`), and with a model trained on any subset of contrasts, the
missing contrast from those available (`Synthesizer.complete_raw`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tfsynth.contrasts import NUM_CONTRASTS, canonical, canonical_list
from tfsynth.errors import TfsynthError, tf_error_message
from tfsynth.savedmodel.contract import (
    COMPLETION_SIGNATURES,
    IMAGE,
    MIN_SIZE,
    OUTPUT,
    SIGNATURES,
    SOURCE,
    SOURCES,
    TARGET,
    signature_for,
)
from tfsynth.savedmodel.metadata import ModelMetadata, read_metadata


def resolve_saved_model(path: str | os.PathLike) -> Path:
    """Finds the SavedModel directory a user means by ``path``.

    Args:
        path: a SavedModel directory, a run directory holding ``saved_model/``, or a TF Serving
            model directory holding integer version folders (the highest is used).

    Raises:
        TfsynthError: none of these.
    """
    path = Path(path)
    if not path.exists():
        raise TfsynthError(f"{path}: no such file or directory")
    if (path / "saved_model.pb").is_file():
        return path
    if (path / "saved_model" / "saved_model.pb").is_file():
        return path / "saved_model"
    if path.is_dir():
        versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
        if versions:
            return max(versions, key=lambda p: int(p.name))
    raise TfsynthError(
        f"{path}: no SavedModel found (expected saved_model.pb, a run directory with saved_model/, "
        "or TF Serving version folders <n>/saved_model.pb)"
    )


class Synthesizer:
    """A loaded tfsynth SavedModel.

    Attributes:
        path: the SavedModel directory.
        metadata: its ``metadata.json`` (`tfsynth.savedmodel.metadata.ModelMetadata`: image size, voxel
            size, slicing orientation, conventions, ...); the defaults if the file is absent.
    """

    def __init__(self, saved_model_dir: str | os.PathLike):
        import tensorflow as tf

        self.path = Path(saved_model_dir)
        self.metadata: ModelMetadata = read_metadata(self.path, required=False)
        try:
            self._model = tf.saved_model.load(str(self.path))
        except Exception as error:  # corrupt protobuf, missing variables ...
            raise TfsynthError(f"{self.path}: cannot load SavedModel ({type(error).__name__}: {error})") from None
        missing = set(SIGNATURES) - set(self._model.signatures)
        if missing:
            raise TfsynthError(f"{self.path}: not a tfsynth SavedModel, missing signature(s) {sorted(missing)}")

    def synthesize_normalized(
        self, images01: np.ndarray, sources: str | Sequence[str], targets: str | Sequence[str]
    ) -> np.ndarray:
        """Synthesises target contrasts from slices already normalised to [0, 1].

        Args:
            images01: float [N, H, W] in [0, 1], H, W >= 16.
            sources: the contrast of the slices: one name for every slice, or N names.
            targets: one contrast name for every slice, or N names (aliases accepted).

        Returns:
            float32 [N, H, W] in [0, 1] (not masked).
        """
        return self._run(signature_for(subset=False, raw=False), images01, sources, targets)

    def synthesize_raw(
        self, images: np.ndarray, sources: str | Sequence[str], targets: str | Sequence[str]
    ) -> np.ndarray:
        """Synthesises from raw intensities, normalising the whole stack as one volume in the graph.

        Args:
            images: float [N, H, W] raw intensities, background exactly 0 (e.g. a volume
                ``[X, Y, Z]`` as ``np.moveaxis(volume, -1, 0)``).
            sources: the contrast of the slices: one name, or N names.
            targets: one contrast name for every slice, or N names.

        Returns:
            float32 [N, H, W] in [0, 1], 0 outside the nonzero voxels of ``images``. Equal to what
            TF Serving returns for the same request.
        """
        return self._run(signature_for(subset=False, raw=True), images, sources, targets)

    @property
    def completes(self) -> bool:
        """Whether the model has the completion signatures (it was trained with ``model.any_subset``)."""
        return set(COMPLETION_SIGNATURES) <= set(self._model.signatures)

    def complete_raw(self, images: Mapping[str, np.ndarray], target: str) -> np.ndarray:
        """Synthesises a missing contrast from the available ones, raw intensities in (``complete``).

        Each contrast is normalised on its own in the graph, as `synthesize_raw` normalises its stack.

        Args:
            images: ``{contrast name: float [N, H, W]}`` for 1 to 3 contrasts of the same slices
                (aliases accepted), raw intensities, background exactly 0.
            target: the contrast to synthesise, not among ``images``.

        Returns:
            float32 [N, H, W] in [0, 1], 0 outside the union of the inputs' nonzero voxels.

        Raises:
            TfsynthError: the model has no completion signature, or a bad input (unknown or
                repeated name, target among the inputs, shapes that differ or are not [N, H, W]).
        """
        return self._complete(signature_for(subset=True, raw=True), images, target)

    def complete_normalized(self, images01: Mapping[str, np.ndarray], target: str) -> np.ndarray:
        """`complete_raw` for slices already in [0, 1] (``complete_normalized``); the output is not masked."""
        return self._complete(signature_for(subset=True, raw=False), images01, target)

    def _complete(self, signature: str, images: Mapping[str, np.ndarray], target: str) -> np.ndarray:
        if not self.completes:
            raise TfsynthError(
                f"{self.path}: this model has no completion signature ({signature}); "
                "train it with model.any_subset to synthesise from several contrasts"
            )
        sources, stack, target = _check_completion(images, target)
        return self._call(signature, {IMAGE: stack, SOURCES: sources, TARGET: [target]})

    def _run(self, signature: str, images, sources, targets) -> np.ndarray:
        images = _check_images(images)
        return self._call(
            signature,
            {
                IMAGE: images,
                SOURCE: _check_names(sources, images.shape[0], "sources"),
                TARGET: _check_names(targets, images.shape[0], "targets"),
            },
        )

    def _call(self, signature: str, inputs: Mapping[str, object]) -> np.ndarray:
        """Runs a signature; its INVALID_ARGUMENT errors become `TfsynthError` naming the signature."""
        import tensorflow as tf

        try:
            out = self._model.signatures[signature](**{key: tf.constant(value) for key, value in inputs.items()})
        except tf.errors.InvalidArgumentError as error:
            raise TfsynthError(f"{signature}: {tf_error_message(error.message)}") from None
        return out[OUTPUT].numpy()


def _check_images(images) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise TfsynthError(f"images must be an array [N, H, W], got shape {images.shape}")
    if images.shape[0] < 1 or min(images.shape[1:]) < MIN_SIZE:
        raise TfsynthError(
            f"images must hold N >= 1 slices of at least {MIN_SIZE}x{MIN_SIZE}, got shape {images.shape}"
        )
    if not np.all(np.isfinite(images)):
        raise TfsynthError("images contain NaN or infinite values")
    return images


def _check_completion(images: Mapping[str, np.ndarray], target: str) -> tuple[list[str], np.ndarray, str]:
    """Checks a completion request: ``(canonical source names, float32 [N, H, W, C], canonical target)``."""
    if not isinstance(images, Mapping) or not 1 <= len(images) < NUM_CONTRASTS:
        count = len(images) if isinstance(images, Mapping) else type(images).__name__
        raise TfsynthError(f"images must map 1 to {NUM_CONTRASTS - 1} contrast names to arrays [N, H, W], got {count}")
    sources = canonical_list(images)
    target = canonical(target)
    if target in sources:
        raise TfsynthError(f"target {target!r} is among the inputs {sources}: name a missing contrast")
    arrays = [_check_images(array) for array in images.values()]
    if len({array.shape for array in arrays}) > 1:
        shapes = ", ".join(f"{name} {array.shape}" for name, array in zip(sources, arrays, strict=True))
        raise TfsynthError(f"the inputs must be slices of one shape [N, H, W]; got {shapes}")
    return sources, np.stack(arrays, axis=-1), target


def _check_names(names, n: int, what: str) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    names = [canonical(name) for name in names]
    if len(names) not in (1, n):
        raise TfsynthError(f"{what} must name 1 contrast or one per slice ({n}), got {len(names)}")
    return names


def load_synthesizer(path: str | os.PathLike) -> Synthesizer:
    """Loads the SavedModel that ``path`` designates (see `resolve_saved_model`)."""
    return Synthesizer(resolve_saved_model(path))
