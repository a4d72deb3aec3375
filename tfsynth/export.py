"""SavedModel export for TensorFlow Serving: named signatures with the preprocessing in the graph.

The exported SavedModel is self-contained (it loads with no tfsynth import) and holds two
signatures (inputs and outputs named, contrasts given as strings):

``serving_default``
    ``image`` float32 [N, H, W] raw scanner intensities (the axial slices of one volume, or
    any stack), ``source`` (the contrast of ``image``) and ``target`` string [N] or [1] (broadcast) -> ``synthesized`` float32
    [N, H, W] in [0, 1], zero outside the input's nonzero voxels. The request is normalised
    as one volume, exactly as `tfsynth.data.normalize.percentile_normalize` does: brain =
    nonzero voxels, clip to the 0.5 / 99.5 percentiles of the brain (numpy's linear
    interpolation, computed in float64), scale to [0, 1].
``synthesize_normalized``
    ``image`` float32 [N, H, W] already in [0, 1], ``source`` and ``target`` as above -> ``synthesized``
    float32 [N, H, W] in [0, 1] (no masking: a normalised slice no longer tells the
    background from the darkest brain voxels; mask with the source's brain mask).

Any H, W >= 16 is accepted. Slices are placed on the training canvas as `tfsynth.synthesize`
places them: centre-cropped to ``image_size`` when that removes only zero voxels (of the whole
request), then zero-padded centrally (in [0, 1] space, the background the network saw in
training) to at least ``image_size`` and to a multiple of 4; the output is cropped and padded
back to [H, W]. The canvas matters because instance normalisation sees the whole plane.
Slices whose nonzero voxels do not fit the canvas are not cropped (the generator is fully
convolutional). Slices run through the generator in chunks of `CHUNK_SLICES`, so a
whole-volume request needs bounded memory.

Bad requests fail with INVALID_ARGUMENT and a message naming the problem: wrong rank, H or W
below 16, NaN/inf values, an unknown contrast name, a source or target count that is neither 1 nor N,
an all-zero image (no brain), [0, 1] violated for ``synthesize_normalized``. The inputs are
declared with unknown rank so that a wrong rank reaches these checks (TF Serving feeds
tensors without checking them against the signature) instead of failing obscurely.

Compute precision (``compute_dtype``, CLI ``--precision``), whatever precision the generator
was trained in (it is rebuilt under the matching Keras policy with the same weights):

``float32`` (`DEFAULT_COMPUTE_DTYPE`)
    Answers equal a float32 evaluation of the Keras model.
``bfloat16``
    Keras ``mixed_bfloat16``: variables stay float32 in the SavedModel and are cast to
    bfloat16 for the convolutions; inputs are cast to bfloat16; instance-norm statistics are
    computed in float32 (Keras upcasts GroupNormalization); the output is cast back to float32.
    Worth it only on CPUs with native bfloat16 matrix units (AMX, AVX512-BF16) or GPUs/TPUs.
    On an AVX2-only CPU (this project's 2-core AMD EPYC) oneDNN emulates bfloat16 and the
    reference generator ran about 5x SLOWER than in float32, hence the float32 default.
    ``benchmarks/bench_synthesize.py`` measures both speed and the bfloat16-vs-float32
    difference (PSNR) on the machine at hand. ``metadata.json`` records the choice under
    ``model.compute_precision``.

Entry point: ``python -m tfsynth.export RUN_DIR --base-path DIR [--name tfsynth] [--version N]
[--precision float32|bfloat16]`` copies ``RUN_DIR/saved_model`` (written by training through
`write_saved_model`) into ``DIR/NAME/VERSION/`` atomically; with a ``--precision`` other than the
run's, the generator is rebuilt from the SavedModel's own variables and re-exported instead.
TF Serving only loads integer-named version folders, so the ``.tmp-*`` folder being written is
invisible to it until the final rename.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import atomic_directory
from .contrasts import ALIASES, CONTRASTS
from .data.normalize import HIGH_PERCENTILE, LOW_PERCENTILE
from .errors import TfsynthError, cli_entry
from .model_metadata import (
    METADATA_FILE,
    METADATA_FORMAT,
    METADATA_FORMAT_VERSION,
    SLICE_AXIS,
    ModelMetadata,
    read_metadata,
    write_metadata,
)

SIGNATURES = ("serving_default", "synthesize_normalized")
MIN_SIZE = 16
# Slices per generator call inside the graph: bounds memory (a 240x240 slice needs ~60 MB of
# float32 activations). Per-slice speed does not depend on it: 1 and 8 slices per call ran at the
# same rate on 2 cores (the convolutions dominate; per-call overhead is milliseconds).
CHUNK_SLICES = 8
COMPUTE_DTYPES = ("float32", "bfloat16")
# Chosen by measurement (benchmarks/bench_synthesize.py): bfloat16 is ~5x slower than float32 on
# this project's AVX2-only CPU; see the module docstring.
DEFAULT_COMPUTE_DTYPE = "float32"
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}

# The contrast inputs both signatures share, as metadata.json describes them.
_CONTRAST_INPUTS = {
    "source": {
        "dtype": "string",
        "shape": ["N or 1"],
        "description": "contrast name of the input slices (the generator is conditioned on the pair); "
        "source == target returns the normalised input",
    },
    "target": {"dtype": "string", "shape": ["N or 1"], "description": "target contrast name per slice"},
}
_SIGNATURE_DOCS = {
    "serving_default": {
        "inputs": {
            "image": {
                "dtype": "float32",
                "shape": ["N", "H", "W"],
                "description": "raw intensities of N axial slices (one volume or any stack); H, W >= 16; "
                "background exactly 0",
            },
            **_CONTRAST_INPUTS,
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
            **_CONTRAST_INPUTS,
        },
        "outputs": {
            "synthesized": {"dtype": "float32", "shape": ["N", "H", "W"], "description": "in [0, 1], not masked"}
        },
        "preprocessing": "none",
    },
}


def _serving_generator(generator, compute_dtype: str):
    """``generator`` if it computes in ``compute_dtype``, else a twin with its weights that does.

    Keras keeps mixed-precision variables in float32, so the twin's weights are exact; only
    the compute dtype changes.
    """
    from .precision import precision_scope

    if generator.compute_dtype == compute_dtype:
        return generator
    config = {key: value for key, value in generator.get_config().items() if key != "dtype"}
    with precision_scope(_POLICIES[compute_dtype]):
        twin = type(generator).from_config(config)
        _build(twin)
    twin.set_weights(generator.get_weights())
    return twin


def check_compute_dtype(compute_dtype: str) -> str:
    """``compute_dtype`` if it is one of `COMPUTE_DTYPES` (also accepts ``bf16``, ``fp32``).

    Raises:
        TfsynthError: anything else.
    """
    name = {"bf16": "bfloat16", "mixed_bfloat16": "bfloat16", "fp32": "float32"}.get(compute_dtype, compute_dtype)
    if name not in COMPUTE_DTYPES:
        raise TfsynthError(f"precision {compute_dtype!r} is not one of {', '.join(COMPUTE_DTYPES)}")
    return name


def _precision_info(compute_dtype: str) -> dict[str, str]:
    """The ``model.compute_precision`` entry of ``metadata.json``."""
    return {
        "compute_dtype": compute_dtype,
        "keras_policy": _POLICIES[compute_dtype],
        "variables": "float32",
        "convolutions": compute_dtype,
        "instance_norm_statistics": "float32",
        "signature_outputs": "float32",
        "default": DEFAULT_COMPUTE_DTYPE,
    }


def _build(generator) -> None:
    """Creates the generator's variables (a no-op if built) so no variable is made inside a loop."""
    import numpy as np

    label = np.zeros((1,), np.int32)
    generator((np.zeros((1, MIN_SIZE, MIN_SIZE, 1), np.float32), label, label))


