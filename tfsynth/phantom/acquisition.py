"""The phantom's scanner settings: sequence timings, gadolinium, noise, bias field, tissue scaling.

`Acquisition` holds the nominal values one protocol uses for every subject; the phantom then
varies them per subject exactly as before (TR/TE +-5 %, TI +-2 %, the ranges drawn uniformly).
Its defaults are the built-in cohort's protocol, so ``Acquisition()`` gives the same cohort for
the same seed as no acquisition at all.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from tfsynth.errors import TfsynthError

# Extravascular gadolinium concentration range in enhancing glioma, mM.
GD_ENHANCING_MM = (0.15, 0.35)


@dataclasses.dataclass(frozen=True)
class Acquisition:
    """Nominal acquisition parameters of the phantom cohort; times in ms.

    Attributes:
        t1_tr: repetition time of the T1 (and T1c) spin echo, ms.
        t1_te: echo time of the T1 (and T1c) spin echo, ms; shorter than ``t1_tr``.
        t2_tr: repetition time of the T2 spin echo, ms.
        t2_te: echo time of the T2 spin echo, ms; shorter than ``t2_tr``.
        flair_tr: repetition time of the FLAIR inversion recovery, ms.
        flair_te: echo time of FLAIR, ms; shorter than ``flair_tr``.
        flair_ti: inversion time of FLAIR, ms, shorter than ``flair_tr``; ``None`` computes the TI
            that nulls CSF (of T1 scaled by ``tissue_t1_scale``) at each subject's TR.
        gd_mm: (low, high) gadolinium concentration in the enhancing tumour for T1c, mM, >= 0;
            each subject draws one value in the range. (0, 0) makes T1c a second T1.
        snr: (low, high) signal-to-noise ratio, the mean brain signal over the standard deviation
            of the complex Gaussian noise; each contrast of each subject draws one value.
        bias_strength: (low, high) standard deviation of the log of the smooth multiplicative bias
            field (0.1: about +-10 % intensity variation across the brain); 0 turns it off.
        tissue_t1_scale: factor on every tissue's literature T1 (3 T values); e.g. about 0.8 moves
            white matter towards its 1.5 T value.
        tissue_t2_scale: factor on every tissue's literature T2.
    """

    t1_tr: float = 500.0
    t1_te: float = 10.0
    t2_tr: float = 5000.0
    t2_te: float = 100.0
    flair_tr: float = 9000.0
    flair_te: float = 100.0
    flair_ti: float | None = None
    gd_mm: tuple[float, float] = GD_ENHANCING_MM
    snr: tuple[float, float] = (20.0, 40.0)
    bias_strength: tuple[float, float] = (0.05, 0.12)
    tissue_t1_scale: float = 1.0
    tissue_t2_scale: float = 1.0

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)  # normalises the fields of a frozen instance
        for name in ("t1_tr", "t1_te", "t2_tr", "t2_te", "flair_tr", "flair_te", "tissue_t1_scale", "tissue_t2_scale"):
            set_(name, _positive(name, getattr(self, name)))
        if self.flair_ti is not None:
            set_("flair_ti", _positive("flair_ti", self.flair_ti))
        for sequence in ("t1", "t2", "flair"):
            tr, te = getattr(self, f"{sequence}_tr"), getattr(self, f"{sequence}_te")
            if te >= tr:
                raise TfsynthError(f"acquisition {sequence}_te: TE {te:g} ms must be shorter than TR {tr:g} ms")
        if self.flair_ti is not None and self.flair_ti >= self.flair_tr:
            raise TfsynthError(
                f"acquisition flair_ti: TI {self.flair_ti:g} ms must be shorter than TR {self.flair_tr:g} ms"
            )
        set_("gd_mm", _range("gd_mm", self.gd_mm, "a concentration in mM", minimum=0.0))
        set_("snr", _range("snr", self.snr, "a signal-to-noise ratio", minimum=None))
        set_("bias_strength", _range("bias_strength", self.bias_strength, "a log-field std", minimum=0.0))
        if self.bias_strength[1] > 1.0:
            raise TfsynthError(
                f"acquisition bias_strength: {self.bias_strength[1]:g} is above 1, a bias field that scales "
                "intensities by more than a factor e"
            )


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TfsynthError(f"acquisition {name}: {value!r} is not a number")
    value = float(value)
    if not math.isfinite(value):
        raise TfsynthError(f"acquisition {name}: {value} is not a finite number")
    return value


def _positive(name: str, value) -> float:
    value = _number(name, value)
    if value <= 0:
        raise TfsynthError(f"acquisition {name}: must be positive, got {value:g}")
    return value


def _range(name: str, value, what: str, minimum: float | None) -> tuple[float, float]:
    """``value`` as a (low, high) float pair with low <= high, both >= ``minimum`` (None: > 0)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TfsynthError(f"acquisition {name}: expected (low, high), got {value!r}")
    low, high = (_number(name, v) for v in value)
    if minimum is None and min(low, high) <= 0:
        raise TfsynthError(f"acquisition {name}: {what} must be positive, got ({low:g}, {high:g})")
    if minimum is not None and min(low, high) < minimum:
        raise TfsynthError(f"acquisition {name}: {what} must be >= {minimum:g}, got ({low:g}, {high:g})")
    if low > high:
        raise TfsynthError(f"acquisition {name}: low {low:g} is above high {high:g}")
    return low, high
