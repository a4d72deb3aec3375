"""``metadata.json``, the contract beside every exported SavedModel: one schema, read and written here.

Like a MONAI bundle's ``metadata.json``, it states what a client must know to use the model:
the contrasts, the canvas (``image_size``), the voxel size and slicing orientation the model was
trained in, the intensity conventions, the signatures, the training config and versions.
`build_metadata` below makes it (`tfsynth.savedmodel.io.write_saved_model` writes it), and every
reader -- `tfsynth.synthesis.local`, `tfsynth.commands.synthesize`, `tfsynth.commands.evaluate`,
`tfsynth.savedmodel.export.export_run` -- goes through `read_metadata`, so a file the writer wrote is a file every reader accepts (tested).

Keys this module checks (others are kept as they are, under `ModelMetadata.extra`):

``format`` / ``format_version``
    ``"tfsynth-savedmodel"`` / 1 to `METADATA_FORMAT_VERSION` (older exports keep loading).
``contrasts``
    canonical contrast names, in label order.
``image_size``
    int, the training canvas H = W in voxels, or null.
``voxel_size_mm``
    ``[x, y, z]`` mm along the voxel axes of ``slice_orientation`` (a single number is read as
    isotropic), or null if unknown (then nothing is resampled).
``slice_orientation``
    axis codes of the voxel order the model was trained in (``"LPS"``); volumes are reoriented
    to it before slicing along ``slice_axis`` (2).
``mirror_average_axis``
    0, 1 or null: the in-plane axis of a served slice (0 = H, 1 = W) that runs left-right; the
    signatures average the generator's answer with its answer on the mirrored slice (training
    drew left-right flips). Null or absent: no average.
``completion``
    bool: the export has the completion signatures ``complete`` and ``complete_normalized``
    (any subset of contrasts in, a missing one out; the generator was trained with
    ``model.any_subset``). Absent (older exports): false.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

from tfsynth.contrasts import ALIASES, CONTRASTS
from tfsynth.data.geometry import TRAINING_ORIENTATION, check_orientation
from tfsynth.data.normalize import HIGH_PERCENTILE, LOW_PERCENTILE
from tfsynth.errors import TfsynthError
from tfsynth.savedmodel.contract import (
    CHUNK_SLICES,
    MIN_SIZE,
    metadata_signatures,
    precision_info,
)

METADATA_FILE = "metadata.json"
METADATA_FORMAT = "tfsynth-savedmodel"
# 2: both signatures take a ``source`` input; ``model.class`` names the generator.
# 3: the ``model_info`` signature; the StarGAN reference's class is ``StarGANGenerator``.
METADATA_FORMAT_VERSION = 3
SLICE_AXIS = 2


@dataclasses.dataclass
class ModelMetadata:
    """The parsed ``metadata.json`` (see the module docstring for the checked keys).

    Attributes:
        image_size: training canvas H = W, or None.
        voxel_size_mm: ``[x, y, z]`` in mm, or None.
        slice_orientation: axis codes, e.g. ``"LPS"``.
        contrasts: canonical names in label order.
        completion: the export has the `COMPLETION_SIGNATURES`.
        mirror_average_axis: 0, 1 or None, see the module docstring.
        model, training, serving, signatures: the corresponding sections (dicts, may be empty).
        extra: every other key of the file, kept verbatim.
    """

    image_size: int | None = None
    voxel_size_mm: list[float] | None = None
    slice_orientation: str = TRAINING_ORIENTATION
    slice_axis: int = SLICE_AXIS
    contrasts: list[str] = dataclasses.field(default_factory=lambda: list(CONTRASTS))
    completion: bool = False
    mirror_average_axis: int | None = None
    format: str = METADATA_FORMAT
    format_version: int = METADATA_FORMAT_VERSION
    tfsynth_version: str | None = None
    created: str | None = None
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    serving: dict[str, Any] = dataclasses.field(default_factory=dict)
    signatures: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, document: Any, where: str = METADATA_FILE) -> ModelMetadata:
        """Checks and parses a metadata document.

        Raises:
            TfsynthError: a wrong type or value of a checked key, naming ``where`` and the key.
        """
        if not isinstance(document, dict):
            raise TfsynthError(f"{where}: expected a JSON object, got {type(document).__name__}")
        values = dict(document)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {key: values.pop(key) for key in list(values) if key in names}
        if known.get("format", METADATA_FORMAT) != METADATA_FORMAT:
            raise TfsynthError(f"{where}: format {known['format']!r} is not {METADATA_FORMAT!r}")
        version = known.get("format_version", METADATA_FORMAT_VERSION)
        if not isinstance(version, int) or not 1 <= version <= METADATA_FORMAT_VERSION:
            raise TfsynthError(f"{where}: format_version {version!r} is not supported (<= {METADATA_FORMAT_VERSION})")
        known["image_size"] = _image_size(known.get("image_size"), where)
        known["voxel_size_mm"] = _voxel_size(known.get("voxel_size_mm"), where)
        try:
            known["slice_orientation"] = check_orientation(known.get("slice_orientation", TRAINING_ORIENTATION))
        except TfsynthError as error:
            raise TfsynthError(f"{where}: slice_orientation: {error}") from None
        if known.get("slice_axis", SLICE_AXIS) != SLICE_AXIS:
            raise TfsynthError(f"{where}: slice_axis {known['slice_axis']!r}: tfsynth slices along axis {SLICE_AXIS}")
        contrasts = known.get("contrasts", list(CONTRASTS))
        if list(contrasts) != list(CONTRASTS):
            raise TfsynthError(f"{where}: contrasts {contrasts!r} differ from tfsynth's {list(CONTRASTS)}")
        if not isinstance(known.get("completion", False), bool):
            raise TfsynthError(f"{where}: completion must be true or false, got {known['completion']!r}")
        if known.get("mirror_average_axis") not in (None, 0, 1) or isinstance(known.get("mirror_average_axis"), bool):
            raise TfsynthError(
                f"{where}: mirror_average_axis must be 0, 1 or null, got {known['mirror_average_axis']!r}"
            )
        for section in ("model", "training", "serving", "signatures"):
            value = known.get(section)
            value = {} if value is None else value
            if not isinstance(value, dict):
                raise TfsynthError(f"{where}: {section} must be an object, got {type(value).__name__}")
            known[section] = value
        return cls(**known, extra=values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (checked keys first, then ``extra``)."""
        document = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        document = {"format": document.pop("format"), "format_version": document.pop("format_version"), **document}
        return {**document, **self.extra}

    @property
    def model_version(self) -> str:
        """A short name of this model version, e.g. ``"tfsynth v3"`` or ``"tfsynth 0.4.0 2025-01-31"``."""
        if self.serving.get("version") is not None:
            return f"{self.serving.get('model_name', 'tfsynth')} v{self.serving['version']}"
        return " ".join(str(v) for v in ("tfsynth", self.tfsynth_version, (self.created or "")[:10]) if v)


