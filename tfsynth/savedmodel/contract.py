"""The serving signatures' inputs, outputs and preprocessing as ``metadata.json`` describes them.

`tfsynth.savedmodel.metadata.build_metadata` writes `SIGNATURE_DOCS` (and `COMPLETION_DOCS` for an
any-subset generator) under ``signatures``; `tfsynth.savedmodel.graph` implements what they say.
"""

from __future__ import annotations

# The contrast inputs both signatures share, as metadata.json describes them.
CONTRAST_INPUTS = {
    "source": {
        "dtype": "string",
        "shape": ["N or 1"],
        "description": "contrast name of the input slices (the generator is conditioned on the pair); "
        "source == target returns the normalised input",
    },
    "target": {"dtype": "string", "shape": ["N or 1"], "description": "target contrast name per slice"},
}
SIGNATURE_DOCS = {
    "serving_default": {
        "inputs": {
            "image": {
                "dtype": "float32",
                "shape": ["N", "H", "W"],
                "description": "raw intensities of N axial slices (one volume or any stack); H, W >= 16; "
                "background exactly 0",
            },
            **CONTRAST_INPUTS,
        },
        "outputs": {
            "synthesized": {
                "dtype": "float32",
                "shape": ["N", "H", "W"],
                "description": "synthesised target contrast in [0, 1]; 0 outside the input's nonzero voxels",
            }
        },
        "preprocessing": "brain = nonzero voxels of the whole request; clip to the 0.5/99.5 brain percentiles "
        "(linear interpolation); scale to [0, 1]",
    },
    "synthesize_normalized": {
        "inputs": {
            "image": {"dtype": "float32", "shape": ["N", "H", "W"], "description": "slices already in [0, 1]"},
            **CONTRAST_INPUTS,
        },
        "outputs": {
            "synthesized": {"dtype": "float32", "shape": ["N", "H", "W"], "description": "in [0, 1], not masked"}
        },
        "preprocessing": "none",
    },
}
# The completion inputs both completion signatures share.
COMPLETION_INPUTS = {
    "sources": {
        "dtype": "string",
        "shape": ["C"],
        "description": "contrast names of the image's C channels (1 <= C <= 3), each once",
    },
    "target": {
        "dtype": "string",
        "shape": ["N or 1"],
        "description": "the contrast to synthesise per slice, none of the sources",
    },
}
COMPLETION_DOCS = {
    "complete": {
        "inputs": {
            "image": {
                "dtype": "float32",
                "shape": ["N", "H", "W", "C"],
                "description": "raw intensities of C contrasts of the same N axial slices; H, W >= 16; "
                "background exactly 0",
            },
            **COMPLETION_INPUTS,
        },
        "outputs": {
            "synthesized": {
                "dtype": "float32",
                "shape": ["N", "H", "W"],
                "description": "synthesised target contrast in [0, 1]; 0 outside the union of the inputs' "
                "nonzero voxels",
            }
        },
        "preprocessing": "each channel as serving_default's image: brain = its nonzero voxels in the whole "
        "request; clip to its 0.5/99.5 brain percentiles (linear interpolation); scale to [0, 1]",
    },
    "complete_normalized": {
        "inputs": {
            "image": {
                "dtype": "float32",
                "shape": ["N", "H", "W", "C"],
                "description": "C contrasts of the same slices, already in [0, 1]",
            },
            **COMPLETION_INPUTS,
        },
        "outputs": {
            "synthesized": {"dtype": "float32", "shape": ["N", "H", "W"], "description": "in [0, 1], not masked"}
        },
        "preprocessing": "none",
    },
}