def _make_module(generator, image_size: int | None):
    """Wraps ``generator`` in a `tf.Module` whose `tf.function`s are the two serving signatures.

    Args:
        generator: a built `tfsynth.models.Generator` computing in float32.
        image_size: the training canvas H = W (slices are padded to at least this), or None.
    """
    import tensorflow as tf

    valid_names = ", ".join(CONTRASTS) + " (aliases: " + ", ".join(sorted(set(ALIASES) - set(CONTRASTS))) + ")"
    min_canvas = int(image_size or 0)

    input_signature = [
        tf.TensorSpec(None, tf.float32, name="image"),
        tf.TensorSpec(None, tf.string, name="source"),
        tf.TensorSpec(None, tf.string, name="target"),
    ]

    class SynthesisModule(tf.Module):
        def __init__(self):
            super().__init__(name="tfsynth")
            # Track the tf.Variables under the Keras variables, not the Keras model: the TF1 / C++
            # loader (TF Serving) only restores variables that appear as such in the object graph;
            # through Keras 3 wrappers they load in TF2 but are "not found" in a TF1 session.
            self.generator_variables = [_tf_variable(v) for v in generator.variables]
            self.contrast_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(list(ALIASES), tf.string),
                    tf.constant([CONTRASTS.index(name) for name in ALIASES.values()], tf.int32),
                ),
                default_value=-1,
            )

        @tf.function(input_signature=input_signature, autograph=False)
        def serving_default(self, image, source, target):
            return {"synthesized": self._synthesize(image, source, target, raw=True)}

        @tf.function(input_signature=input_signature, autograph=False)
        def synthesize_normalized(self, image, source, target):
            return {"synthesized": self._synthesize(image, source, target, raw=False)}

        def _synthesize(self, image, source, target, raw: bool):
            image, sources, labels = self._validate(image, source, target, raw)
            if raw:
                image01 = _percentile_normalize(image) * tf.cast(tf.not_equal(image, 0.0), tf.float32)
            else:
                image01 = image
            # Like tfsynth.synthesize.to_canvas: crop centrally to the training canvas when that
            # removes only zero voxels, then pad (to the canvas, multiple of 4); undone at the end.
            nonzero = tf.not_equal(image01 if not raw else image, 0.0)
            shape = tf.shape(image01)
            height, width = shape[1], shape[2]
            crop_h, crop_w = _crop_size(height, min_canvas), _crop_size(width, min_canvas)
            row, col = (height - crop_h) // 2, (width - crop_w) // 2
            inside = tf.reduce_sum(tf.cast(nonzero[:, row : row + crop_h, col : col + crop_w], tf.int64))
            keep_all = tf.not_equal(inside, tf.reduce_sum(tf.cast(nonzero, tf.int64)))
            crop_h, crop_w = tf.where(keep_all, height, crop_h), tf.where(keep_all, width, crop_w)
            row, col = tf.where(keep_all, 0, row), tf.where(keep_all, 0, col)
            cropped = image01[:, row : row + crop_h, col : col + crop_w]
            padded_h, padded_w = _canvas(crop_h, min_canvas), _canvas(crop_w, min_canvas)
            top, left = (padded_h - crop_h) // 2, (padded_w - crop_w) // 2
            canvas = tf.pad(cropped, [[0, 0], [top, padded_h - crop_h - top], [left, padded_w - crop_w - left]])
            out = self._run_generator(canvas * 2.0 - 1.0, sources, labels)
            out = tf.clip_by_value((out + 1.0) * 0.5, 0.0, 1.0)
            # Asked for the contrast it was given, the answer is the (normalised) input itself.
            out = tf.where(tf.equal(sources, labels)[:, None, None], canvas, out)
            out = out[:, top : top + crop_h, left : left + crop_w]
            out = tf.pad(out, [[0, 0], [row, height - crop_h - row], [col, width - crop_w - col]])
            return out * tf.cast(nonzero, tf.float32) if raw else out

        def _validate(self, image, source, target, raw: bool):
            """Asserts the request is well formed; returns (image [N,H,W], sources, targets int32 [N])."""
            checks = [
                tf.debugging.Assert(
                    tf.equal(tf.rank(image), 3),
                    ["image must be a rank-3 tensor [N, H, W]; got shape:", tf.shape(image)],
                    summarize=8,
                ),
            ] + [
                tf.debugging.Assert(
                    tf.equal(tf.rank(names), 1),
                    [f"{what} must be a rank-1 tensor of contrast names [N] or [1]; got shape:", tf.shape(names)],
                    summarize=8,
                )
                for what, names in (("source", source), ("target", target))
            ]
            with tf.control_dependencies(checks):
                # Static shapes only: a runtime EnsureShape could fire before the clearer asserts.
                image, source, target = tf.identity(image), tf.identity(source), tf.identity(target)
            image.set_shape([None, None, None])
            source.set_shape([None])
            target.set_shape([None])
            shape = tf.shape(image)
            checks = [
                tf.debugging.Assert(
                    tf.reduce_min(shape[1:]) >= MIN_SIZE,
                    [f"image height and width must be at least {MIN_SIZE}; image shape:", shape],
                ),
                tf.debugging.assert_positive(shape[0], message="image holds no slices (N = 0)"),
                tf.debugging.assert_all_finite(image, "image contains NaN or infinite values"),
            ]
            labels = {}
            for what, names in (("source", source), ("target", target)):
                count = tf.size(names)
                keys = tf.strings.regex_replace(tf.strings.lower(tf.strings.strip(names)), "_", "")
                labels[what] = self.contrast_table.lookup(keys)
                checks += [
                    tf.debugging.Assert(
                        tf.logical_or(tf.equal(count, 1), tf.equal(count, shape[0])),
                        [f"{what} must hold 1 or N contrast names; names:", count, "slices N:", shape[0]],
                    ),
                    tf.debugging.Assert(
                        tf.reduce_all(labels[what] >= 0),
                        [
                            f"unknown {what} contrast name(s):",
                            tf.boolean_mask(names, labels[what] < 0),
                            "valid names:",
                            valid_names,
                        ],
                        summarize=8,
                    ),
                ]
            if not raw:
                checks.append(
                    tf.debugging.Assert(
                        tf.logical_and(tf.reduce_min(image) >= 0.0, tf.reduce_max(image) <= 1.0),
                        [
                            "synthesize_normalized expects image values in [0, 1]; got min/max:",
                            tf.reduce_min(image),
                            tf.reduce_max(image),
                        ],
                    )
                )
            with tf.control_dependencies(checks):
                image = tf.identity(image)
                sources = tf.broadcast_to(labels["source"], shape[:1])
                targets = tf.broadcast_to(labels["target"], shape[:1])
            return image, sources, targets

        def _run_generator(self, x, sources, labels):
            """Generator over chunks of `CHUNK_SLICES` slices: x [N,H,W] in [-1,1] -> [N,H,W]."""
            n = tf.shape(x)[0]
            chunks = (n + CHUNK_SLICES - 1) // CHUNK_SLICES
            results = tf.TensorArray(tf.float32, size=chunks, infer_shape=False)

            def body(i, results):
                start = i * CHUNK_SLICES
                end = tf.minimum(start + CHUNK_SLICES, n)
                y = generator((x[start:end, :, :, None], sources[start:end], labels[start:end]))
                return i + 1, results.write(i, tf.cast(y[..., 0], tf.float32))

            _, results = tf.while_loop(lambda i, _: i < chunks, body, [tf.constant(0), results], parallel_iterations=1)
            return results.concat()

    return SynthesisModule()


