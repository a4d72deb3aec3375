"""The serving contract, declared once: signature names, their named inputs and outputs, which
model kinds export which, and the request limits.

Everything else is derived from `CONTRACT`: the `tf.TensorSpec`s of the serving graph
(`tfsynth.savedmodel.graph`), the ``signatures`` section of ``metadata.json``
(`tfsynth.savedmodel.metadata`), the signature a local or remote client calls for a request
(`signature_for`: `tfsynth.synthesis.local`, `tfsynth.clients`), the dev server's default, and
the table in docs/serving.md (tested against this declaration). Pure data: no TensorFlow import,
so clients stay light.

A one-to-one request is the completion request with one available input: the
``serving_default`` pair takes ``source`` per slice, the ``complete`` pair takes ``sources`` per
channel (any-subset generators only); both answer ``synthesized``.
"""

from __future__ import annotations

import dataclasses

# The smallest slice height and width a signature accepts (two stride-2 downsamplings of a
# 4x4 kernel need at least this much to stay meaningful).
MIN_SIZE = 16
# Slices per generator call inside the graph: bounds the memory of a whole-volume request.
CHUNK_SLICES = 8

# Tensor names shared by every signature.
IMAGE = "image"
SOURCE = "source"
SOURCES = "sources"
TARGET = "target"
OUTPUT = "synthesized"

