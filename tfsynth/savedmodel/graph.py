"""The serving graph: a `tf.Module` whose signatures run the generator with its preprocessing.

The signatures validate the request in the graph (INVALID_ARGUMENT naming the problem, not a
crash: TF Serving feeds tensors without checking them against the signature, so the inputs are
declared with unknown rank), normalise raw intensities as
`tfsynth.data.normalize.percentile_normalize` does, place the slices on the training canvas as
`tfsynth.synthesis.volumes.to_canvas` places them, run the generator in chunks of `CHUNK_SLICES` slices and undo
the canvas. With a mirror axis, each answer is the mean of the generator's answers on the slice
and on its left-right mirror (mirrored back), a test-time average over the flips training drew.
An any-subset generator adds the completion signatures, which take several contrasts of the same
slices (each normalised on its own) and synthesise a missing one; ``model_info`` states what a
client must know. The signatures are declared in `tfsynth.savedmodel.contract`;
`tfsynth.savedmodel.io` saves the module.
"""

from __future__ import annotations

import json

import tensorflow as tf

from tfsynth.contrasts import ALIASES, CONTRASTS, NUM_CONTRASTS
from tfsynth.savedmodel.checks import (
    as_assertion,
    first_failure,
    image_checks,
    in_unit_range,
    known_names,
    name_count,
    reshaped,
    with_ranks,
)
from tfsynth.savedmodel.contract import CHUNK_SLICES, MIN_SIZE, OUTPUT, exported, signature
from tfsynth.savedmodel.preprocessing import canvas_size, crop_size, normalize_masked

# The generator inputs that are images (mirrored for the test-time average); the others are labels.
_IMAGE_KEYS = ("image", "images")

_DTYPES = {"float32": tf.float32, "string": tf.string}


def input_specs(name: str) -> list[tf.TensorSpec]:
    """The `tf.TensorSpec`s of the declared signature ``name``, in call order.

    Declared with unknown rank: TF Serving feeds tensors without checking them against the
    signature, so a wrong rank must reach the in-graph checks to fail as INVALID_ARGUMENT.
    """
    return [tf.TensorSpec(None, _DTYPES[t.dtype], name=key) for key, t in signature(name).inputs.items()]


