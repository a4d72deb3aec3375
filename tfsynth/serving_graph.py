"""The serving graph: a `tf.Module` whose signatures run the generator with its preprocessing.

Both signatures validate the request in the graph (INVALID_ARGUMENT naming the problem, not a
crash: TF Serving feeds tensors without checking them against the signature, so the inputs are
declared with unknown rank), normalise raw intensities as
`tfsynth.data.normalize.percentile_normalize` does, place the slices on the training canvas as
`tfsynth.synthesize` places them, run the generator in chunks of `CHUNK_SLICES` slices and undo
the canvas. `tfsynth.savedmodel_io` saves it; `tfsynth.export` documents the contract.
"""

from __future__ import annotations

import tensorflow as tf

from .contrasts import ALIASES, CONTRASTS
from .data.normalize import HIGH_PERCENTILE, LOW_PERCENTILE
from .model_metadata import MIN_SIZE, SIGNATURES

# Slices per generator call inside the graph: bounds memory (a 240x240 slice needs ~60 MB of
# float32 activations). Per-slice speed does not depend on it: 1 and 8 slices per call ran at the
# same rate on 2 cores (the convolutions dominate; per-call overhead is milliseconds).
CHUNK_SLICES = 8

_VALID_NAMES = ", ".join(CONTRASTS) + " (aliases: " + ", ".join(sorted(set(ALIASES) - set(CONTRASTS))) + ")"
_INPUT_SIGNATURE = [
    tf.TensorSpec(None, tf.float32, name="image"),
    tf.TensorSpec(None, tf.string, name="source"),
    tf.TensorSpec(None, tf.string, name="target"),
]


class SynthesisModule(tf.Module):
    """The serving graph of a generator: two signatures over one `serve` path.

    ``serving_default`` takes raw intensities and normalises them in the graph;
    ``synthesize_normalized`` takes slices already in [0, 1]. `signatures` gives both as the
    concrete functions `tf.saved_model.save` exports.

    Args:
        generator: a built `tfsynth.models` generator (called with ``(image, source, target)``).
        image_size: the training canvas H = W (slices are padded to at least this), or None.
    """

    def __init__(self, generator, image_size: int | None):
        super().__init__(name="tfsynth")
        # Track the tf.Variables under the Keras variables, not the Keras model: the TF1 / C++
        # loader (TF Serving) only restores variables that appear as such in the object graph;
        # through Keras 3 wrappers they load in TF2 but are "not found" in a TF1 session. The
        # generator itself is kept behind a plain function, which tf.Module does not track.
        self.generator_variables = [_tf_variable(v) for v in generator.variables]
        self._generator = lambda x, sources, targets: generator((x, sources, targets))
        self._min_canvas = int(image_size or 0)
        self.contrast_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(ALIASES), tf.string),
                tf.constant([CONTRASTS.index(name) for name in ALIASES.values()], tf.int32),
            ),
            default_value=-1,
        )

    @tf.function(input_signature=_INPUT_SIGNATURE, autograph=False)
    def serving_default(self, image, source, target):
        return {"synthesized": self.serve(image, source, target, raw=True)}

    @tf.function(input_signature=_INPUT_SIGNATURE, autograph=False)
    def synthesize_normalized(self, image, source, target):
        return {"synthesized": self.serve(image, source, target, raw=False)}

    def serve(self, image, source, target, raw: bool):
        """The one serving path: validate, normalise (``raw``), place on the canvas, run, undo.

        Args:
            image: float32 [N, H, W]; raw intensities if ``raw``, else already in [0, 1].
            source, target: string [N] or [1] contrast names.
            raw: normalise in the graph and mask the answer to the input's nonzero voxels.

        Returns:
            float32 [N, H, W] in [0, 1].
        """
        image, sources, labels = self._validate(image, source, target, raw)
        if raw:
            image01 = _percentile_normalize(image) * tf.cast(tf.not_equal(image, 0.0), tf.float32)
        else:
            image01 = image
        # Like tfsynth.volume_synthesis.to_canvas: crop centrally to the training canvas when that
        # removes only zero voxels, then pad (to the canvas, multiple of 4); undone at the end.
        nonzero = tf.not_equal(image01 if not raw else image, 0.0)
        shape = tf.shape(image01)
        height, width = shape[1], shape[2]
        crop_h, crop_w = _crop_size(height, self._min_canvas), _crop_size(width, self._min_canvas)
        row, col = (height - crop_h) // 2, (width - crop_w) // 2
        inside = tf.reduce_sum(tf.cast(nonzero[:, row : row + crop_h, col : col + crop_w], tf.int64))
        keep_all = tf.not_equal(inside, tf.reduce_sum(tf.cast(nonzero, tf.int64)))
        crop_h, crop_w = tf.where(keep_all, height, crop_h), tf.where(keep_all, width, crop_w)
        row, col = tf.where(keep_all, 0, row), tf.where(keep_all, 0, col)
        cropped = image01[:, row : row + crop_h, col : col + crop_w]
        padded_h, padded_w = _canvas(crop_h, self._min_canvas), _canvas(crop_w, self._min_canvas)
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
                        _VALID_NAMES,
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
            y = self._generator(x[start:end, :, :, None], sources[start:end], labels[start:end])
            return i + 1, results.write(i, tf.cast(y[..., 0], tf.float32))

        _, results = tf.while_loop(lambda i, _: i < chunks, body, [tf.constant(0), results], parallel_iterations=1)
        return results.concat()


def _tf_variable(variable):
    """The `tf.Variable` behind a Keras 3 variable (Keras keeps it as ``.value`` on the TF backend)."""
    value = variable.value
    if not isinstance(value, tf.Variable):
        raise TypeError(f"expected a tf.Variable behind Keras variable {variable.path}, got {type(value).__name__}")
    return value


def _crop_size(size, min_canvas: int):
    """Size after `tfsynth.data.normalize.crop_or_pad`'s crop to the canvas (no crop without a canvas)."""
    return tf.minimum(size, min_canvas) if min_canvas else size


def _canvas(size, min_canvas: int):
    """Padded size: at least ``min_canvas``, rounded up to a multiple of 4 (two stride-2 levels)."""
    return tf.maximum((size + 3) // 4 * 4, min_canvas + (-min_canvas) % 4)


def _percentile_normalize(image):
    """In-graph `percentile_normalize` over the whole tensor: brain = nonzero voxels.

    lo / hi are numpy's linear-interpolation percentiles computed in float64 (as
    ``np.percentile`` does), then ``clip((x - lo) * float32(1 / (hi - lo)), 0, 1)``.
    """
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


def signatures(module: SynthesisModule) -> dict:
    """``{name: concrete function}`` of the module's serving signatures, for `tf.saved_model.save`."""
    return {name: getattr(module, name).get_concrete_function() for name in SIGNATURES}
