"""BraTS NIfTI folders -> validated, normalised axial slices in sharded TFRecords + manifest.json.

The output location is checked first (`tfsynth.data.output_dir`). Then two passes over the
cohort. Pass 1 reads and validates every case (nothing is written if any case is bad, unless
``skip_bad``) and plans the work: normalisation windows, the cohort's one in-plane voxel size
(the cases at another resampled to it), the axial slices that hold brain, the patient split, the
shard count. Pass 2 normalises and serializes each case (kept in memory from pass 1 up to a
budget, else read, validated and resampled again) and writes the shards. Both passes overlap
cases on a few threads. This module runs the passes and writes the manifest; the steps are
`tfsynth.data.case_plan` (one case), `tfsynth.data.spacing` (the voxel size),
`tfsynth.data.splits` (the patient split) and `tfsynth.data.shard_writer` (pass 2's shards).

Atomicity: everything is built in a hidden temp directory beside ``out`` (each shard itself
written to a temp name and renamed, ``manifest.json`` written last) and the directory is
renamed to ``out`` only when complete. An interrupted or failed run leaves no ``out`` at all,
only a ``.tmp-<name>-*`` folder at worst, which nothing mistakes for prepared data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from tfsynth import __version__
from tfsynth.atomic import atomic_directory, write_json
from tfsynth.contrasts import CONTRASTS, NUM_CONTRASTS
from tfsynth.data.brats import Case, LoadedCase, discover_cases, print_warning, validate_case
from tfsynth.data.case_plan import CasePlan, plan_case
from tfsynth.data.geometry import TRAINING_ORIENTATION
from tfsynth.data.manifest import FORMAT_VERSION, MANIFEST, SPLITS
from tfsynth.data.normalize import HIGH_PERCENTILE, LOW_PERCENTILE, MIN_BRAIN_FRACTION
from tfsynth.data.output_dir import check_free_space, check_output_dir, write_error
from tfsynth.data.shard_writer import CaseCache, ordered_map, write_split
from tfsynth.data.spacing import check_voxel_size, in_plane_frame, resample_in_plane, target_voxel_size
from tfsynth.data.splits import PATIENT_RULE, group_by_patient, split_cases, split_counts
from tfsynth.errors import TfsynthError

# ~128 MB shards: large enough for sequential reads, small enough to interleave several.
TARGET_SHARD_BYTES = 128 * 2**20
# Threads overlap gzip decompression and numpy work; pass 2 skips re-reading cached cases.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
CACHE_BYTES = 2 * 2**30
SEG_LABELS = {"1": "necrotic tumour core", "2": "peritumoral edema", "3": "enhancing tumour"}
# Resampled cases named in the log line; the rest are counted (the manifest lists all).
RESAMPLED_LISTED = 10


def print_info(message: str) -> None:
    """``message`` on stderr: the default ``info`` of `prepare`."""
    print(message, file=sys.stderr)


def patient_grouping(case_ids: Sequence[str]) -> dict:
    """How `split_cases` grouped the cases into patients, for the manifest and the log.

    Returns:
        ``rule`` (`tfsynth.data.splits.PATIENT_RULE`), ``patients`` (their number), ``groups``
        (patient -> cases, for the patients with more than one case) and ``summary`` (one line).
    """
    groups = group_by_patient(case_ids)
    several = {patient: cases for patient, cases in groups.items() if len(cases) > 1}
    summary = f"split by patient: {len(case_ids)} case(s) of {len(groups)} patient(s)"
    if several:
        listed = "; ".join(f"{patient}: {', '.join(cases)}" for patient, cases in several.items())
        summary += f"; {len(several)} patient(s) with several cases kept in one split ({listed})"
    return {"rule": PATIENT_RULE, "patients": len(groups), "groups": several, "summary": summary}


def _to_target_spacing(
    plans: dict[str, CasePlan], target: tuple[float, float, float], cache: CaseCache, fraction: float, workers: int
) -> dict[str, tuple[float, float, float]]:
    """Resamples in-plane the cases not at ``target`` (`tfsynth.data.spacing`) and re-plans their slices.

    A resampled case keeps the normalisation windows of its own grid (as synthesis normalises
    before resampling); its slices are chosen again on the new grid, and it goes back into the
    cache resampled. From here on ``cache`` reads cases afresh at ``target``.

    Returns:
        case id -> its voxel size before resampling, for the cases resampled.
    """
    todo = [p for p in plans.values() if in_plane_frame(p, target).resampled]

    def resample(plan: CasePlan) -> tuple[CasePlan, LoadedCase]:
        loaded = resample_in_plane(cache.pop(plan.case), target)
        return dataclasses.replace(plan_case(loaded, fraction), norm=plan.norm), loaded

    resampled = {}
    with contextlib.closing(ordered_map(resample, todo, workers)) as results:
        for plan, loaded in results:
            case_id = plan.case.case_id
            resampled[case_id] = plans[case_id].zooms
            plans[case_id] = plan
            cache.put(case_id, loaded)
    cache.voxel_size = target
    return resampled


def spacing_summary(
    target: tuple[float, float, float],
    requested: float | None,
    plans: dict[str, CasePlan],
    resampled: dict[str, tuple[float, float, float]],
) -> str:
    """One log line: the in-plane voxel size, where it came from, and which cases were resampled from what."""
    source = "--voxel-size" if requested is not None else "the cohort's median"
    line = f"in-plane voxel size {target[0]:g} x {target[1]:g} mm ({source})"
    if resampled:
        listed = [f"{c} ({z[0]:g} x {z[1]:g} mm)" for c, z in list(resampled.items())[:RESAMPLED_LISTED]]
        more = f" and {len(resampled) - RESAMPLED_LISTED} more" if len(resampled) > RESAMPLED_LISTED else ""
        line += f"; resampled {len(resampled)} of {len(plans)} case(s) in-plane: {', '.join(listed)}{more}"
    else:
        line += f"; all {len(plans)} case(s) already at it, none resampled"
    slice_spacings = sorted({round(p.zooms[2], 4) for p in plans.values()})
    if len(slice_spacings) > 1:
        spacings = ", ".join(f"{z:g}" for z in slice_spacings)
        line += f"; slice spacings differ ({spacings} mm) and are kept (each slice is one 2-D example)"
    return line


def _check_out(out: Path) -> None:
    if (out / MANIFEST).exists():
        raise TfsynthError(f"{out}: already prepared ({MANIFEST} exists); choose a new output directory or delete it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TfsynthError(f"{out}: exists and is not an empty directory")


def prepare(
    src: str | os.PathLike,
    out: str | os.PathLike,
    size: int | None = None,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    skip_bad: bool = False,
    shard_slices: int | None = None,
    min_brain_fraction: float = MIN_BRAIN_FRACTION,
    progress: bool | None = False,
    warn: Callable[[str], None] = print_warning,
    info: Callable[[str], None] = print_info,
    workers: int = DEFAULT_WORKERS,
    cache_bytes: int = CACHE_BYTES,
    voxel_size: float | None = None,
) -> dict:
    """Validates, normalises and writes a BraTS cohort as sharded TFRecords.

    Args:
        src: folder of BraTS case folders (either naming era).
        out: output directory; must not exist or be empty. Holds ``manifest.json`` and
            ``{split}-{i:05d}-of-{n:05d}.tfrecord`` when done.
        size: slice height = width, a multiple of 4 (centre crop or zero pad of the slices at
            ``voxel_size``).
            Default: the largest in-plane size of the cohort rounded up to a multiple of 4.
        split: train/val/test as proportions or patient counts (see `split_counts`). Cases of
            one patient (timepoints, sessions: `tfsynth.data.splits.patient_of`) share a split.
        seed: seed of the patient split and of the case order inside the shards.
        skip_bad: report bad cases through ``warn`` and leave them out instead of failing. NIfTI
            files named neither as a contrast nor as the segmentation are always ignored, listed
            in one warning line and in the manifest's ``ignored_files``.
        shard_slices: slices per shard; default ~128 MB per shard.
        min_brain_fraction: keep axial slices whose brain covers at least this fraction.
        progress: tqdm progress bars (None: only on a terminal).
        warn: receives one-line warnings.
        info: receives one-line notes on what was done (the voxel size and the cases resampled to
            it, how cases were grouped into patients).
        workers: threads reading and serializing cases.
        cache_bytes: keep validated cases in memory up to this size so pass 2 need not re-read them.
        voxel_size: in-plane voxel size (mm) every case is resampled to; default: the cohort's
            per-axis median (`tfsynth.data.spacing`). Cases already at it are not resampled.

    Returns:
        The manifest (also written as ``out/manifest.json``).

    Raises:
        TfsynthError: a bad argument, an unusable ``out`` (not empty; its folder not writable, too
            little free space or a path that is not UTF-8, all checked before the work:
            `tfsynth.data.output_dir`), a write that fails anyway (`OutputError`), or (without
            ``skip_bad``) the first bad case, naming the file and reason. Nothing is written then.
    """
    src, out = Path(src), Path(out)
    if size is not None and (int(size) != size or size < 4 or size % 4):
        raise TfsynthError(f"--size must be a positive multiple of 4 (the generator downsamples twice), got {size}")
    if not 0 <= min_brain_fraction < 1:
        raise TfsynthError(f"min_brain_fraction must be in [0, 1), got {min_brain_fraction}")
    if shard_slices is not None and shard_slices < 1:
        raise TfsynthError(f"shard_slices must be >= 1, got {shard_slices}")
    split_counts(1, split)  # argument check before any reading
    if voxel_size is not None:
        check_voxel_size(voxel_size)
    _check_out(out)
    check_output_dir(out, "output folder", utf8=True, beside=True)

    skipped: list[str] = []

    def skip(message: str) -> None:
        skipped.append(message)
        warn(f"skipping: {message}")

    def check(case: Case) -> tuple[Case, LoadedCase | None, CasePlan | TfsynthError]:
        try:
            loaded = validate_case(case, warn=warn)
            return case, loaded, plan_case(loaded, min_brain_fraction)
        except TfsynthError as error:
            return case, None, error

    disable = None if progress is None else not progress  # tqdm: None = only on a terminal

    def refuse(message: str) -> None:
        raise TfsynthError(f"{message} (--skip-bad skips such files and cases)")

    discovery = discover_cases(src, warn=warn)  # files that are no contrast or segmentation: one warning
    for message in discovery.failed.values():
        (skip if skip_bad else refuse)(message)
    cases = discovery.cases
    plans: dict[str, CasePlan] = {}
    cache = CaseCache(cache_bytes)  # pass 2 re-reads only the cases that did not fit
    bar = tqdm(total=len(cases), desc="validate", unit="case", disable=disable, leave=False)
    with contextlib.closing(ordered_map(check, cases, workers)) as results, bar:
        for case, loaded, result in results:
            bar.update(1)
            if isinstance(result, TfsynthError):
                if not skip_bad:
                    raise result
                skip(str(result))
                continue
            plans[case.case_id] = result
            cache.put(case.case_id, loaded)
    if not plans:
        raise TfsynthError(f"{src}: no valid cases left after skipping bad ones")
    target = target_voxel_size([p.zooms for p in plans.values()], voxel_size)
    resampled = _to_target_spacing(plans, target, cache, min_brain_fraction, workers)
    info(spacing_summary(target, voxel_size, plans, resampled))

    max_hw = max(max(p.shape[:2]) for p in plans.values())
    size = int(size) if size is not None else 4 * math.ceil(max_hw / 4)
    slice_bytes = size * size * (4 * NUM_CONTRASTS + 2)  # float32 contrasts, uint8 brain and tumour masks
    shard_slices = shard_slices or max(1, TARGET_SHARD_BYTES // slice_bytes)
    check_free_space(out, sum(len(p.slices) for p in plans.values()) * slice_bytes, "output folder")
    splits = split_cases(list(plans), split, seed)
    grouping = patient_grouping(list(plans))
    info(grouping["summary"])
    for name in SPLITS:
        if not splits[name] and split[SPLITS.index(name)] > 0:
            warn(f"split {name!r} is empty: only {grouping['patients']} patient(s) ({len(plans)} valid case(s))")
    lr_axes = {p.lr_axis for p in plans.values()}
    if len(lr_axes) > 1:
        warn(f"cases differ in orientation (left-right slice axis {sorted(lr_axes, key=str)}); flips disabled")

    manifest: dict = {
        "format_version": FORMAT_VERSION,
        "tfsynth_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": str(src.resolve()),
        "contrasts": list(CONTRASTS),
        "image_size": size,
        "voxel_size_mm": list(target),
        "voxel_size_source": "--voxel-size" if voxel_size is not None else "median of the cohort",
        "resampled": {case_id: {"from_mm": list(zooms)} for case_id, zooms in resampled.items()},
        "slice_axis": 2,
        "slice_orientation": TRAINING_ORIENTATION,
        "slice_layout": "images[a, b, c] = normalized contrast c of volume[a, b, slice_index], centre-cropped/padded; "
        "volume = the file reoriented to slice_orientation (closest canonical axes, no interpolation), "
        "resampled in-plane to voxel_size_mm for the cases in 'resampled' (linear, 0 outside the brain)",
        "lr_axis": lr_axes.pop() if len(lr_axes) == 1 else None,
        "seed": seed,
        "split_request": [float(v) for v in split],
        "patient_grouping": {k: grouping[k] for k in ("rule", "patients", "groups")},
        "min_brain_fraction": min_brain_fraction,
        "normalization_method": {
            "low_percentile": LOW_PERCENTILE,
            "high_percentile": HIGH_PERCENTILE,
            "mask": "nonzero voxels of each volume",
            "formula": "clip((x - lo) / (hi - lo), 0, 1), 0 outside the mask",
        },
        "seg_labels": SEG_LABELS,
        "splits": {},
        "normalization": {},
        "original_shape": {},
        "crop": {},
        "cases": {},
        "skipped": skipped,
        "ignored_files": [os.path.relpath(path, src) for path in discovery.ignored],
    }
    total = sum(len(p.slices) for p in plans.values())
    try:
        with atomic_directory(out) as tmp, tqdm(total=total, desc="write", unit="slice", disable=disable) as bar:
            for name in SPLITS:
                manifest["splits"][name] = write_split(
                    tmp, name, [plans[c] for c in splits[name]], size, shard_slices, manifest, bar, cache, workers, warn
                )
            write_json(tmp / MANIFEST, manifest)
    except OSError as error:  # the disk filled up meanwhile, ...: atomic_directory removed the partial output
        raise write_error(out, error) from None
    return manifest
