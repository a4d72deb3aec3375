"""The multi-input intensity baseline: per-target linear regression on the available contrasts.

For every set of available inputs S and target t not in S, the model is
``t = w_0 + sum_{c in S} w_c * c``, fitted by least squares with an intercept over brain voxels
of the training subjects (normalised [0, 1] intensities, as the generator sees them). It is the
multi-input analogue of the lookup table in `tfsynth.baselines.lookup_table`: a voxel-wise map of intensities
with no spatial context, so a synthesis model that beats it is using more than the inputs'
values at each voxel.

Only the second moments are kept: per set of contrasts present in a subject, the matrix
``Z^T Z`` of ``Z = [t1, t1c, t2, flair, 1]`` over its brain voxels (absent contrasts' rows are
zero). Every (inputs, target) fit is a sub-block of their sum over the subjects that have all of
its contrasts, so fits on disjoint subject sets add up exactly (`combine`), and one file serves
every subset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from tfsynth.baselines.fitting import AccumulatingFit
from tfsynth.contrasts import CONTRASTS, NUM_CONTRASTS, canonical
from tfsynth.data.normalize import brain_mask
from tfsynth.errors import TfsynthError

FORMAT = "tfsynth-linear-baseline"
FORMAT_VERSION = 1
_ONE = NUM_CONTRASTS  # index of the constant column of Z


def _key(contrasts: Iterable[str]) -> str:
    present = set(contrasts)
    return "+".join(c for c in CONTRASTS if c in present)


class LinearRegressionBaseline(AccumulatingFit):
    """Least-squares ``target = w_0 + sum_c w_c * input_c`` for every (available inputs, target).

    Attributes:
        moments: ``"t1+t2+flair"`` (the contrasts present in the subjects added) -> float64
            ``[5, 5]`` sum of ``Z^T Z`` over their brain voxels, ``Z = [t1, t1c, t2, flair, 1]``.
    """

    DESCRIPTION = "linear-regression baseline"
    FILE_HINT = "LINEAR_BASELINE.json"

    def __init__(self):
        self.moments: dict[str, np.ndarray] = {}

    # Fitting --------------------------------------------------------------------------------

    def accumulate(self, images: Mapping[str, np.ndarray], brain: np.ndarray | None = None) -> None:
        """Adds one subject (or slice stack) to the statistics.

        Args:
            images: contrast name (any alias) -> ``[N, H, W]`` (or any shape) in [0, 1], the
                contrasts present for this subject, all the same shape.
            brain: bool mask of that shape; default: voxels where any given contrast is nonzero.

        Raises:
            TfsynthError: contrasts of different shapes.
        """
        arrays, brain = self.subject_arrays(images, brain)
        z = np.zeros((int(brain.sum()), NUM_CONTRASTS + 1))
        for name, array in arrays.items():
            z[:, CONTRASTS.index(name)] = array[brain]
        z[:, _ONE] = 1.0
        key = _key(arrays)
        self.moments[key] = self.moments.get(key, np.zeros((NUM_CONTRASTS + 1,) * 2)) + z.T @ z

    @classmethod
    def combine(cls, baselines: Iterable[LinearRegressionBaseline]) -> LinearRegressionBaseline:
        """One baseline from the pooled statistics of several."""
        combined = cls()
        for baseline in baselines:
            for key, moment in baseline.moments.items():
                combined.moments[key] = combined.moments.get(key, 0.0) + moment
        return combined

    # Prediction -----------------------------------------------------------------------------

    def _inputs(self, sources: Iterable[str], target: str) -> tuple[list[str], str]:
        sources = sorted({canonical(s) for s in sources}, key=CONTRASTS.index)
        target = canonical(target)
        if not sources:
            raise TfsynthError("linear baseline: no input contrast given")
        if target in sources:
            raise TfsynthError(f"linear baseline: the target {target} is among the inputs")
        return sources, target

    def coefficients(self, sources: Sequence[str], target: str) -> tuple[dict[str, float], float]:
        """The fitted ``({input contrast: weight}, intercept)`` of one (inputs, target).

        Collinear inputs (e.g. a contrast constant over the training brains) get the minimum-norm
        solution (`numpy.linalg.lstsq`), so the fit is always defined.

        Raises:
            TfsynthError: no training voxels had all of the inputs and the target, or the target is an input.
        """
        sources, target = self._inputs(sources, target)
        needed = {*sources, target}
        moment = sum(
            (m for key, m in self.moments.items() if needed <= set(key.split("+"))),
            np.zeros((NUM_CONTRASTS + 1,) * 2),
        )
        if moment[_ONE, _ONE] == 0:
            raise TfsynthError(f"linear baseline: no training voxels with {', '.join(sources)} and {target}")
        columns = [CONTRASTS.index(s) for s in sources] + [_ONE]
        gram = moment[np.ix_(columns, columns)]
        solution = np.linalg.lstsq(gram, moment[columns, CONTRASTS.index(target)], rcond=None)[0]
        return dict(zip(sources, solution[:-1].tolist(), strict=True)), float(solution[-1])

    def predict(self, images01: Mapping[str, np.ndarray], target: str, brain=None) -> np.ndarray:
        """The target predicted from the given inputs, voxel by voxel.

        Args:
            images01: contrast name -> ``[N, H, W]`` (any shape) in [0, 1]: the available inputs.
            target: contrast name (any alias), not among the inputs.
            brain: bool mask of the same shape; default: voxels where any input is nonzero.
                Outside it the output is 0, the background convention of normalised volumes.

        Returns:
            float32 array of the inputs' shape, clipped to [0, 1].
        """
        arrays = {canonical(name): np.asarray(array, dtype=np.float32) for name, array in images01.items()}
        weights, intercept = self.coefficients(list(arrays), target)
        brain = brain_mask(arrays.values()) if brain is None else np.asarray(brain, dtype=bool)
        out = np.full(next(iter(arrays.values())).shape, intercept, dtype=np.float32)
        for name, weight in weights.items():
            out += np.float32(weight) * arrays[name]
        out = np.clip(out, 0.0, 1.0)
        out[~brain] = 0.0
        return out

    # Persistence ----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        moments = {key: self.moments[key].tolist() for key in sorted(self.moments)}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "columns": [*CONTRASTS, "1"], "moments": moments}

    @classmethod
    def from_dict(cls, values: Mapping) -> LinearRegressionBaseline:
        if values.get("format") != FORMAT or values.get("format_version") != FORMAT_VERSION:
            raise TfsynthError(f"not a {FORMAT} v{FORMAT_VERSION} file")
        baseline = cls()
        for key, moment in values["moments"].items():
            contrasts = [canonical(c) for c in key.split("+")]
            moment = np.asarray(moment, dtype=np.float64)
            if moment.shape != (NUM_CONTRASTS + 1,) * 2:
                raise TfsynthError(f"moments {key}: must be a {NUM_CONTRASTS + 1}x{NUM_CONTRASTS + 1} matrix")
            baseline.moments[_key(contrasts)] = moment
        return baseline