class SynthesisModule(tf.Module):
    """The serving graph of a generator: two signatures over one `serve` path, with an any-subset
    generator two completion signatures over `serve_subset`, and the ``model_info`` signature.

    ``serving_default`` takes raw intensities and normalises them in the graph;
    ``synthesize_normalized`` takes slices already in [0, 1]. ``complete`` and
    ``complete_normalized`` do the same for C = 1..3 contrasts of the same slices (``image``
    [N, H, W, C], ``sources`` [C] their names, ``target`` [1] or [N]). `signatures` gives the
    concrete functions `tf.saved_model.save` exports.

    Args:
        generator: a built `tfsynth.models` generator (called with ``{"image", "source",
            "target"}``, and with ``{"images", "available", "target"}`` if ``any_subset``).
        image_size: the training canvas H = W (slices are padded to at least this), or None.
        info: the model's ``metadata.json`` document, which the info signature states.
        mirror_axis: the in-plane axis of a served slice (0 = H, 1 = W) that runs left-right, to
            average each answer with the answer on the slice mirrored along it; None: no average.
            Only sound if training drew random flips along that axis (`tfsynth.data.pipeline`).

    Attributes:
        completes: whether the generator takes any subset of contrasts (the completion signatures).
    """

    def __init__(self, generator, image_size: int | None, mirror_axis: int | None = None, info: dict | None = None):
        super().__init__(name="tfsynth")
        if mirror_axis not in (None, 0, 1):
            raise ValueError(f"mirror_axis must be 0, 1 or None, got {mirror_axis!r}")
        # Axis of the [N, H, W(, C)] tensors the generator sees and returns.
        self._mirror = None if mirror_axis is None else 1 + mirror_axis
        # Track the tf.Variables under the Keras variables, not the Keras model: the TF1 / C++
        # loader (TF Serving) only restores variables that appear as such in the object graph;
        # through Keras 3 wrappers they load in TF2 but are "not found" in a TF1 session. The
        # generator itself is kept behind a plain function, which tf.Module does not track.
        self.generator_variables = [_tf_variable(v) for v in generator.variables]
        self._generator = lambda inputs: generator(inputs)
        self.completes = bool(getattr(generator, "any_subset", False))
        # One tf.function per declared signature this generator exports (only those:
        # tf.saved_model.save traces every tf.function the module holds).
        for declared in exported(self.completes):
            if declared.kind == "info":
                answer = _info_function(declared, {"image_size": image_size, **(info or {})})
            else:
                answer = self._signature_function(declared)
            setattr(self, declared.name, answer)
        self._min_canvas = int(image_size or 0)
        self.contrast_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(ALIASES), tf.string),
                tf.constant([CONTRASTS.index(name) for name in ALIASES.values()], tf.int32),
            ),
            default_value=-1,
        )

    def _signature_function(self, declared):
        """The tf.function answering ``declared`` (a `tfsynth.savedmodel.contract.Signature`)."""
        path = self.serve_subset if declared.completion else self.serve

        def answer(image, names, target):
            return {OUTPUT: path(image, names, target, raw=declared.raw)}

        return tf.function(answer, input_signature=input_specs(declared.name), autograph=False)

    def serve(self, image, source, target, raw: bool):
        """The one-contrast serving path: validate, normalise (``raw``), place on the canvas, run, undo.

        Args:
            image: float32 [N, H, W]; raw intensities if ``raw``, else already in [0, 1].
            source, target: string [N] or [1] contrast names.
            raw: normalise in the graph and mask the answer to the input's nonzero voxels.

        Returns:
            float32 [N, H, W] in [0, 1].
        """
        image, sources, labels = self._validate(image, source, target, raw)
        image01 = normalize_masked(image) if raw else image
        nonzero = tf.not_equal(image, 0.0)

        def synthesize(canvas):
            out = self._run_generator({"image": canvas * 2.0 - 1.0, "source": sources, "target": labels})
            # Asked for the contrast it was given, the answer is the (normalised) input itself.
            return tf.where(tf.equal(sources, labels)[:, None, None], canvas[..., 0], out)

        out = self._on_canvas(image01[..., None], nonzero, synthesize)
        return out * tf.cast(nonzero, tf.float32) if raw else out

    def serve_subset(self, image, sources, target, raw: bool):
        """The completion path: `serve` for C contrasts of the same slices in, one missing contrast out.

        Each channel is normalised as `serve` normalises one image (its own percentiles over its
        nonzero voxels); the canvas follows the union of the channels' nonzero voxels.

        Args:
            image: float32 [N, H, W, C], C = 1..3; raw intensities if ``raw``, else in [0, 1].
            sources: string [C] contrast names of the channels, distinct.
            target: string [1] or [N] contrast names, none of them among ``sources``.
            raw: normalise in the graph and mask the answer to the union of the inputs' nonzero voxels.

        Returns:
            float32 [N, H, W] in [0, 1].
        """
        image, channels, labels = self._validate_subset(image, sources, target, raw)
        if raw:
            image01 = tf.transpose(tf.map_fn(normalize_masked, tf.transpose(image, [3, 0, 1, 2])), [1, 2, 3, 0])
        else:
            image01 = image
        nonzero = tf.reduce_any(tf.not_equal(image, 0.0), axis=-1)
        # [C, K]: channel c goes to its contrast's place among the generator's K channels.
        placement = tf.one_hot(channels, NUM_CONTRASTS)
        available = tf.broadcast_to(tf.reduce_sum(placement, axis=0), [tf.shape(image)[0], NUM_CONTRASTS])

        def synthesize(canvas):
            images = tf.einsum("nhwc,ck->nhwk", canvas * 2.0 - 1.0, placement)
            return self._run_generator({"images": images, "available": available, "target": labels})

        out = self._on_canvas(image01, nonzero, synthesize)
        return out * tf.cast(nonzero, tf.float32) if raw else out

    def _on_canvas(self, image01, nonzero, synthesize):
        """Places slices on the training canvas, synthesises there, and undoes the placement.

        Like `tfsynth.synthesis.volumes.to_canvas`: crop centrally to the training canvas when that
        removes only zero voxels, then pad (to the canvas, multiple of 4).

        Args:
            image01: float32 [N, H, W, C] in [0, 1].
            nonzero: bool [N, H, W], the voxels the crop must keep.
            synthesize: canvas [N, h, w, C] in [0, 1] -> [N, h, w] in [0, 1].

        Returns:
            float32 [N, H, W] in [0, 1].
        """
        shape = tf.shape(image01)
        height, width = shape[1], shape[2]
        crop_h, crop_w = crop_size(height, self._min_canvas), crop_size(width, self._min_canvas)
        row, col = (height - crop_h) // 2, (width - crop_w) // 2
        inside = tf.reduce_sum(tf.cast(nonzero[:, row : row + crop_h, col : col + crop_w], tf.int64))
        keep_all = tf.not_equal(inside, tf.reduce_sum(tf.cast(nonzero, tf.int64)))
        crop_h, crop_w = tf.where(keep_all, height, crop_h), tf.where(keep_all, width, crop_w)
        row, col = tf.where(keep_all, 0, row), tf.where(keep_all, 0, col)
        cropped = image01[:, row : row + crop_h, col : col + crop_w]
        padded_h, padded_w = canvas_size(crop_h, self._min_canvas), canvas_size(crop_w, self._min_canvas)
        top, left = (padded_h - crop_h) // 2, (padded_w - crop_w) // 2
        canvas = tf.pad(cropped, [[0, 0], [top, padded_h - crop_h - top], [left, padded_w - crop_w - left], [0, 0]])
        out = synthesize(canvas)
        out = out[:, top : top + crop_h, left : left + crop_w]
        return tf.pad(out, [[0, 0], [row, height - crop_h - row], [col, width - crop_w - col]])

    def _validate(self, image, source, target, raw: bool):
        """Asserts the request is well formed; returns (image [N,H,W], sources, targets int32 [N])."""
        image, (source, target) = with_ranks(image, 3, "[N, H, W]", {"source": source, "target": target})
        shape = tf.shape(image)
        checks = image_checks(image)
        labels = {}
        for what, names in (("source", source), ("target", target)):
            labels[what] = self._lookup(names)
            checks += [
                as_assertion(name_count(names, what, shape[0])),
                as_assertion(known_names(names, labels[what], what)),
            ]
        if not raw:
            checks.append(as_assertion(in_unit_range(image, "synthesize_normalized")))
        with tf.control_dependencies(checks):
            image = tf.identity(image)
            sources = tf.broadcast_to(labels["source"], shape[:1])
            targets = tf.broadcast_to(labels["target"], shape[:1])
        return image, sources, targets

    def _validate_subset(self, image, sources, target, raw: bool):
        """Asserts a completion request is well formed; a request with several problems gets the
        message of the first in the order below.

        Every condition is computed from the raw request with ops that accept any shape, and holds
        when an earlier one failed (`_first_failure`), so the message does not depend on the order
        the runtime runs the assertions in (with the request's shapes known, Grappler folds them).

        Returns:
            ``(image [N, H, W, C], channels int32 [C], targets int32 [N])``.
        """
        shape = tf.shape(image)
        padded = tf.concat([shape, tf.zeros([4], tf.int32)], axis=0)
        dims = tf.stack([padded[i] for i in range(4)])  # [N, H, W, C] whatever the rank, 0 past it
        flat_sources, flat_target = tf.reshape(sources, [-1]), tf.reshape(target, [-1])
        channels, labels = self._lookup(flat_sources), self._lookup(flat_target)
        count = tf.size(flat_sources)
        checks = [
            (tf.equal(tf.rank(image), 4), ["image must be a rank-4 tensor [N, H, W, C]; got shape:", shape]),
            (
                tf.equal(tf.rank(sources), 1),
                ["sources must be a rank-1 tensor of contrast names [C]; got shape:", tf.shape(sources)],
            ),
            (
                tf.equal(tf.rank(target), 1),
                ["target must be a rank-1 tensor of contrast names [N] or [1]; got shape:", tf.shape(target)],
            ),
            (
                tf.reduce_min(dims[1:3]) >= MIN_SIZE,
                [f"image height and width must be at least {MIN_SIZE}; image shape:", shape],
            ),
            (dims[0] > 0, ["image holds no slices (N = 0)"]),
            (tf.reduce_all(tf.math.is_finite(image)), ["image contains NaN or infinite values"]),
            known_names(flat_sources, channels, "sources"),
            known_names(flat_target, labels, "target"),
            (
                tf.logical_and(count >= 1, count < NUM_CONTRASTS),
                [f"sources must name 1 to {NUM_CONTRASTS - 1} contrasts; got:", count],
            ),
            (tf.equal(tf.size(tf.unique(channels).y), count), ["sources name a contrast twice:", flat_sources]),
            (
                tf.equal(dims[3], count),
                [
                    "image has C channels but sources names another number of contrasts; C and sources:",
                    dims[3],
                    flat_sources,
                ],
            ),
            (
                tf.logical_not(tf.reduce_any(tf.equal(labels[:, None], channels[None, :]))),
                ["target must be a contrast missing from sources; target:", flat_target, "sources:", flat_sources],
            ),
            name_count(flat_target, "target", dims[0]),
        ]
        if not raw:
            checks.append(in_unit_range(image, "complete_normalized"))
        with tf.control_dependencies(first_failure(checks)):
            image = reshaped(image, dims[:4])
            channels = reshaped(channels, [-1])
            # One target for every slice, or one each; a gather, not a broadcast, whose shape check
            # Grappler would run on the request's shapes before the count check.
            targets = tf.gather(labels, tf.minimum(tf.range(dims[0]), tf.size(labels) - 1))
        return image, channels, targets

    def _lookup(self, names):
        """Label indices int32 of contrast names (any alias, case, ``_``); -1 for an unknown name."""
        keys = tf.strings.regex_replace(tf.strings.lower(tf.strings.strip(names)), "_", "")
        return self.contrast_table.lookup(keys)

    def _run_generator(self, inputs):
        """StarGANGenerator over chunks of `CHUNK_SLICES` slices.

        Args:
            inputs: the generator's inputs, every tensor with the slices N first; images in [-1, 1].

        Returns:
            float32 [N, H, W] in [0, 1].
        """
        n = tf.shape(inputs["target"])[0]
        chunks = (n + CHUNK_SLICES - 1) // CHUNK_SLICES
        results = tf.TensorArray(tf.float32, size=chunks, infer_shape=False)

        def body(i, results):
            start = i * CHUNK_SLICES
            end = tf.minimum(start + CHUNK_SLICES, n)
            chunk = {key: value[start:end] for key, value in inputs.items()}
            if self._mirror is None:
                y = tf.cast(self._generator(chunk)[..., 0], tf.float32)
            else:
                # Slice and mirror in one call (instance norm is per example, so batching them
                # changes nothing); the labels repeat, the images ([n, H, W, C]) are mirrored.
                both = {
                    key: tf.concat([value, tf.reverse(value, [self._mirror]) if key in _IMAGE_KEYS else value], 0)
                    for key, value in chunk.items()
                }
                y = tf.cast(self._generator(both)[..., 0], tf.float32)
                count = end - start
                y = 0.5 * (y[:count] + tf.reverse(y[count:], [self._mirror]))
            y = tf.clip_by_value((y + 1.0) * 0.5, 0.0, 1.0)
            return i + 1, results.write(i, y)

        _, results = tf.while_loop(lambda i, _: i < chunks, body, [tf.constant(0), results], parallel_iterations=1)
        return results.concat()


