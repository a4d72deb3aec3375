"""MR physics of the phantom: tissue relaxation, the sequences' signal equations, gadolinium and
the scanner (bias field, receiver gain, Rician noise). Times in ms; signals in arbitrary units."""

from __future__ import annotations

import math

import numpy as np

from tfsynth.phantom.acquisition import Acquisition
from tfsynth.phantom.anatomy import TISSUES
from tfsynth.phantom.draws import SmoothField, uniform

# Relaxation parameters at 3 T: (proton density relative to CSF, T1 ms, T2 ms).
# WM, GM: Stanisz et al., MRM 2005;54:507 (T1 1084 / 1820 ms, T2 69 / 99 ms).
# CSF: T1 ~4.2 s (Lu et al., JMRI 2005;22:13), T2 ~2 s (free water).
# PD: water content WM ~0.69, GM ~0.80 (Neeb et al., NeuroImage 2006;31:1156), CSF 1.
# Tumour compartments: representative values in the ranges reported for glioblastoma at 3 T
# by MR fingerprinting (Badve et al., AJNR 2017;38:492): vasogenic edema and enhancing tumour
# have prolonged T1/T2 versus WM; the necrotic core is fluid-like (long T1, long T2).
TISSUE_PARAMS: dict[str, tuple[float, float, float]] = {
    "wm": (0.69, 1084.0, 69.0),
    "gm": (0.80, 1820.0, 99.0),
    "csf": (1.00, 4163.0, 2000.0),
    "necrosis": (0.92, 2600.0, 350.0),
    "enhancing": (0.85, 1700.0, 120.0),
    "edema": (0.86, 1600.0, 130.0),
}

# Gadolinium relaxivities of Gd-DTPA in plasma at 3 T, 1/(mM s) (Rohrer et al., Invest Radiol
# 2005;40:715). The concentration the tumour reaches is an `Acquisition` setting.
GD_R1, GD_R2 = 3.7, 5.2


def spin_echo(pd, t1, t2, tr: float, te: float):
    """Spin-echo signal ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` (times in ms, TE << TR)."""
    return pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2)


def inversion_recovery(pd, t1, t2, tr: float, te: float, ti: float):
    """Signed inversion-recovery signal ``PD (1 - 2 exp(-TI/T1) + exp(-TR/T1)) exp(-TE/T2)``.

    The scanner shows the magnitude of the voxel's summed signal, so take ``abs`` after mixing.
    """
    return pd * (1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)


def null_inversion_time(t1: float, tr: float) -> float:
    """TI (ms) that nulls a tissue of longitudinal relaxation ``t1``: ``T1 ln(2 / (1 + exp(-TR/T1)))``.

    Tends to the textbook ``T1 ln 2`` for TR >> T1.
    """
    return t1 * math.log(2.0 / (1.0 + math.exp(-tr / t1)))


def draw_protocol(rng: np.random.StarGANGenerator, acquisition: Acquisition) -> dict:
    """The subject's sequence parameters (ms): the nominal protocol with +-5 % TR/TE jitter.

    FLAIR's TI is the acquisition's, or else what the protocol computes to null nominal CSF at
    this TR; either is set to within 2 %. ``gd_mm`` is drawn in the acquisition's range.
    """

    def jitter(tr: float, te: float) -> dict:
        return {key: value * uniform(rng, 0.95, 1.05) for key, value in (("tr", tr), ("te", te))}

    a = acquisition
    csf_t1 = TISSUE_PARAMS["csf"][1] * a.tissue_t1_scale
    flair = jitter(a.flair_tr, a.flair_te)
    ti = a.flair_ti if a.flair_ti is not None else null_inversion_time(csf_t1, flair["tr"])
    flair["ti"] = ti * uniform(rng, 0.98, 1.02)
    t1, t2 = jitter(a.t1_tr, a.t1_te), jitter(a.t2_tr, a.t2_te)
    return {"t1": t1, "t2": t2, "flair": flair, "gd_mm": uniform(rng, *a.gd_mm)}


def subject_relaxation(
    rng: np.random.StarGANGenerator, acquisition: Acquisition
) -> dict[str, tuple[float, float, float]]:
    """Tissue (PD, T1, T2): literature values times the acquisition's scales, with ~3 % biological
    variation of T1 and T2 per subject."""
    t1_scale, t2_scale = acquisition.tissue_t1_scale, acquisition.tissue_t2_scale
    return {
        name: (
            pd,
            t1 * t1_scale * float(np.exp(rng.normal(0.0, 0.03))),
            t2 * t2_scale * float(np.exp(rng.normal(0.0, 0.03))),
        )
        for name, (pd, t1, t2) in TISSUE_PARAMS.items()
    }


def signal_image(contrast: str, tissues: dict, relax: dict, params: dict) -> np.ndarray:
    """Noise-free image [X, Y, Z]: the sequence's signal of each tissue, weighted by its fraction."""
    image = np.zeros(tissues["wm"].shape, np.float32)
    for name in TISSUES:
        pd, t1, t2 = relax[name]
        if contrast == "t1c" and name == "enhancing":
            # Gadolinium relaxivity: rates add, 1/T = 1/T0 + r [Gd]; r in 1/(mM s), times in ms.
            t1 = 1.0 / (1.0 / t1 + GD_R1 * params["gd_mm"] / 1000.0)
            t2 = 1.0 / (1.0 / t2 + GD_R2 * params["gd_mm"] / 1000.0)
        if contrast in ("t1", "t1c"):
            value = spin_echo(pd, t1, t2, **params["t1"])
        elif contrast == "t2":
            value = spin_echo(pd, t1, t2, **params["t2"])
        else:
            value = inversion_recovery(pd, t1, t2, **params["flair"])
        image += np.float32(value) * tissues[name]
    return np.abs(image)


def scanner_effects(
    rng: np.random.StarGANGenerator, image: np.ndarray, brain: np.ndarray, shape, region, acquisition
) -> np.ndarray:
    """Bias field, receiver gain and Rician noise inside the brain; exactly 0 outside.

    Args:
        image: noise-free signal on ``region`` of the grid ``shape``; brain: bool, same shape.
        acquisition: its ``bias_strength`` and ``snr`` ranges give this image's draws.

    Returns:
        float32 image of ``image``'s shape.
    """
    bias = np.exp(SmoothField(rng, 3, uniform(rng, *acquisition.bias_strength))(shape, region))
    signal = (image * bias)[brain] * np.float32(1000.0 * np.exp(rng.normal(0.0, 0.15)))
    sigma = float(signal.mean()) / uniform(rng, *acquisition.snr)
    real = signal + rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    imag = rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    out = np.zeros(image.shape, np.float32)
    # Magnitude of a complex Gaussian around the signal: Rician; > 0 almost surely inside.
    out[brain] = np.maximum(np.hypot(real, imag), np.finfo(np.float32).tiny)
    return out
