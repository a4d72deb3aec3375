"""Missing-contrast completion (the BraSyn task): each case's one missing contrast from the others.

The library under ``tfsynth synthesize --complete IN_DIR --out OUT_DIR --model PATH`` (the command
line is `tfsynth.commands.synthesize`'s).

IN_DIR holds case folders in BraTS layout (either naming era, `tfsynth.data.brats.find_cases`);
each case lacks exactly one of the four contrasts, found by set difference of its file names
(a segmentation is ignored). For every case the missing contrast is synthesised from all the
present ones with the model's ``complete`` signature and written into the flat OUT_DIR under
exactly the name it would have had (``BraTS-GLI-00000-000-t2f.nii.gz`` next to its ``-t1n``,
``-t1c`` and ``-t2w`` inputs; no suffix), float32 on the inputs' grid with the header of an
input (`tfsynth.data.nifti.write_like`), intensities in the normalised [0, 1] scale.

Per case: validate the files (`tfsynth.data.brats.validate_case`: same grid, zero background,
finite values), normalise each contrast over its own brain as ``prepare`` does, bring the volumes
into the model's frame (`tfsynth.data.geometry.Frame`: slicing orientation, voxel size unless
``--no-resample``), synthesise every axial slice with brain on the model's canvas
(`tfsynth.synthesis.volumes.to_canvas`), and undo all of it. The output is written atomically after
the whole volume is computed, so a failing or interrupted case leaves no file, and a rerun
completes an interrupted run: a case whose output exists is skipped with a note (``--overwrite``
replaces it; `tfsynth.data.output_dir.outputs_to_write`).

A case with no contrast or two or more contrasts missing, two files of one contrast, unreadable
files, and a folder with no NIfTI file, are
reported on stderr with the reason and the other cases go on; the exit status is 1 if any case
failed, 2 for a usage error before any work. NIfTI files named as no BraTS contrast (a brain
mask, say) are listed once as ignored (`tfsynth.data.brats.discover_cases`). Case folders may be
symbolic links.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from tfsynth.contrasts import CONTRASTS
from tfsynth.data.output_dir import OutputError, check_output_dir, outputs_to_write
from tfsynth.errors import TfsynthError
from tfsynth.synthesis.volumes import DEFAULT_BATCH, output_name, to_canvas


def missing_contrasts(case) -> list[str]:
    """The canonical contrasts a `tfsynth.data.brats.Case` has no file for, in canonical order."""
    return [c for c in CONTRASTS if c not in case.files]


def completion_target(case) -> str:
    """The one contrast to synthesise for a case.

    Raises:
        TfsynthError: no contrast missing, or more than one (naming the case and the contrasts).
    """
    missing = missing_contrasts(case)
    if not missing:
        raise TfsynthError(f"case {case.case_id}: all four contrasts are present, nothing to complete")
    if len(missing) > 1:
        raise TfsynthError(
            f"case {case.case_id}: {len(missing)} contrasts missing ({', '.join(missing)}); "
            "completion needs exactly one missing"
        )
    return missing[0]


def completion_name(case, target: str) -> str:
    """The file name the missing contrast would have had: the case's naming era and extension.

    ``BraTS-GLI-00000-000`` with ``-t1n.nii.gz`` inputs -> ``BraTS-GLI-00000-000-t2f.nii.gz``;
    ``.nii`` inputs give a ``.nii`` output.
    """
    name = output_name(case.naming, case.case_id, target, None)
    if all(not p.name.lower().endswith(".gz") for p in case.files.values()):
        name = name[: -len(".gz")]
    return name


def complete_normalized_volume(
    synthesizer,
    volumes01: Mapping[str, np.ndarray],
    brain: np.ndarray,
    target: str,
    image_size: int | None,
    batch_size: int = DEFAULT_BATCH,
) -> np.ndarray:
    """Synthesises the target for every axial slice with brain of volumes in the model's frame.

    Args:
        synthesizer: provides ``complete_normalized(images01: {contrast: [N, H, W]}, target) -> [N, H, W]``.
        volumes01: canonical contrast -> float32 ``[X, Y, Z]`` in [0, 1] (0 outside the brain), the
            available inputs, all one shape.
        brain: bool ``[X, Y, Z]``, the union of the inputs' brains.
        target: canonical contrast to synthesise (not among ``volumes01``).
        image_size: the model's canvas (None: slices as they are).
        batch_size: slices per model call.

    Returns:
        float32 ``[X, Y, Z]`` in [0, 1], 0 outside ``brain``.
    """
    from tfsynth.data.normalize import undo_crop_or_pad

    axial_brain = np.moveaxis(brain, -1, 0)  # [Z, X, Y]: the layout the model was trained on
    slices = np.flatnonzero(axial_brain.any(axis=(1, 2)))
    canvases, original_hw = {}, None
    for contrast, volume in volumes01.items():
        canvases[contrast], original_hw = to_canvas(np.moveaxis(volume, -1, 0)[slices], axial_brain[slices], image_size)
    parts = []
    for i in range(0, len(slices), batch_size):
        chunk = {contrast: canvas[i : i + batch_size] for contrast, canvas in canvases.items()}
        parts.append(np.asarray(synthesizer.complete_normalized(chunk, target), dtype=np.float32))
    out = np.concatenate(parts) if parts else np.zeros((0, *axial_brain.shape[1:]), np.float32)
    if original_hw is not None:
        out = undo_crop_or_pad(out, original_hw)
    synthesized = np.zeros(axial_brain.shape, dtype=np.float32)
    synthesized[slices] = np.clip(out, 0.0, 1.0) * axial_brain[slices]
    return np.moveaxis(synthesized, 0, -1)


@dataclasses.dataclass
class CompletionCase:
    """A validated case with one contrast missing, and the way into a model's frame and back.

    Build it with `CompletionCase.read`. Shared by `complete_case` (local) and the serving
    clients (`tfsynth.clients.grpc_client`), so both read, place and write a case the same way.

    Attributes:
        case: the files.
        target: the missing contrast.
        volumes: present contrast -> raw float32 ``[X, Y, Z]`` in ``LPS`` voxel order.
        brain: bool ``[X, Y, Z]``, the union of the contrasts' nonzero voxels.
        reference: the nibabel image of an input (its grid and header are the output's).
        stored: reorientation between the files' voxel order and ``LPS``.
        frame: ``LPS`` -> the model's frame (slicing orientation, voxel size).
    """

    case: object
    target: str
    volumes: dict[str, np.ndarray]
    brain: np.ndarray
    reference: object
    stored: object
    frame: object

    @classmethod
    def read(cls, case, orientation: str | None = None, voxel_size_mm=None) -> CompletionCase:
        """Validates a case (`tfsynth.data.brats.validate_case`) and plans its frames.

        Args:
            orientation: the model's slicing orientation (default ``LPS``, the training one).
            voxel_size_mm: the model's voxel size, or None: no resampling.

        Raises:
            TfsynthError: not exactly one contrast missing, or an invalid input file (named).
        """
        from tfsynth.data.brats import validate_case
        from tfsynth.data.geometry import TRAINING_ORIENTATION, Frame
        from tfsynth.data.nifti import header_shape
        from tfsynth.data.normalize import brain_mask

        target = completion_target(case)
        # Without the segmentation: completion needs none, and a bad one must not fail the case.
        loaded = validate_case(dataclasses.replace(case, seg=None))
        # validate_case reoriented the volumes to LPS; `stored` maps them back to the files' voxel order.
        stored = Frame.of(loaded.reference.affine, header_shape(loaded.reference, "reference"), TRAINING_ORIENTATION)
        frame = Frame.of(loaded.affine, loaded.shape, orientation or TRAINING_ORIENTATION, voxel_size_mm)
        return cls(case, target, loaded.volumes, brain_mask(loaded.volumes.values()), loaded.reference, stored, frame)

    @property
    def sources(self) -> list[str]:
        return [c for c in CONTRASTS if c in self.volumes]

    def model_brain(self) -> np.ndarray:
        """The brain in the model's frame."""
        return self.frame.forward_mask(self.brain)

    def normalized_inputs(self) -> dict[str, np.ndarray]:
        """Each contrast normalised over its own nonzero voxels (as ``prepare`` does), in the model's frame.

        Raises:
            TfsynthError: a contrast whose brain has a single intensity (naming the file).
        """
        return {c: self.frame.normalized(v, str(self.case.files[c])) for c, v in self.volumes.items()}

    def write(self, out_path: Path, result: np.ndarray, model: str) -> Path:
        """Writes a result of the model's frame (``[X', Y', Z']`` in [0, 1]) on the inputs' grid, atomically."""
        from tfsynth.data.nifti import write_like
        from tfsynth.synthesis.volumes import output_description

        back = self.stored.backward(np.clip(self.frame.backward(result), 0.0, 1.0) * self.brain, order=0)
        return write_like(
            out_path, back, self.reference, descrip=output_description(self.target, "+".join(self.sources), model)
        )


def complete_case(synthesizer, case, out_path: Path, resample: bool = True, batch_size: int = DEFAULT_BATCH) -> Path:
    """Synthesises a case's missing contrast and writes it on the inputs' grid (atomically).

    Args:
        synthesizer: as for `complete_normalized_volume`, plus ``metadata`` (a
            `tfsynth.savedmodel.metadata.ModelMetadata` or its dict).
        case: a `tfsynth.data.brats.Case` with exactly one contrast missing.
        out_path: the output file.
        resample: resample to the model's voxel size (and back) when it differs.

    Raises:
        TfsynthError: not exactly one contrast missing, or an invalid input file (named).
    """
    from tfsynth.savedmodel.metadata import as_metadata

    meta = as_metadata(synthesizer.metadata)
    planned = CompletionCase.read(case, meta.slice_orientation, meta.voxel_size_mm if resample else None)
    result = complete_normalized_volume(
        synthesizer, planned.normalized_inputs(), planned.model_brain(), planned.target, meta.image_size, batch_size
    )
    return planned.write(out_path, result, meta.model_version)


@dataclasses.dataclass
class CompletionReport:
    """What `complete_directory` did.

    Attributes:
        written: the output files, in case order.
        failures: ``(case id or file, reason)`` of every case that failed.
        skipped: the cases whose output existed (without ``overwrite``).
    """

    written: list[Path] = dataclasses.field(default_factory=list)
    failures: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)