def _info_function(declared, info: dict):
    """The tf.function of the info signature: constants taken from ``info`` (metadata.json)."""
    values = {
        "voxel_size_mm": tf.constant(info.get("voxel_size_mm") or [0.0, 0.0, 0.0], tf.float32),
        "image_size": tf.constant(info.get("image_size") or 0, tf.int32),
        "slice_orientation": tf.constant(info.get("slice_orientation") or "LPS"),
        "contrasts": tf.constant(list(CONTRASTS)),
        "signatures": tf.constant([s.name for s in exported(bool(info.get("completion"))) if s.kind == "synthesis"]),
        "metadata": tf.constant(json.dumps(info, sort_keys=True)),
    }
    assert set(values) == set(declared.outputs), "the info signature's outputs are declared in the contract"
    return tf.function(lambda: dict(values), input_signature=[], autograph=False)


def _tf_variable(variable):
    """The `tf.Variable` behind a Keras 3 variable (Keras keeps it as ``.value`` on the TF backend)."""
    value = variable.value
    if not isinstance(value, tf.Variable):
        raise TypeError(f"expected a tf.Variable behind Keras variable {variable.path}, got {type(value).__name__}")
    return value


def signatures(module: SynthesisModule) -> dict:
    """``{name: concrete function}`` of the module's serving signatures, for `tf.saved_model.save`:
    the completion signatures too when the generator takes any subset of contrasts."""
    return {s.name: getattr(module, s.name).get_concrete_function() for s in exported(module.completes)}
