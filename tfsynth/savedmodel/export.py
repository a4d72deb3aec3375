"""Export a trained run into TF Serving's ``<base>/<name>/<version>/`` layout, atomically.

`export_run` copies ``RUN_DIR/saved_model`` (written by training through
`tfsynth.savedmodel.io.write_saved_model`) into ``BASE/NAME/VERSION/``; with a compute precision
other than the run's, the generator is rebuilt from the SavedModel's own variables and
re-exported instead. TF Serving only loads integer-named version folders, so the ``.tmp-*``
folder being written is invisible to it until the final rename.

The signatures, their inputs and outputs and the request checks are declared once in
`tfsynth.savedmodel.contract` (docs/serving.md renders them). Compute precisions:
``float32`` (the default; answers equal a float32 evaluation of the Keras model) and
``bfloat16`` (Keras ``mixed_bfloat16``; worth it only on hardware with native bfloat16 matrix
units, see docs/speed.md); ``metadata.json`` records the choice under ``model.compute_precision``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from tfsynth.atomic import atomic_directory
from tfsynth.errors import TfsynthError
from tfsynth.savedmodel.contract import precision_info
from tfsynth.savedmodel.io import (
    check_compute_dtype,
    generator_from_saved_model,
    save,
)
from tfsynth.savedmodel.metadata import (
    METADATA_FILE,
    read_metadata,
    write_metadata,
)


def next_version(model_dir: str | os.PathLike) -> int:
    """One more than the largest integer-named version folder under ``model_dir`` (1 if none)."""
    model_dir = Path(model_dir)
    versions = (
        [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()] if model_dir.is_dir() else []
    )
    return max(versions, default=0) + 1


def export_run(
    run_dir: str | os.PathLike,
    base_path: str | os.PathLike,
    name: str = "tfsynth",
    version: int | None = None,
    precision: str | None = None,
) -> Path:
    """Copies a run's SavedModel to ``base_path/name/version/`` (TF Serving layout), atomically.

    The copy is written under a ``.tmp-*`` name, which TF Serving ignores (it only loads
    integer-named folders), and renamed into place once complete. Versions are immutable: an
    existing one is never replaced.

    Args:
        run_dir: a training run directory holding ``saved_model/`` (or a SavedModel directory).
        base_path: the TF Serving model base path's parent (``--model_base_path`` is ``base_path/name``).
        name: model name in TF Serving.
        version: positive integer; default the next free one.
        precision: compute precision of the served model (``float32`` or ``bfloat16``); default
            the run's. A different one re-exports the generator rebuilt from the run's SavedModel.

    Returns:
        The version directory.

    Raises:
        TfsynthError: no SavedModel in ``run_dir``, invalid name, version or precision, or the
            version exists.
    """
    run_dir = Path(run_dir)
    if precision is not None:
        precision = check_compute_dtype(precision)
    source = run_dir / "saved_model"
    if not (source / "saved_model.pb").is_file():
        if (run_dir / "saved_model.pb").is_file():
            source = run_dir
        else:
            raise TfsynthError(
                f"{run_dir} has no exported model: {source}/saved_model.pb not found (train the run first)"
            )
    if not (source / METADATA_FILE).is_file():
        raise TfsynthError(
            f"{source} has no {METADATA_FILE}; it was not written by tfsynth.savedmodel.io.write_saved_model"
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise TfsynthError(f"model name {name!r} is invalid: use letters, digits, '_', '.', '-'")
    model_dir = Path(base_path) / name
    if version is None:
        version = next_version(model_dir)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TfsynthError(f"version must be a positive integer, got {version!r}")
    target = model_dir / str(version)
    if target.exists():
        raise TfsynthError(f"{target} already exists; versions are immutable, choose another --version")
    metadata = read_metadata(source).to_dict()
    metadata["serving"] = {
        "model_name": name,
        "version": version,
        "exported_from": str(run_dir.resolve()),
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if metadata.get("evaluation") is None:
        metadata["evaluation"] = _evaluation_summary(run_dir)
    current = metadata.get("model", {}).get("exported_compute_dtype", "float32")
    if precision is None or precision == current:
        with _new_version_directory(target) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
            write_metadata(tmp, metadata)
        return target
    generator = generator_from_saved_model(source)
    metadata["model"]["exported_compute_dtype"] = precision
    metadata["model"]["compute_precision"] = precision_info(precision)
    with _new_version_directory(target) as tmp:
        save(generator, tmp, metadata, precision)
    return target


@contextlib.contextmanager
def _new_version_directory(target: Path):
    """`atomic_directory` for a version folder, with a clear error when a concurrent export
    took the same version number between our check and our rename."""
    try:
        with atomic_directory(target) as tmp:
            yield tmp
    except OSError:
        if target.exists():
            raise TfsynthError(
                f"{target} appeared while exporting (a concurrent export took version {target.name}); run again"
            ) from None
        raise


def _evaluation_summary(run_dir: Path) -> Any:
    """The run's evaluation results if `tfsynth.commands.evaluate` left a JSON summary in it, else None."""
    for candidate in ("evaluation.json", "evaluation/summary.json", "evaluation/metrics.json"):
        path = run_dir / candidate
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                return None
    return None
