"""Where the intensity-mapping baseline an evaluation compares against is fitted.

Never on the evaluated patients' own voxels: that would make the baseline look better than it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..baseline import IntensityMappingBaseline
from ..data.manifest import is_prepared
from ..errors import TfsynthError
from .patients import Patient


def run_training_data(model: Path) -> Path | None:
    """The prepared data a run directory trained on (``RUN/data`` or ``RUN/prepared``), or None."""
    for name in ("data", "prepared"):
        if is_prepared(model / name):
            return model / name
    return None


def resolve_baseline(
    baseline_arg: str | None, data: Path, model: Path, patients: Sequence[Patient]
) -> tuple[dict[str, IntensityMappingBaseline], str]:
    """The baseline per patient and a sentence saying where it was fitted.

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
            fitted, source = IntensityMappingBaseline().fit_prepared(path, "train"), f"the train split of {path}"
        else:
            fitted, source = IntensityMappingBaseline.load(path), f"{path}"
    elif is_prepared(data):
        fitted, source = IntensityMappingBaseline().fit_prepared(data, "train"), f"the train split of {data}"
    elif (prepared := run_training_data(model)) is not None:
        fitted, source = IntensityMappingBaseline().fit_prepared(prepared, "train"), f"the train split of {prepared}"
    else:
        return _leave_one_out(data, patients)
    return {patient.case_id: fitted for patient in patients}, source


def _leave_one_out(data: Path, patients: Sequence[Patient]) -> tuple[dict[str, IntensityMappingBaseline], str]:
    if len(patients) < 2:
        raise TfsynthError(
            f"{data}: cannot fit the intensity-mapping baseline: no training data found and only one patient "
            "for leave-one-out; pass --baseline PREPARED_DIR or BASELINE.json"
        )
    single = {}
    for patient in patients:
        single[patient.case_id] = IntensityMappingBaseline()
        single[patient.case_id].accumulate(patient.images, patient.brain)
    per_patient = {
        case_id: IntensityMappingBaseline.combine(b for other, b in single.items() if other != case_id)
        for case_id in single
    }
    return per_patient, "leave-one-patient-out on the evaluated patients (no training data was available)"