def _tf_variable(variable):
    """The `tf.Variable` behind a Keras 3 variable (Keras keeps it as ``.value`` on the TF backend)."""
    import tensorflow as tf

    value = variable.value
    if not isinstance(value, tf.Variable):
        raise TypeError(f"expected a tf.Variable behind Keras variable {variable.path}, got {type(value).__name__}")
    return value


def _crop_size(size, min_canvas: int):
    """Size after `tfsynth.data.normalize.crop_or_pad`'s crop to the canvas (no crop without a canvas)."""
    import tensorflow as tf

    return tf.minimum(size, min_canvas) if min_canvas else size


def _canvas(size, min_canvas: int):
    """Padded size: at least ``min_canvas``, rounded up to a multiple of 4 (two stride-2 levels)."""
    import tensorflow as tf

    return tf.maximum((size + 3) // 4 * 4, min_canvas + (-min_canvas) % 4)


def _percentile_normalize(image):
    """In-graph `percentile_normalize` over the whole tensor: brain = nonzero voxels.

    lo / hi are numpy's linear-interpolation percentiles computed in float64 (as
    ``np.percentile`` does), then ``clip((x - lo) * float32(1 / (hi - lo)), 0, 1)``.
    """
    import tensorflow as tf

    brain = tf.boolean_mask(image, tf.not_equal(image, 0.0))
    n = tf.size(brain)
    with tf.control_dependencies(
        [tf.debugging.Assert(n > 0, ["image has no nonzero (brain) voxels: nothing to normalise"])]
    ):
        lo = _percentile(brain, LOW_PERCENTILE)
        hi = _percentile(brain, HIGH_PERCENTILE)
    check = tf.debugging.Assert(
        hi > lo, [f"brain intensities are constant between the {LOW_PERCENTILE} and {HIGH_PERCENTILE} percentiles:", lo]
    )
    with tf.control_dependencies([check]):
        scale = tf.cast(1.0 / (hi - lo), tf.float32)
        return tf.clip_by_value((image - tf.cast(lo, tf.float32)) * scale, 0.0, 1.0)


def _percentile(values, q: float):
    """numpy's ``percentile(..., method="linear")`` of a float32 vector, interpolated in float64.

    Only the two order statistics around the position are needed, so instead of sorting the
    whole brain (tf.sort of a 240x240x155 volume's 3 M voxels took 4 s here) `tf.math.top_k`
    takes the ~q% smallest or largest values (0.25 s); the result is identical.
    """
    import tensorflow as tf

    n = tf.size(values)
    position = tf.constant(q / 100.0, tf.float64) * tf.cast(n - 1, tf.float64)
    below = tf.floor(position)
    gamma = position - below
    i = tf.cast(below, tf.int32)
    j = tf.minimum(i + 1, n - 1)
    if q <= 50.0:
        smallest = -tf.math.top_k(-values, j + 1, sorted=True).values  # ascending: smallest[m] = sorted[m]
        a, b = smallest[i], smallest[j]
    else:
        largest = tf.math.top_k(values, n - i, sorted=True).values  # descending: largest[m] = sorted[n-1-m]
        a, b = largest[n - 1 - i], largest[n - 1 - j]
    a, b = tf.cast(a, tf.float64), tf.cast(b, tf.float64)
    diff = b - a
    # numpy's _lerp: from below for gamma < 0.5, from above otherwise (exact at both ends).
    return tf.where(gamma >= 0.5, b - diff * (1.0 - gamma), a + diff * gamma)


def build_metadata(
    generator, metadata: dict[str, Any] | None = None, compute_dtype: str = DEFAULT_COMPUTE_DTYPE
) -> dict[str, Any]:
    """The MONAI-bundle-style contract written as ``metadata.json`` beside ``saved_model.pb``.

    Args:
        generator: the (original) generator, for its config and training precision.
        metadata: what the caller knows: ``image_size`` and ``voxel_size_mm`` (top level or
            under ``data``; image_size defaults to ``config.data.image_size``), ``config`` (the
            training `Config` or its dict), ``training`` (run facts, merged with the config under
            ``training``), ``evaluation`` (summary dict); other JSON-serialisable keys are kept.
        compute_dtype: the exported compute precision (see `write_saved_model`).

    Returns:
        A JSON-serialisable dict that `tfsynth.model_metadata.ModelMetadata.from_dict` accepts.

    Raises:
        TfsynthError: not JSON-serialisable, or a value the schema refuses (e.g. a voxel size
            that is not three positive numbers).
    """
    import keras
    import tensorflow as tf

    from .data.geometry import TRAINING_ORIENTATION

    extra = dict(metadata or {})
    config = extra.pop("config", None)
    if config is not None and hasattr(config, "to_dict"):
        config = config.to_dict()
    data = extra.get("data") if isinstance(extra.get("data"), dict) else {}
    image_size = extra.pop("image_size", None) or data.get("image_size")
    if image_size is None and isinstance(config, dict):
        image_size = config.get("data", {}).get("image_size")
    voxel_size_mm = extra.pop("voxel_size_mm", None) or data.get("voxel_size_mm")
    training = extra.pop("training", None)
    training = {"config": config, **training} if isinstance(training, dict) else {"config": config}
    result = {
        "format": METADATA_FORMAT,
        "format_version": METADATA_FORMAT_VERSION,
        "name": "tfsynth",
        "description": "Unified-GAN synthesis of one brain MRI contrast from another (one generator conditioned on "
        "the source and target contrasts), axial 2-D slices",
        "tfsynth_version": __version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "contrasts": list(CONTRASTS),
        "contrast_aliases": dict(ALIASES),
        "image_size": image_size,
        "voxel_size_mm": voxel_size_mm,
        "slice_orientation": TRAINING_ORIENTATION,
        "slice_axis": SLICE_AXIS,
        "intensity": {
            "input": "serving_default: raw intensities, background exactly 0; synthesize_normalized: [0, 1]",
            "normalization": {
                "method": "percentile clip and scale",
                "low_percentile": LOW_PERCENTILE,
                "high_percentile": HIGH_PERCENTILE,
                "interpolation": "linear (numpy default)",
                "mask": "nonzero voxels of the whole request",
            },
            "network_range": [-1.0, 1.0],
            "output_range": [0.0, 1.0],
        },
        "spatial": {
            "layout": "[N, H, W] axial slices; a NIfTI volume [X, Y, Z], reoriented to slice_orientation, "
            "is sent as [Z, X, Y]",
            "min_height_width": MIN_SIZE,
            "canvas": "centre crop to image_size if only zero voxels are removed, then zero-pad centrally to "
            "max(image_size, size rounded up to a multiple of 4) per axis; undone on the output",
            "chunk_slices": CHUNK_SLICES,
        },
        "signatures": _SIGNATURE_DOCS,
        "model": {
            "architecture": getattr(generator, "ARCHITECTURE", type(generator).__name__),
            "class": type(generator).__name__,
            "config": generator.get_config(),
            "trained_compute_dtype": str(generator.compute_dtype),
            "exported_compute_dtype": compute_dtype,
            "compute_precision": _precision_info(compute_dtype),
        },
        "training": training,
        "evaluation": extra.pop("evaluation", None),
    }
    result.update(extra)
    try:
        document = json.loads(json.dumps(result, default=_json_default))
    except (TypeError, ValueError) as error:
        raise TfsynthError(f"export metadata is not JSON-serialisable: {error}") from None
    return ModelMetadata.from_dict(document, "export metadata").to_dict()


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "get_config"):
        return value.get_config()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def write_saved_model(
    generator,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    compute_dtype: str = DEFAULT_COMPUTE_DTYPE,
) -> Path:
    """Writes a self-contained serving SavedModel of ``generator`` plus ``metadata.json``, atomically.

    Args:
        generator: a `tfsynth.models.Generator` (any training precision).
        path: the SavedModel directory to create. An existing SavedModel there is replaced
            (a run re-exporting itself); any other existing directory is an error.
        metadata: see `build_metadata`.
        compute_dtype: ``float32`` or ``bfloat16``: the precision of the generator's convolutions
            in the graph (see the module docstring). Signature inputs and outputs stay float32.

    Returns:
        ``path`` as a Path.

    Raises:
        TfsynthError: ``path`` exists and is not a SavedModel, an unknown ``compute_dtype``, or
            metadata is not JSON-serialisable.
    """
    path = Path(path)
    compute_dtype = check_compute_dtype(compute_dtype)
    if path.exists() and not (path / "saved_model.pb").is_file():
        raise TfsynthError(f"{path} exists and is not a SavedModel directory; refusing to overwrite it")
    _build(generator)
    info = build_metadata(generator, metadata, compute_dtype)
    with atomic_directory(path, replace=True) as tmp:
        _save(generator, tmp, info, compute_dtype)
    return path


