"""Renders docs/phantom_subject.png: one phantom subject's four contrasts and its segmentation.

    python benchmarks/render_phantom_figure.py [--out docs/phantom_subject.png] [--seed 0] [--voxel-size 1]

Axial slice through the tumour (the slice with the most tumour voxels), radiological convention
(patient's right on the image's left), each contrast windowed to its 0.5-99.5 brain percentiles.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from tfsynth.evaluation.figures import save_png  # noqa: E402
from tfsynth.phantom.cohort import SEG_LABELS, make_subject  # noqa: E402

TITLES = {"t1": "T1 (SE 500/10)", "t1c": "T1c (+ Gd)", "t2": "T2 (SE 5000/100)", "flair": "FLAIR (IR, CSF nulled)"}
SEG_COLOURS = {"necrosis": "#f0e442", "edema": "#009e73", "enhancing": "#d55e00"}
SEG_NAMES = {"necrosis": "1 necrotic core", "edema": "2 edema", "enhancing": "3 enhancing tumour"}


def render(out: Path, seed: int = 0, voxel_size: float = 1.0) -> Path:
    subject = make_subject(seed=seed, voxel_size=voxel_size)
    seg, brain = subject["seg"], subject["brain"]
    k = int(np.argmax((seg > 0).sum(axis=(0, 1))))
    rows, cols = np.nonzero(brain[:, :, k].T)
    crop = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))

    def axial(volume):  # [X, Y, Z] LPS -> [Y, X] image: anterior up, patient's left on the right
        return volume[:, :, k].T[crop]

    fig, axes = plt.subplots(1, 5, figsize=(15, 4.3), layout="constrained")
    for ax, contrast in zip(axes[:4], TITLES, strict=True):
        volume = subject[contrast]
        lo, hi = np.percentile(volume[brain], [0.5, 99.5])
        ax.imshow(axial(volume), cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(TITLES[contrast], fontsize=11)

    lo, hi = np.percentile(subject["t1c"][brain], [0.5, 99.5])
    axes[4].imshow(axial(subject["t1c"]), cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    labels = axial(seg).astype(float)
    labels[labels == 0] = np.nan
    colours = ListedColormap([SEG_COLOURS[name] for name, _ in sorted(SEG_LABELS.items(), key=lambda kv: kv[1])])
    axes[4].imshow(labels, cmap=colours, vmin=0.5, vmax=3.5, alpha=0.55, interpolation="nearest")
    axes[4].set_title("segmentation on T1c", fontsize=11)
    fig.legend(
        handles=[Patch(color=SEG_COLOURS[name], label=SEG_NAMES[name]) for name in SEG_NAMES],
        loc="outside lower right",
        ncol=3,
        fontsize=9,
        frameon=False,
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.02, 0.5, "R", transform=ax.transAxes, color="white", fontsize=9, va="center")
        ax.text(0.98, 0.5, "L", transform=ax.transAxes, color="white", fontsize=9, va="center", ha="right")
    shape = "x".join(map(str, seg.shape))
    fig.suptitle(
        f"tfsynth phantom: seed {seed}, {voxel_size:g} mm grid {shape}, axial slice {k} through the tumour "
        "(radiological view)",
        fontsize=12,
    )
    save_png(fig, out, dpi=110)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "phantom_subject.png"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--voxel-size", type=float, default=1.0)
    args = parser.parse_args(argv)
    print(render(args.out, args.seed, args.voxel_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