# Compute precisions of an exported generator and the Keras policy each runs under.
COMPUTE_DTYPES = ("float32", "bfloat16")
# float32 is the fast path on CPUs without native bfloat16 matrix units (docs/speed.md).
DEFAULT_COMPUTE_DTYPE = "float32"
KERAS_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One named input or output: its dtype name, its shape in words, and what it holds."""

    dtype: str
    shape: tuple[str, ...]
    description: str

    def as_dict(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape), "description": self.description}


@dataclasses.dataclass(frozen=True)
class Signature:
    """One exported signature.

    Attributes:
        name: the signature key (TF Serving's ``signature_name``).
        inputs, outputs: named tensors, in call order.
        raw: True if ``image`` holds scanner intensities normalised in the graph (and the answer is
            masked to the input's nonzero voxels); False if it is already in [0, 1].
        completion: True if only any-subset generators (``model.any_subset``) export it.
        preprocessing: what the graph does to ``image`` before the generator.
        kind: ``"synthesis"``, or ``"info"`` for the signature that states what the model knows.
    """

    name: str
    inputs: dict[str, Tensor]
    outputs: dict[str, Tensor]
    raw: bool
    completion: bool
    preprocessing: str
    kind: str = "synthesis"

    def as_dict(self) -> dict:
        """The ``metadata.json`` entry of this signature."""
        return {
            "inputs": {key: value.as_dict() for key, value in self.inputs.items()},
            "outputs": {key: value.as_dict() for key, value in self.outputs.items()},
            "preprocessing": self.preprocessing,
        }


_PERCENTILES = "clip to the 0.5/99.5 brain percentiles (linear interpolation); scale to [0, 1]"
_SLICE_TARGET = Tensor("string", ("N or 1",), "target contrast name per slice")
_PAIR_INPUTS = {
    SOURCE: Tensor(
        "string",
        ("N or 1",),
        "contrast name of the input slices (the generator is conditioned on the pair); "
        "source == target returns the normalised input",
    ),
    TARGET: _SLICE_TARGET,
}
_SUBSET_INPUTS = {
    SOURCES: Tensor("string", ("C",), "contrast names of the image's C channels (1 <= C <= 3), each once"),
    TARGET: Tensor("string", ("N or 1",), "the contrast to synthesise per slice, none of the sources"),
}
_UNMASKED = {OUTPUT: Tensor("float32", ("N", "H", "W"), "in [0, 1], not masked")}

CONTRACT: tuple[Signature, ...] = (
    Signature(
        name="serving_default",
        inputs={
            IMAGE: Tensor(
                "float32",
                ("N", "H", "W"),
                f"raw intensities of N axial slices (one volume or any stack); H, W >= {MIN_SIZE}; background exactly 0",
            ),
            **_PAIR_INPUTS,
        },
        outputs={
            OUTPUT: Tensor(
                "float32",
                ("N", "H", "W"),
                "synthesised target contrast in [0, 1]; 0 outside the input's nonzero voxels",
            )
        },
        raw=True,
        completion=False,
        preprocessing=f"brain = nonzero voxels of the whole request; {_PERCENTILES}",
    ),
    Signature(
        name="synthesize_normalized",
        inputs={IMAGE: Tensor("float32", ("N", "H", "W"), "slices already in [0, 1]"), **_PAIR_INPUTS},
        outputs=_UNMASKED,
        raw=False,
        completion=False,
        preprocessing="none",
    ),
    Signature(
        name="complete",
        inputs={
            IMAGE: Tensor(
                "float32",
                ("N", "H", "W", "C"),
                f"raw intensities of C contrasts of the same N axial slices; H, W >= {MIN_SIZE}; background exactly 0",
            ),
            **_SUBSET_INPUTS,
        },
        outputs={
            OUTPUT: Tensor(
                "float32",
                ("N", "H", "W"),
                "synthesised target contrast in [0, 1]; 0 outside the union of the inputs' nonzero voxels",
            )
        },
        raw=True,
        completion=True,
        preprocessing="each channel as serving_default's image: brain = its nonzero voxels in the whole request; "
        "clip to its 0.5/99.5 brain percentiles (linear interpolation); scale to [0, 1]",
    ),
    Signature(
        name="complete_normalized",
        inputs={
            IMAGE: Tensor("float32", ("N", "H", "W", "C"), "C contrasts of the same slices, already in [0, 1]"),
            **_SUBSET_INPUTS,
        },
        outputs=_UNMASKED,
        raw=False,
        completion=True,
        preprocessing="none",
    ),
    # What a remote client must know to prepare a request (resampling, canvas), asked once
    # instead of copied from metadata.json by hand. Exports of tfsynth 0.1 do not have it.
    Signature(
        name="model_info",
        inputs={},
        outputs={
            "voxel_size_mm": Tensor(
                "float32", ("3",), "voxel size [x, y, z] in mm the model was trained at; all 0 if unknown"
            ),
            "image_size": Tensor("int32", (), "training canvas H = W in voxels; 0 if unknown"),
            "slice_orientation": Tensor("string", (), "axis codes of the voxel order slices are cut in, e.g. LPS"),
            "contrasts": Tensor("string", ("4",), "contrast names in label order"),
            "signatures": Tensor("string", ("S",), "the synthesis signatures this model answers"),
            "metadata": Tensor("string", (), "metadata.json as exported, as JSON text"),
        },
        raw=False,
        completion=False,
        preprocessing="none",
        kind="info",
    ),
)
_BY_NAME = {signature.name: signature for signature in CONTRACT}
DEFAULT_SIGNATURE = CONTRACT[0].name
INFO_SIGNATURE = "model_info"
# The synthesis signatures every export has, and those only any-subset generators add.
SIGNATURES = tuple(s.name for s in CONTRACT if s.kind == "synthesis" and not s.completion)
COMPLETION_SIGNATURES = tuple(s.name for s in CONTRACT if s.kind == "synthesis" and s.completion)


def signature(name: str) -> Signature:
    """The declared signature ``name``.

    Raises:
        KeyError: ``name`` is not one of `CONTRACT`'s.
    """
    return _BY_NAME[name]


def exported(completion: bool) -> tuple[Signature, ...]:
    """The signatures a model exports: the one-to-one pair, the completion pair if ``completion``, and
    `INFO_SIGNATURE`."""
    return tuple(s for s in CONTRACT if completion or not s.completion)


def signature_for(subset: bool, raw: bool) -> str:
    """The signature that answers a request: ``subset`` (per-channel ``sources``) or per-slice
    ``source``, ``raw`` intensities or already-normalised [0, 1] slices."""
    (match,) = (s.name for s in CONTRACT if s.kind == "synthesis" and s.completion == subset and s.raw == raw)
    return match


def metadata_signatures(completion: bool) -> dict:
    """The ``signatures`` section of ``metadata.json`` for a model that exports `exported`."""
    return {s.name: s.as_dict() for s in exported(completion)}


def precision_info(compute_dtype: str) -> dict[str, str]:
    """The ``model.compute_precision`` entry of ``metadata.json``."""
    return {
        "compute_dtype": compute_dtype,
        "keras_policy": KERAS_POLICIES[compute_dtype],
        "variables": "float32",
        "convolutions": compute_dtype,
        "instance_norm_statistics": "float32",
        "signature_outputs": "float32",
        "default": DEFAULT_COMPUTE_DTYPE,
    }