def _save(generator, directory: Path, info: dict[str, Any], compute_dtype: str) -> None:
    """Saves the serving module of ``generator`` in ``compute_dtype`` and ``info`` as metadata.json."""
    import tensorflow as tf

    module = _make_module(_serving_generator(generator, compute_dtype), info["image_size"])
    signatures = {name: getattr(module, name).get_concrete_function() for name in SIGNATURES}
    tf.saved_model.save(module, str(directory), signatures=signatures)
    write_metadata(directory, info)


def generator_from_saved_model(saved_model_dir: str | os.PathLike):
    """Rebuilds the float32 Keras generator of a tfsynth SavedModel from its own variables.

    Uses ``metadata.json``'s ``model.config`` for the architecture and the module's
    ``generator_variables`` (saved in `Generator.variables` order) for the weights.

    Raises:
        TfsynthError: no metadata, or variables that do not fit the architecture.
    """
    import tensorflow as tf

    from .models import generator as generators
    from .precision import precision_scope

    saved_model_dir = Path(saved_model_dir)
    try:
        model = read_metadata(saved_model_dir).model
        config = model.get("config")
        if not isinstance(config, dict):
            raise KeyError("model.config")
        # Format 1 exports predate the class entry: they hold the StarGAN generator.
        cls = {"Generator": generators.Generator, "UNetGenerator": generators.UNetGenerator}[
            model.get("class", "Generator")
        ]
        variables = tf.saved_model.load(str(saved_model_dir)).generator_variables
    except (OSError, KeyError, AttributeError, ValueError) as error:
        raise TfsynthError(
            f"{saved_model_dir}: cannot rebuild the generator ({type(error).__name__}: {error})"
        ) from None
    with precision_scope("float32"):
        generator = cls.from_config({k: v for k, v in config.items() if k != "dtype"})
        _build(generator)
    try:
        generator.set_weights([v.numpy() for v in variables])
    except ValueError as error:
        raise TfsynthError(f"{saved_model_dir}: variables do not fit model.config ({error})") from None
    return generator