def _image_size(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise TfsynthError(f"{where}: image_size must be a positive integer, got {value!r}")
    return int(value)


def _voxel_size(value: Any, where: str) -> list[float] | None:
    if value is None:
        return None
    values = [value] * 3 if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if (
        not isinstance(values, (list, tuple))
        or len(values) != 3
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values
        )
    ):
        raise TfsynthError(f"{where}: voxel_size_mm must be three positive numbers [x, y, z] (mm), got {value!r}")
    return [float(v) for v in values]


def read_metadata(directory: str | os.PathLike, required: bool = True) -> ModelMetadata:
    """Reads ``directory/metadata.json``.

    Args:
        directory: a SavedModel directory.
        required: without the file, raise (True) or return the defaults (False).

    Raises:
        TfsynthError: missing (if required), not JSON, or failing `ModelMetadata.from_dict`.
    """
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        if required:
            raise TfsynthError(f"{path}: not found; the SavedModel was not written by tfsynth.savedmodel.export")
        return ModelMetadata()
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TfsynthError(f"{path}: not valid JSON ({error})") from None
    return ModelMetadata.from_dict(document, str(path))


def write_metadata(directory: str | os.PathLike, metadata: ModelMetadata | dict) -> Path:
    """Writes ``metadata`` (checked by `ModelMetadata.from_dict` first) as ``directory/metadata.json``.

    Not atomic by itself: the SavedModel directory it goes into is written atomically as a whole.
    """
    if isinstance(metadata, dict):
        metadata = ModelMetadata.from_dict(metadata, "metadata to write")
    path = Path(directory) / METADATA_FILE
    path.write_text(json.dumps(metadata.to_dict(), indent=2) + "\n")
    return path


def as_metadata(value: ModelMetadata | dict | None) -> ModelMetadata:
    """A `ModelMetadata` from itself, a metadata dict, or None (the defaults)."""
    if isinstance(value, ModelMetadata):
        return value
    return ModelMetadata.from_dict(value or {}, "model metadata")


