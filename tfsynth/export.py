"""SavedModel export for TensorFlow Serving: named signatures with the preprocessing in the graph.

The exported SavedModel is self-contained (it loads with no tfsynth import) and holds two
signatures (inputs and outputs named, contrasts given as strings):

``serving_default``
    ``image`` float32 [N, H, W] raw scanner intensities (the axial slices of one volume, or
    any stack), ``source`` (the contrast of ``image``) and ``target`` string [N] or [1] (broadcast) -> ``synthesized`` float32
    [N, H, W] in [0, 1], zero outside the input's nonzero voxels. The request is normalised
    as one volume, exactly as `tfsynth.data.normalize.percentile_normalize` does: brain =
    nonzero voxels, clip to the 0.5 / 99.5 percentiles of the brain (numpy's linear
    interpolation, computed in float64), scale to [0, 1].
``synthesize_normalized``
    ``image`` float32 [N, H, W] already in [0, 1], ``source`` and ``target`` as above -> ``synthesized``
    float32 [N, H, W] in [0, 1] (no masking: a normalised slice no longer tells the
    background from the darkest brain voxels; mask with the source's brain mask).
``complete`` (only when the generator was trained with ``model.any_subset``)
    ``image`` float32 [N, H, W, C] raw intensities of C = 1..3 contrasts of the same slices,
    ``sources`` string [C] (their names, each once), ``target`` string [N] or [1] (a contrast
    not among ``sources``) -> ``synthesized`` float32 [N, H, W] in [0, 1], zero outside the union
    of the inputs' nonzero voxels. Each channel is normalised on its own as ``serving_default``
    normalises its image. With one source it answers what ``serving_default`` answers.
``complete_normalized`` (idem)
    the same with every channel already in [0, 1]; not masked.

``metadata.json`` says whether the completion signatures are there (``completion``).

``metadata.json``'s ``mirror_average_axis`` (0 or 1; null for none) names the in-plane axis that runs
left-right: every signature then answers the mean of the generator's answers on the canvas and on
its mirror along that axis (mirrored back), which training's random flips make as good an answer.

Any H, W >= 16 is accepted. Slices are placed on the training canvas as `tfsynth.synthesize`
places them: centre-cropped to ``image_size`` when that removes only zero voxels (of the whole
request), then zero-padded centrally (in [0, 1] space, the background the network saw in
training) to at least ``image_size`` and to a multiple of 4; the output is cropped and padded
back to [H, W]. The canvas matters because instance normalisation sees the whole plane.
Slices whose nonzero voxels do not fit the canvas are not cropped (the generator is fully
convolutional). Slices run through the generator in chunks of `CHUNK_SLICES`, so a
whole-volume request needs bounded memory.

Bad requests fail with INVALID_ARGUMENT and a message naming the problem: wrong rank, H or W
below 16, NaN/inf values, an unknown contrast name, a source or target count that is neither 1 nor N,
an all-zero image (no brain), [0, 1] violated for ``synthesize_normalized``; for the completion
signatures also an unknown or repeated source, a target among the sources, and a channel count C
other than the number of sources (a request with several problems is told the first). The inputs are
declared with unknown rank so that a wrong rank reaches these checks (TF Serving feeds
tensors without checking them against the signature) instead of failing obscurely.

Compute precision (``compute_dtype``, CLI ``--precision``), whatever precision the generator
was trained in (it is rebuilt under the matching Keras policy with the same weights):

``float32`` (`DEFAULT_COMPUTE_DTYPE`)
    Answers equal a float32 evaluation of the Keras model.
``bfloat16``
    Keras ``mixed_bfloat16``: variables stay float32 in the SavedModel and are cast to
    bfloat16 for the convolutions; inputs are cast to bfloat16; instance-norm statistics are
    computed in float32 (Keras upcasts GroupNormalization); the output is cast back to float32.
    Worth it only on CPUs with native bfloat16 matrix units (AMX, AVX512-BF16) or GPUs/TPUs.
    On an AVX2-only CPU (this project's 2-core AMD EPYC) oneDNN emulates bfloat16 and the
    reference generator ran about 5x SLOWER than in float32, hence the float32 default.
    ``benchmarks/bench_synthesize.py`` measures both speed and the bfloat16-vs-float32
    difference (PSNR) on the machine at hand. ``metadata.json`` records the choice under
    ``model.compute_precision``.

Entry point: ``python -m tfsynth.export RUN_DIR --base-path DIR [--name tfsynth] [--version N]
[--precision float32|bfloat16]`` copies ``RUN_DIR/saved_model`` (written by training through
`write_saved_model`) into ``DIR/NAME/VERSION/`` atomically; with a ``--precision`` other than the
run's, the generator is rebuilt from the SavedModel's own variables and re-exported instead.
TF Serving only loads integer-named version folders, so the ``.tmp-*`` folder being written is
invisible to it until the final rename.

Modules: the graph is `tfsynth.serving_graph.SynthesisModule`; ``metadata.json`` is
`tfsynth.model_metadata`; `tfsynth.savedmodel_io` writes and reads SavedModels; this module holds
the TF Serving version layout and the command (and re-exports `write_saved_model` and
`generator_from_saved_model`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from .atomic import atomic_directory
from .errors import TfsynthError, cli_entry
from .model_metadata import METADATA_FILE, MIN_SIZE, SIGNATURES, build_metadata, read_metadata, write_metadata
from .savedmodel_io import (
    COMPUTE_DTYPES,
    DEFAULT_COMPUTE_DTYPE,
    check_compute_dtype,
    generator_from_saved_model,
    precision_info,
    save,
    write_saved_model,
)

__all__ = [
    "MIN_SIZE",
    "SIGNATURES",
    "build_metadata",
    "export_run",
    "generator_from_saved_model",
    "main",
    "next_version",
    "write_saved_model",
]


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
        raise TfsynthError(f"{source} has no {METADATA_FILE}; it was not written by tfsynth.export.write_saved_model")
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
    """The run's evaluation results if `tfsynth.evaluate` left a JSON summary in it, else None."""
    for candidate in ("evaluation.json", "evaluation/summary.json", "evaluation/metrics.json"):
        path = run_dir / candidate
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                return None
    return None


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tfsynth export",
        description="Copy a trained run's SavedModel into TF Serving's <base>/<name>/<version>/ layout, atomically.",
    )
    parser.add_argument("run_dir", help="training run directory (holds saved_model/)")
    parser.add_argument("--base-path", required=True, help="directory holding one folder per served model")
    parser.add_argument("--name", default="tfsynth", help="model name in TF Serving (default: tfsynth)")
    parser.add_argument("--version", type=int, default=None, help="version number (default: next free integer)")
    parser.add_argument(
        "--precision",
        choices=COMPUTE_DTYPES,
        default=None,
        help="compute precision of the served generator (default: the run's export, normally "
        f"{DEFAULT_COMPUTE_DTYPE}); bfloat16 pays off only on CPUs with AMX/AVX512-BF16 or on accelerators",
    )
    args = parser.parse_args(argv)
    target = export_run(args.run_dir, args.base_path, name=args.name, version=args.version, precision=args.precision)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
