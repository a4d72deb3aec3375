"""The intensity-mapping baseline: one nonlinear lookup table per (source, target) contrast pair.

For each ordered pair the table holds the conditional mean of the target intensity given
the source intensity, over brain voxels of the training subjects, in 256 equal bins of the
normalised [0, 1] source intensity; prediction interpolates linearly between bin centres.
It is the best any voxel-wise intensity transfer can do in mean squared error (up to the
binning), so a synthesis model that beats it is using spatial context.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from tfsynth.baselines.fitting import AccumulatingFit
from tfsynth.contrasts import CONTRASTS, NUM_CONTRASTS, canonical
from tfsynth.errors import TfsynthError

FORMAT = "tfsynth-intensity-baseline"
FORMAT_VERSION = 1
DEFAULT_BINS = 256


class IntensityMappingBaseline(AccumulatingFit):
    """Per-pair lookup tables ``target = f_{s->t}(source)`` fitted from binned conditional means.

    The sufficient statistics (per-bin sums and counts) are kept, so fits on disjoint subject
    sets add up exactly (`combine`), e.g. for leave-one-patient-out evaluation.

    Attributes:
        bins: number of equal-width source-intensity bins on [0, 1].
        sums, counts: float64 ``[4, 4, bins]``: target-intensity sums and voxel counts per
            (source index, target index, bin), canonical contrast order.
    """

    DESCRIPTION = "intensity-mapping baseline"
    FILE_HINT = "BASELINE.json"

    def __init__(self, bins: int = DEFAULT_BINS):
        if bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")
        self.bins = int(bins)
        self.sums = np.zeros((NUM_CONTRASTS, NUM_CONTRASTS, self.bins))
        self.counts = np.zeros((NUM_CONTRASTS, NUM_CONTRASTS, self.bins))

    # Fitting --------------------------------------------------------------------------------

    def _bin(self, values: np.ndarray) -> np.ndarray:
        return np.clip((values * self.bins).astype(np.int64), 0, self.bins - 1)

    def accumulate(self, images: Mapping[str, np.ndarray], brain: np.ndarray | None = None) -> None:
        """Adds one subject (or slice stack) to the statistics.

        Args:
            images: contrast name (any alias) -> ``[N, H, W]`` (or any shape) in [0, 1], the
                contrasts present for this subject, all the same shape.
            brain: bool mask of that shape; default: voxels where any given contrast is nonzero
                (the prepared data's brain mask).

        Raises:
            TfsynthError: contrasts of different shapes.
        """
        arrays, brain = self.subject_arrays(images, brain)
        values = {name: array[brain] for name, array in arrays.items()}
        for source, x in values.items():
            bins = self._bin(x)
            s = CONTRASTS.index(source)
            for target, y in values.items():
                if target == source:
                    continue
                t = CONTRASTS.index(target)
                self.sums[s, t] += np.bincount(bins, weights=y, minlength=self.bins)
                self.counts[s, t] += np.bincount(bins, minlength=self.bins)

    @classmethod
    def combine(cls, baselines: Iterable[IntensityMappingBaseline]) -> IntensityMappingBaseline:
        """One baseline from the pooled statistics of several (all with the same ``bins``)."""
        baselines = list(baselines)
        combined = cls(baselines[0].bins if baselines else DEFAULT_BINS)
        for baseline in baselines:
            if baseline.bins != combined.bins:
                raise ValueError("cannot combine baselines with different bin counts")
            combined.sums += baseline.sums
            combined.counts += baseline.counts
        return combined

    # Prediction -----------------------------------------------------------------------------

    def has_pair(self, source: str, target: str) -> bool:
        """Whether the pair was seen during fitting."""
        return bool(self.counts[CONTRASTS.index(canonical(source)), CONTRASTS.index(canonical(target))].sum() > 0)

    def table(self, source: str, target: str) -> tuple[np.ndarray, np.ndarray]:
        """The lookup table of a pair: ``(bin_centres [bins], target_values [bins])``.

        Empty bins are filled by linear interpolation between their non-empty neighbours (and
        held constant beyond the outermost ones).

        Raises:
            TfsynthError: the pair never occurred in the fitting data.
        """
        source, target = canonical(source), canonical(target)
        if source == target:
            raise TfsynthError(f"baseline: source and target are both {source}")
        s, t = CONTRASTS.index(source), CONTRASTS.index(target)
        counts, sums = self.counts[s, t], self.sums[s, t]
        if not counts.sum():
            raise TfsynthError(f"baseline: no training voxels with both {source} and {target}")
        centres = (np.arange(self.bins) + 0.5) / self.bins
        filled = counts > 0
        values = np.interp(centres, centres[filled], sums[filled] / counts[filled])
        return centres, values

    def predict(self, images01, source: str, target: str, brain=None) -> np.ndarray:
        """Maps source images to the target contrast through the pair's table.

        Args:
            images01: ``[N, H, W]`` (any shape) source intensities in [0, 1].
            source, target: contrast names (any alias).
            brain: bool mask of the same shape; default ``images01 > 0``. Outside it the output
                is 0, the background convention of normalised volumes.

        Returns:
            float32 array of the input's shape in [0, 1].
        """
        centres, values = self.table(source, target)
        images01 = np.asarray(images01, dtype=np.float32)
        brain = images01 > 0 if brain is None else np.asarray(brain, dtype=bool)
        out = np.interp(images01, centres, values).astype(np.float32)
        out[~brain] = 0.0
        return out

    # Persistence ----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        pairs = {}
        for s, source in enumerate(CONTRASTS):
            for t, target in enumerate(CONTRASTS):
                if self.counts[s, t].sum():
                    pairs[f"{source}->{target}"] = {
                        "counts": self.counts[s, t].astype(np.int64).tolist(),
                        "sums": self.sums[s, t].tolist(),
                    }
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "bins": self.bins, "pairs": pairs}

    @classmethod
    def from_dict(cls, values: Mapping) -> IntensityMappingBaseline:
        if values.get("format") != FORMAT or values.get("format_version") != FORMAT_VERSION:
            raise TfsynthError(f"not a {FORMAT} v{FORMAT_VERSION} file")
        baseline = cls(int(values["bins"]))
        for key, table in values["pairs"].items():
            source, _, target = key.partition("->")
            s, t = CONTRASTS.index(canonical(source)), CONTRASTS.index(canonical(target))
            counts, sums = np.asarray(table["counts"], float), np.asarray(table["sums"], float)
            if counts.shape != (baseline.bins,) or sums.shape != (baseline.bins,):
                raise TfsynthError(f"pair {key}: tables must have {baseline.bins} bins")
            baseline.counts[s, t], baseline.sums[s, t] = counts, sums
        return baseline
