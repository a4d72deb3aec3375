"""Where the intensity-mapping baseline an evaluation compares against is fitted.

Never on the evaluated patients' own voxels: that would make the baseline look better than it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tfsynth.baselines.lookup_table import IntensityMappingBaseline
from tfsynth.data.manifest import is_prepared
from tfsynth.errors import TfsynthError
from tfsynth.evaluation.patients import Patient


def run_training_data(model: Path) -> Path | None:
    """The prepared data a run directory trained on (``RUN/data`` or ``RUN/prepared``), or None."""
    for name in ("data", "prepared"):
        if is_prepared(model / name):
            return model / name
    return None


def resolve_baseline(
    baseline_arg: str | None,
    data: Path,
    model: Path,
    patients: Sequence[Patient],
    kind: type = IntensityMappingBaseline,
) -> tuple[dict[str, IntensityMappingBaseline], str]:
    """The baseline per patient and a sentence saying where it was fitted.

    ``kind`` is the baseline class (the lookup table, or the linear regression of the BraSyn
    protocol): anything with ``fit_prepared``, ``fit_arrays``, ``load``, ``combine`` and a
    ``DESCRIPTION`` and ``FILE_HINT`` for the error message.

    In order of preference: ``baseline_arg`` (a baseline JSON, or a prepared directory whose train
    split it is fitted on); the train split of a prepared ``data``; the training data of a run
    directory ``model``; otherwise leave-one-patient-out on ``patients`` (each patient's tables
    come from the other patients).

    Returns:
        ``({case_id: baseline}, description)``.

    Raises:
        TfsynthError: no training data and fewer than two patients for leave-one-out.
    """
    if baseline_arg:
        path = Path(baseline_arg)
        if path.is_dir():
            fitted, source = kind().fit_prepared(path, "train"), f"the train split of {path}"
        else:
            fitted, source = kind.load(path), f"{path}"
    elif is_prepared(data):
        fitted, source = kind().fit_prepared(data, "train"), f"the train split of {data}"
    elif (prepared := run_training_data(model)) is not None:
        fitted, source = kind().fit_prepared(prepared, "train"), f"the train split of {prepared}"
    else:
        return _leave_one_out(data, patients, kind)
    return {patient.case_id: fitted for patient in patients}, source


def _leave_one_out(data: Path, patients: Sequence[Patient], kind: type) -> tuple[dict, str]:
    if len(patients) < 2:
        raise TfsynthError(
            f"{data}: cannot fit the {kind.DESCRIPTION}: no training data found and only one patient "
            f"for leave-one-out; pass --baseline PREPARED_DIR or {kind.FILE_HINT}"
        )
    single = {p.case_id: kind().fit_arrays([{**p.images, "brain": p.brain}]) for p in patients}
    per_patient = {case_id: kind.combine(b for other, b in single.items() if other != case_id) for case_id in single}
    return per_patient, "leave-one-patient-out on the evaluated patients (no training data was available)"
