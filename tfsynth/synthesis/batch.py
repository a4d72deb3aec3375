"""Synthesis of many input files at once, the library under ``tfsynth synthesize``.

`synthesize_files` checks everything that can be checked before any work (so a usage error
writes nothing), loads the model once, and synthesises case after case with `synthesize_case`.
A failing case is reported and the others continue, unless ``fail_fast``: in a batch of hundreds
of BraTS cases, one bad file must not cost the rest. A case's files appear together or not at
all, so an interrupted batch is resumed by running it again: cases already written are skipped,
and a case missing some of its files gets those (`tfsynth.data.output_dir.outputs_to_write`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tfsynth.contrasts import canonical, canonical_list
from tfsynth.data.output_dir import OutputError, check_output_dir, outputs_to_write
from tfsynth.errors import TfsynthError
from tfsynth.synthesis.volumes import (
    DEFAULT_BATCH,
    SourceOptions,
    VolumeSynthesizer,
    collect_inputs,
    output_name,
    synthesize_case,
)


@dataclasses.dataclass
class SynthesisRun:
    """What `synthesize_files` did.

    Attributes:
        written: case id -> the files written for it (one per target written), in case order.
        failures: case id -> why it failed (the message printed for it).
        skipped: the cases whose outputs all existed (without ``overwrite``).
    """

    written: dict[str, list[Path]] = dataclasses.field(default_factory=dict)
    failures: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped: list[str] = dataclasses.field(default_factory=list)


def _print_error(case_id: str, message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"error: case {case_id}: {message}", file=sys.stderr)  # keeps a progress bar intact


def synthesize_files(
    model: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    source: str,
    targets: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    naming: str = "brats2023",
    batch_size: int = DEFAULT_BATCH,
    options: SourceOptions | None = None,
    overwrite: bool = False,
    fail_fast: bool = False,
    progress: bool = False,
    on_error: Callable[[str, str], None] = _print_error,
) -> SynthesisRun:
    """Synthesises ``targets`` from the ``source`` volume of every input into ``out_dir``.

    Args:
        model: a run directory, an exported SavedModel or a TF-Serving base (`tfsynth.synthesis.local`).
        inputs: NIfTI files of the source contrast, or folders of BraTS cases (see `collect_inputs`).
        source: the inputs' contrast (canonical name or alias).
        targets: contrasts to synthesise (names or aliases), none equal to ``source``.
        out_dir: created if missing; files named by ``naming`` (see `output_name`).
        batch_size: source slices per model call, >= 1.
        options: where the brain is and whether to resample (`SourceOptions`; None: the
            defaults); a brain mask belongs to one case.
        overwrite: replace existing output files (else a case writes only its missing ones, and
            one with none missing is skipped, each with a note on stderr).
        fail_fast: stop at the first failing case.
        progress: show a progress bar.
        on_error: called with ``(case_id, message)`` for each failing case (default: printed to stderr).

    Returns:
        A `SynthesisRun`; the caller decides what failures mean.

    Raises:
        TfsynthError: a usage error found before any file is written (bad contrast, batch size,
            output path, inputs, options, or a model that cannot be loaded).
    """
    from tqdm import tqdm

    from tfsynth.synthesis.local import load_synthesizer

    options = options or SourceOptions()
    source = canonical(source)
    targets = canonical_list(targets)
    if source in targets:
        raise TfsynthError(f"--target {source} is the source contrast; choose other targets")
    if batch_size < 1:
        raise TfsynthError(f"--batch-size must be >= 1, got {batch_size}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TfsynthError(f"--out {out_dir}: exists and is not a directory")
    check_output_dir(out_dir, "--out")  # before the model loads and the cases compute
    cases = collect_inputs([str(path) for path in inputs], source)
    if options.brain_mask is not None and len(cases) != 1:
        raise TfsynthError(f"--brain-mask belongs to one input volume, but {len(cases)} cases were given")
    plans = [
        (case_id, path, {t: out_dir / output_name(naming, case_id, t, source) for t in targets})
        for case_id, path in cases
    ]
    engine = VolumeSynthesizer(load_synthesizer(model), batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)

    run = SynthesisRun()
    for case_id, path, out_paths in tqdm(plans, desc="synthesize", unit="case", disable=not progress):
        try:
            if isinstance(path, TfsynthError):  # a folder case that cannot be used (`collect_inputs`)
                raise path
            missing = outputs_to_write(case_id, out_paths, overwrite)
            if not missing:
                run.skipped.append(case_id)
                continue
            run.written[case_id] = synthesize_case(engine, path, source, list(missing), missing, options)
        except Exception as error:  # one bad case must not stop a batch; bugs still show their type
            message = str(error) if isinstance(error, TfsynthError) else f"{type(error).__name__}: {error}"
            run.failures[case_id] = message
            on_error(case_id, message)
            if fail_fast or isinstance(error, OutputError):  # a full disk fails every later case too
                break
    return run
