"""What the serving clients do around a request: the request's arrays checked locally, NIfTI volumes
to slices and back, and the files written on the input's grid (shared by `tfsynth.clients.grpc_client`
and `tfsynth.clients.rest_client`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfsynth.errors import TfsynthError


def as_slices(slices) -> np.ndarray:
    """Validates a stack of slices locally (cheaper than a round trip): float32 [N, H, W]."""
    array = np.asarray(slices, dtype=np.float32)
    if array.ndim != 3:
        raise TfsynthError(f"slices must be an array [N, H, W], got shape {array.shape}")
    return array


def target_list(targets: str | Sequence[str]) -> list[str]:
    """One name or a list of names, as sent (the server canonicalises and checks them)."""
    return [targets] if isinstance(targets, str) else [str(t) for t in targets]


def as_channels(images) -> tuple[np.ndarray, list[str]]:
    """Named stacks ``{contrast: [N, H, W]}`` -> ``(float32 [N, H, W, C], names)``, the ``complete`` signature's input.

    Raises:
        TfsynthError: no input, or stacks that are not [N, H, W] or differ in shape.
    """
    if not images:
        raise TfsynthError("completion needs at least one input contrast")
    names = [str(name) for name in images]
    stacks = [as_slices(images[name]) for name in images]
    if len({stack.shape for stack in stacks}) != 1:
        shapes = ", ".join(f"{n} {s.shape}" for n, s in zip(names, stacks, strict=True))
        raise TfsynthError(f"input contrasts must share one [N, H, W] shape, got {shapes}")
    return np.stack(stacks, axis=-1), names


def write_completion_output(client, case_dir, out_dir, voxel_size_mm=None, overwrite: bool = False) -> Path | None:
    """Shared by the gRPC and REST clients: one BraSyn case in, its missing contrast written.

    The case is read, validated and placed as ``tfsynth synthesize --complete`` does
    (`tfsynth.synthesis.completion.CompletionCase`: the missing contrast found by set difference of the file
    names, the ``LPS`` slicing orientation, resampled to ``voxel_size_mm`` if given); its contrasts,
    each normalised over its own brain on the input's grid before resampling
    (`CompletionCase.normalized_inputs`), go in one ``complete_normalized`` request, and the result
    is written under the name the missing file would have had
    (`tfsynth.synthesis.completion.completion_name`) on the inputs' grid, atomically. An existing
    output is kept (with a note on stderr, `tfsynth.data.output_dir.outputs_to_write`) unless
    ``overwrite``.

    Returns:
        The file written, or None when it existed and was kept.

    Raises:
        TfsynthError: not a folder holding one BraTS case, not exactly one contrast missing, an invalid
            input (named), or `ServingError`.
    """
    from tfsynth.data.brats import find_cases
    from tfsynth.data.output_dir import outputs_to_write
    from tfsynth.synthesis.completion import CompletionCase, completion_name

    cases = find_cases(case_dir)  # a brain mask beside the contrasts is listed as ignored, not an error
    if len(cases) != 1:
        raise TfsynthError(
            f"{case_dir}: holds {len(cases)} cases; give one case folder (tfsynth synthesize --complete does many)"
        )
    case = CompletionCase.read(cases[0], voxel_size_mm=_voxel_size(voxel_size_mm))
    out_path = Path(out_dir) / completion_name(case.case, case.target)
    if not outputs_to_write(case.case.case_id, {out_path: out_path}, overwrite):
        return None
    # Normalised on the inputs' grid before resampling, as synthesize --complete does.
    images = {c: volume_to_slices(v.astype(np.float32)) for c, v in case.normalized_inputs().items()}
    # complete_normalized does not mask: zero outside the brain, as the local completion does.
    result = np.clip(slices_to_volume(client.complete(images, case.target, normalized=True)), 0.0, 1.0)
    result = result * case.model_brain()
    return case.write(out_path, result, getattr(client, "description", "a TF Serving model"))


def _voxel_size(voxel_size_mm) -> np.ndarray | None:
    """One or three positive millimetre values as [3], or None."""
    if voxel_size_mm is None:
        return None
    sizes = np.asarray(voxel_size_mm, dtype=np.float64).ravel()
    if sizes.size not in (1, 3) or not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise TfsynthError(f"voxel size must be one or three positive numbers of mm, got {sizes.tolist()}")
    return np.broadcast_to(sizes, (3,))


def volume_to_slices(volume: np.ndarray) -> np.ndarray:
    """NIfTI volume [X, Y, Z] -> axial slices [Z, X, Y] (the layout of the training slices)."""
    return np.ascontiguousarray(np.moveaxis(volume, -1, 0))


def slices_to_volume(slices: np.ndarray) -> np.ndarray:
    """Inverse of `volume_to_slices`."""
    return np.moveaxis(slices, 0, -1)


def write_volume_outputs(
    client,
    nifti_path,
    targets,
    out_dir,
    naming="brats2023",
    source=None,
    brain_mask=None,
    background=None,
    voxel_size_mm=None,
    overwrite: bool = False,
) -> list[Path]:
    """Shared by the gRPC and REST clients: read, one request per target, write on the input grid.

    As ``tfsynth synthesize`` does, the volume's brain is found (`tfsynth.data.brain_mask`: a
    background that is not 0 is refused unless ``brain_mask`` or ``background`` says where the
    brain is; voxels outside it are sent as 0), normalised over it on the input's grid
    (`tfsynth.data.normalize.percentile_normalize`, as ``prepare`` does) and reoriented to the
    slicing orientation (``LPS``, `tfsynth.data.geometry`) before it is cut into axial slices and
    sent to the ``synthesize_normalized`` signature, one request per target; each result goes back
    to the input's own voxel order. A served model cannot tell the client its voxel size
    (it is in the export's ``metadata.json``): with ``voxel_size_mm`` (the model's, [3] or one
    number) the volume is resampled to it before the requests and the results back to the input's
    grid, as ``tfsynth synthesize`` does; without, it is sent at its own voxel size.

    Files are named by `tfsynth.synthesis.volumes.output_name`, exactly as ``tfsynth synthesize`` names
    them (default ``{case}-{t1n|t1c|t2w|t2f}.nii.gz``, the BraSyn convention); the case id and,
    unless given, the source contrast come from the input's file name (`case_id_of`). They appear
    together or not at all (`tfsynth.data.nifti.write_all_like`). Without ``overwrite`` only the
    targets whose files are missing are requested and written, with a note on stderr when some
    exist (`tfsynth.data.output_dir.outputs_to_write`).

    Returns:
        The files written, in target order (empty when all existed).
    """
    from tfsynth.contrasts import canonical
    from tfsynth.data.brain_mask import brain_mask_of
    from tfsynth.data.geometry import Frame
    from tfsynth.data.nifti import read_volume, write_all_like
    from tfsynth.data.output_dir import outputs_to_write
    from tfsynth.synthesis.volumes import case_id_of, output_description, output_name

    names = [canonical(t) for t in target_list(targets)]
    case_id, parsed_source = case_id_of(nifti_path)
    source = canonical(source) if source is not None else parsed_source
    if source is None:
        raise TfsynthError(
            f"{nifti_path}: cannot tell its contrast from the file name; name the source contrast (--source)"
        )
    out_dir = Path(out_dir)
    paths = {name: out_dir / output_name(naming, case_id, name, source) for name in names}  # before any request
    paths = outputs_to_write(case_id, paths, overwrite)
    if not paths:
        return []
    names = list(paths)
    volume, img = read_volume(nifti_path)
    brain = brain_mask_of(volume, nifti_path, img.affine, brain_mask, background)
    frame = Frame.of(img.affine, volume.shape, voxel_size_mm=_voxel_size(voxel_size_mm))
    # Normalised on the input's grid and then resampled, as synthesize does: the server's in-graph
    # normalisation of a resampled raw volume would take its percentiles from other voxels.
    model_brain = frame.forward_mask(brain)
    slices = volume_to_slices(frame.normalized(volume, str(nifti_path), brain, model_brain).astype(np.float32))
    results = {name: client.synthesize(slices, source, name, normalized=True) for name in names}  # before any write
    model = getattr(client, "description", "a TF Serving model")
    # The _normalized signatures do not mask: zero outside the brain before resampling back.
    volumes = {
        paths[name]: (
            np.clip(frame.backward(np.clip(slices_to_volume(results[name]), 0.0, 1.0) * model_brain), 0.0, 1.0) * brain,
            output_description(name, source, model),
        )
        for name in names
    }
    return write_all_like(volumes, img)