def next_version(model_dir: str | os.PathLike) -> int:
    """One more than the largest integer-named version folder under ``model_dir`` (1 if none)."""
    model_dir = Path(model_dir)
    versions = (
        [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()] if model_dir.is_dir() else []
    )
    return max(versions, default=0) + 1


def export_run(
    run_dir: str | os.PathLike,
    base_path: str | os.PathLike,
    name: str = "tfsynth",
    version: int | None = None,
    precision: str | None = None,
) -> Path:
    """Copies a run's SavedModel to ``base_path/name/version/`` (TF Serving layout), atomically.

    The copy is written under a ``.tmp-*`` name, which TF Serving ignores (it only loads
    integer-named folders), and renamed into place once complete. Versions are immutable: an
    existing one is never replaced.

    Args:
        run_dir: a training run directory holding ``saved_model/`` (or a SavedModel directory).
        base_path: the TF Serving model base path's parent (``--model_base_path`` is ``base_path/name``).
        name: model name in TF Serving.
        version: positive integer; default the next free one.
        precision: compute precision of the served model (``float32`` or ``bfloat16``); default
            the run's. A different one re-exports the generator rebuilt from the run's SavedModel.

    Returns:
        The version directory.

    Raises:
        TfsynthError: no SavedModel in ``run_dir``, invalid name, version or precision, or the
            version exists.
    """
    run_dir = Path(run_dir)
    if precision is not None:
        precision = check_compute_dtype(precision)
    source = run_dir / "saved_model"
    if not (source / "saved_model.pb").is_file():
        if (run_dir / "saved_model.pb").is_file():
            source = run_dir
        else:
            raise TfsynthError(
                f"{run_dir} has no exported model: {source}/saved_model.pb not found (train the run first)"
            )
    if not (source / METADATA_FILE).is_file():
        raise TfsynthError(f"{source} has no {METADATA_FILE}; it was not written by tfsynth.export.write_saved_model")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise TfsynthError(f"model name {name!r} is invalid: use letters, digits, '_', '.', '-'")
    model_dir = Path(base_path) / name
    if version is None:
        version = next_version(model_dir)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TfsynthError(f"version must be a positive integer, got {version!r}")
    target = model_dir / str(version)
    if target.exists():
        raise TfsynthError(f"{target} already exists; versions are immutable, choose another --version")
    metadata = read_metadata(source).to_dict()
    metadata["serving"] = {
        "model_name": name,
        "version": version,
        "exported_from": str(run_dir.resolve()),
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if metadata.get("evaluation") is None:
        metadata["evaluation"] = _evaluation_summary(run_dir)
    current = metadata.get("model", {}).get("exported_compute_dtype", "float32")
    if precision is None or precision == current:
        with _new_version_directory(target) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
            write_metadata(tmp, metadata)
        return target
    generator = generator_from_saved_model(source)
    metadata["model"]["exported_compute_dtype"] = precision
    metadata["model"]["compute_precision"] = _precision_info(precision)
    with _new_version_directory(target) as tmp:
        _save(generator, tmp, metadata, precision)
    return target


@contextlib.contextmanager
def _new_version_directory(target: Path):
    """`atomic_directory` for a version folder, with a clear error when a concurrent export
    took the same version number between our check and our rename."""
    try:
        with atomic_directory(target) as tmp:
            yield tmp
    except OSError:
        if target.exists():
            raise TfsynthError(
                f"{target} appeared while exporting (a concurrent export took version {target.name}); run again"
            ) from None
        raise


def _evaluation_summary(run_dir: Path) -> Any:
    """The run's evaluation results if `tfsynth.evaluate` left a JSON summary in it, else None."""
    for candidate in ("evaluation.json", "evaluation/summary.json", "evaluation/metrics.json"):
        path = run_dir / candidate
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                return None
    return None


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tfsynth export",
        description="Copy a trained run's SavedModel into TF Serving's <base>/<name>/<version>/ layout, atomically.",
    )
    parser.add_argument("run_dir", help="training run directory (holds saved_model/)")
    parser.add_argument("--base-path", required=True, help="directory holding one folder per served model")
    parser.add_argument("--name", default="tfsynth", help="model name in TF Serving (default: tfsynth)")
    parser.add_argument("--version", type=int, default=None, help="version number (default: next free integer)")
    parser.add_argument(
        "--precision",
        choices=COMPUTE_DTYPES,
        default=None,
        help="compute precision of the served generator (default: the run's export, normally "
        f"{DEFAULT_COMPUTE_DTYPE}); bfloat16 pays off only on CPUs with AMX/AVX512-BF16 or on accelerators",
    )
    args = parser.parse_args(argv)
    target = export_run(args.run_dir, args.base_path, name=args.name, version=args.version, precision=args.precision)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