def build_metadata(generator, metadata: dict[str, Any] | None = None, compute_dtype: str = "float32") -> dict[str, Any]:
    """The MONAI-bundle-style contract written as ``metadata.json`` beside ``saved_model.pb``.

    Args:
        generator: the (original) generator, for its config and training precision.
        metadata: what the caller knows: ``image_size`` and ``voxel_size_mm`` (top level or
            under ``data``; image_size defaults to ``config.data.image_size``), ``config`` (the
            training `Config` or its dict), ``training`` (run facts, merged with the config under
            ``training``), ``evaluation`` (summary dict), ``mirror_average_axis`` (the serving
            graph's test-time mirror average, default none); other JSON-serialisable keys are kept.
        compute_dtype: the exported compute precision (see `tfsynth.savedmodel.io.write_saved_model`).

    Returns:
        A JSON-serialisable dict that `tfsynth.savedmodel.metadata.ModelMetadata.from_dict` accepts.

    Raises:
        TfsynthError: not JSON-serialisable, or a value the schema refuses (e.g. a voxel size
            that is not three positive numbers).
    """
    import keras
    import tensorflow as tf

    from tfsynth import __version__

    extra = dict(metadata or {})
    config = extra.pop("config", None)
    if config is not None and hasattr(config, "to_dict"):
        config = config.to_dict()
    data = extra.get("data") if isinstance(extra.get("data"), dict) else {}
    image_size = extra.pop("image_size", None) or data.get("image_size")
    if image_size is None and isinstance(config, dict):
        image_size = config.get("data", {}).get("image_size")
    voxel_size_mm = extra.pop("voxel_size_mm", None) or data.get("voxel_size_mm")
    training = extra.pop("training", None)
    training = {"config": config, **training} if isinstance(training, dict) else {"config": config}
    completion = bool(getattr(generator, "any_subset", False))
    result = {
        "format": METADATA_FORMAT,
        "format_version": METADATA_FORMAT_VERSION,
        "name": "tfsynth",
        "description": "Unified-GAN synthesis of one brain MRI contrast from another (one generator conditioned on "
        "the source and target contrasts), axial 2-D slices",
        "tfsynth_version": __version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "contrasts": list(CONTRASTS),
        "contrast_aliases": dict(ALIASES),
        "image_size": image_size,
        "voxel_size_mm": voxel_size_mm,
        "slice_orientation": TRAINING_ORIENTATION,
        "slice_axis": SLICE_AXIS,
        "completion": completion,
        "mirror_average_axis": extra.pop("mirror_average_axis", None),
        "intensity": {
            "input": "serving_default, complete: raw intensities, background exactly 0; "
            "synthesize_normalized, complete_normalized: [0, 1]",
            "normalization": {
                "method": "percentile clip and scale",
                "low_percentile": LOW_PERCENTILE,
                "high_percentile": HIGH_PERCENTILE,
                "interpolation": "linear (numpy default)",
                "mask": "nonzero voxels of the whole request",
            },
            "network_range": [-1.0, 1.0],
            "output_range": [0.0, 1.0],
        },
        "spatial": {
            "layout": "[N, H, W] axial slices; a NIfTI volume [X, Y, Z], reoriented to slice_orientation, "
            "is sent as [Z, X, Y]",
            "min_height_width": MIN_SIZE,
            "canvas": "centre crop to image_size if only zero voxels are removed, then zero-pad centrally to "
            "max(image_size, size rounded up to a multiple of 4) per axis; undone on the output",
            "chunk_slices": CHUNK_SLICES,
        },
        "signatures": metadata_signatures(completion),
        "model": {
            "architecture": getattr(generator, "ARCHITECTURE", type(generator).__name__),
            "class": type(generator).__name__,
            "config": generator.get_config(),
            "trained_compute_dtype": str(generator.compute_dtype),
            "exported_compute_dtype": compute_dtype,
            "compute_precision": precision_info(compute_dtype),
        },
        "training": training,
        "evaluation": extra.pop("evaluation", None),
    }
    result.update(extra)
    try:
        document = json.loads(json.dumps(result, default=_json_default))
    except (TypeError, ValueError) as error:
        raise TfsynthError(f"export metadata is not JSON-serialisable: {error}") from None
    return ModelMetadata.from_dict(document, "export metadata").to_dict()


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "get_config"):
        return value.get_config()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
