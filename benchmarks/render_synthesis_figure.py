"""Renders docs/synthesis_example.png: a trained run's synthesis beside the real target and the lookup table.

    python benchmarks/render_synthesis_figure.py RUN_DIR [--out docs/synthesis_example.png] [--source t1]

RUN_DIR is a ``tfsynth train`` run on prepared data with a test split (``RUN_DIR/data`` for the
built-in cohort, or ``--data PREPARED``). For the first test patient, the axial slice with the
most tumour: the source, and for each other contrast the real slice, the model's synthesis (the
run's exported SavedModel, ``synthesize_normalized`` on the prepared [0, 1] slices, as
``tfsynth evaluate`` scores it), the per-pair lookup table fitted on the training split, and both
absolute errors. Each panel's title gives its brain PSNR on this slice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tfsynth.baselines.lookup_table import IntensityMappingBaseline  # noqa: E402
from tfsynth.contrasts import CONTRASTS  # noqa: E402
from tfsynth.evaluation.figures import save_png  # noqa: E402
from tfsynth.evaluation.patients import load_prepared_patients  # noqa: E402
from tfsynth.synthesis.local import load_synthesizer  # noqa: E402

NAMES = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}
# Errors are shown on [0, ERROR_MAX] of the normalised range: larger ones saturate.
ERROR_MAX = 0.3


def brain_psnr(estimate: np.ndarray, real: np.ndarray, brain: np.ndarray) -> float:
    """PSNR in dB over the brain voxels of one slice, data range 1 (the [0, 1]-normalised brain)."""
    mse = float(np.mean((estimate[brain] - real[brain]) ** 2))
    return 10 * np.log10(1.0 / mse) if mse > 0 else float("inf")


def render(run: Path, out: Path, data: Path | None = None, source: str = "t1") -> Path:
    data = data or run / "data"
    patient = load_prepared_patients(data, "test")[0]
    k = int(np.argmax((patient.tumor > 0).sum(axis=(1, 2)))) if patient.tumor is not None else len(patient.brain) // 2
    brain = patient.brain[k]
    lookup = IntensityMappingBaseline().fit_prepared(data, "train")
    model = load_synthesizer(run)
    targets = [c for c in CONTRASTS if c != source and c in patient.images]
    image = patient.images[source][k : k + 1]

    columns = ["real", "model", "lookup table", "|model - real|", "|lookup table - real|"]
    fig, axes = plt.subplots(len(targets), 1 + len(columns), figsize=(13.5, 2.35 * len(targets)), layout="constrained")
    for row, target in enumerate(targets):
        real = patient.images[target][k]
        synthesized = model.synthesize_normalized(image, source, target)[0] * brain
        table = lookup.predict(image, source, target, brain=brain[None])[0] * brain
        panels = [
            (image[0], f"source {NAMES[source]}", "gray", 1.0),
            (real, f"real {NAMES[target]}", "gray", 1.0),
            (synthesized, f"model {brain_psnr(synthesized, real, brain):.1f} dB", "gray", 1.0),
            (table, f"lookup table {brain_psnr(table, real, brain):.1f} dB", "gray", 1.0),
            (np.abs(synthesized - real) * brain, "|model - real|", "magma", ERROR_MAX),
            (np.abs(table - real) * brain, "|table - real|", "magma", ERROR_MAX),
        ]
        for ax, (picture, title, cmap, vmax) in zip(axes[row], panels, strict=True):
            # Prepared slices are [X, Y] in LPS: transposed, anterior is up and the patient's right on the left.
            shown = ax.imshow(picture.T, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(f"{NAMES[source]} -> {NAMES[target]}", fontsize=10)
    fig.colorbar(shown, ax=axes[:, -2:], shrink=0.6, label=f"absolute error (0-{ERROR_MAX:g} of the window)")
    steps = model.metadata.training.get("steps", "?")
    fig.suptitle(
        f"tfsynth: test patient {patient.case_id}, axial slice {int(patient.slice_indices[k])}; "
        f"model from {run.name} ({steps} steps); brain PSNR on this slice, [0, 1]-normalised brain",
        fontsize=10,
    )
    save_png(fig, out, dpi=72)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a tfsynth train run directory")
    parser.add_argument("--data", type=Path, help="its prepared data (default RUN/data)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "synthesis_example.png"
    )
    parser.add_argument("--source", default="t1", choices=CONTRASTS)
    args = parser.parse_args(argv)
    print(render(args.run, args.out, args.data, args.source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