def complete_directory(
    synthesizer,
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    resample: bool = True,
    batch_size: int = DEFAULT_BATCH,
    fail_fast: bool = False,
    progress: bool = False,
    report: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> CompletionReport:
    """Completes every case of a BraSyn-layout folder into one flat output folder.

    A case that fails (see the module docstring) is passed to ``report`` as one line naming it and
    its reason, and the others go on (``fail_fast``: stop at the first). Two cases with the same
    output name cannot happen: `find_cases` refuses a case id found in two folders.

    Args:
        synthesizer: as for `complete_case`.
        in_dir: folder of case folders.
        out_dir: created if needed; must not be a file.
        overwrite: replace existing outputs (else a case whose output exists is skipped with a note).
        report: receives ``"case ID: reason"`` lines; default: stderr above the progress bar.
        warn: receives the line listing the ignored files (named as no BraTS contrast); default: stderr.

    Raises:
        TfsynthError: ``in_dir`` is not a folder or holds no NIfTI files, or ``out_dir`` is a file or
            ``in_dir`` itself (``out_dir`` inside ``in_dir`` is fine: it is not read as input).
    """
    from tqdm import tqdm

    from tfsynth.data.brats import find_cases

    result = CompletionReport()
    report = report or (lambda line: tqdm.write(f"error: {line}", file=sys.stderr))
    warn = warn or (lambda line: tqdm.write(f"warning: {line}", file=sys.stderr))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TfsynthError(f"--out {out_dir}: exists and is not a directory")
    check_output_dir(out_dir, "--out")  # before any case is computed
    if Path(in_dir).is_dir() and os.path.realpath(out_dir) == os.path.realpath(in_dir):
        # The flat outputs would sit beside the case folders and be read as cases on the next run.
        raise TfsynthError(f"--out {out_dir}: is the input folder itself; give another folder")

    def bad_file(message: str) -> None:  # a duplicate contrast, an empty folder, a case with only a segmentation
        result.failures.append((message.split(":", 1)[0], message))
        report(message)

    # Files named as no contrast (a brain mask, say) are listed once as ignored, and an output
    # folder inside the input folder is not read as input (a re-run would see its outputs).
    cases = find_cases(in_dir, on_bad=bad_file, warn=warn, exclude=out_dir, empty_folders=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    for case in tqdm(cases, desc="complete", unit="case", disable=not progress):
        try:
            out_path = out_dir / completion_name(case, completion_target(case))
            if not outputs_to_write(case.case_id, {out_path: out_path}, overwrite):
                result.skipped.append(case.case_id)
                continue
            result.written.append(complete_case(synthesizer, case, out_path, resample, batch_size))
        except Exception as error:  # one bad case must not stop a batch; bugs still show their type
            message = str(error) if isinstance(error, TfsynthError) else f"{type(error).__name__}: {error}"
            if not message.startswith(f"case {case.case_id}"):
                message = f"case {case.case_id}: {message}"
            result.failures.append((case.case_id, message))
            report(message)
            if fail_fast or isinstance(error, OutputError):  # a full disk fails every later case too
                break
    return result
