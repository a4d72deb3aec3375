"""Completion: an any-subset generator exported with the complete / complete_normalized signatures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from helpers import small_any_subset_unet

from tfsynth.contrasts import CONTRASTS
from tfsynth.data.normalize import crop_or_pad, percentile_normalize, undo_crop_or_pad
from tfsynth.errors import TfsynthError
from tfsynth.models import UNetGenerator
from tfsynth.savedmodel import contract
from tfsynth.savedmodel.io import write_saved_model
from tfsynth.savedmodel.metadata import ModelMetadata
from tfsynth.synthesis.local import load_synthesizer

SIZE = 32


@pytest.fixture(scope="module")
def generator():
    model = small_any_subset_unet(4, SIZE)
    rng = np.random.default_rng(4)
    for v in model.weights:  # random condition tables: every subset and target its own mapping
        if v.path.endswith(("table", "lut")):
            v.assign(rng.normal(0.0, 0.3, v.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def model_dir(generator, tmp_path_factory):
    return write_saved_model(generator, tmp_path_factory.mktemp("complete") / "saved_model", {"image_size": SIZE})


@pytest.fixture(scope="module")
def synthesizer(model_dir):
    return load_synthesizer(model_dir)


@pytest.fixture(scope="module")
def complete(model_dir):
    return tf.saved_model.load(str(model_dir)).signatures["complete"]


def volumes(names=("t1", "t2", "flair"), shape=(3, 20, 20), seed=0):
    """Raw slices of the same fake brain in several contrasts: 0 outside, positive inside."""
    rng = np.random.default_rng(seed)
    result = {}
    for i, name in enumerate(names):
        data = rng.gamma(2.0 + i, 100.0 * (i + 1), shape).astype(np.float32)
        data[:, :2] = 0
        data[:, :, -3 - i :] = 0  # contrasts whose backgrounds differ: the union is the mask
        result[name] = data
    return result


def reference(generator, inputs, target):
    """numpy + Keras: each contrast normalised alone, padded to the canvas, run, cropped, masked to the union."""
    h, w = next(iter(inputs.values())).shape[1:]
    images = np.zeros((len(next(iter(inputs.values()))), SIZE, SIZE, len(CONTRASTS)), np.float32)
    available = np.zeros((len(images), len(CONTRASTS)), np.float32)
    for name, slices in inputs.items():
        images[..., CONTRASTS.index(name)] = crop_or_pad(percentile_normalize(slices)[0], SIZE) * 2 - 1
        available[:, CONTRASTS.index(name)] = 1
    target_index = np.full(len(images), CONTRASTS.index(target), np.int32)
    out = generator({"images": images, "available": available, "target": target_index}).numpy()[..., 0]
    union = np.any(np.stack([slices != 0 for slices in inputs.values()]), axis=0)
    return undo_crop_or_pad(np.clip((out + 1) / 2, 0, 1), (h, w)) * union


def test_any_subset_export_has_the_completion_signatures_and_says_so(synthesizer, model_dir):
    assert set(synthesizer._model.signatures) == {
        "serving_default",
        "synthesize_normalized",
        "complete",
        "complete_normalized",
        "model_info",
    }
    assert synthesizer.completes and synthesizer.metadata.completion
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["completion"] is True and meta["model"]["config"]["any_subset"] is True
    assert meta["signatures"] == contract.metadata_signatures(completion=True)
    for declared in contract.exported(completion=True):
        inputs = synthesizer._model.signatures[declared.name].structured_input_signature[1]
        assert {key: spec.dtype.name for key, spec in inputs.items()} == {
            key: tensor.dtype for key, tensor in declared.inputs.items()
        }


@pytest.mark.parametrize("names", [("t1", "t2", "flair"), ("t2", "t1"), ("flair",)])
def test_complete_equals_per_contrast_normalisation_and_the_keras_generator(generator, synthesizer, names):
    inputs = volumes(names)
    out = synthesizer.complete_raw(inputs, "t1c")
    assert out.shape == (3, 20, 20) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference(generator, inputs, "t1c"), atol=1e-5)


def test_complete_depends_on_every_input_but_not_on_their_order(synthesizer):
    inputs = volumes()
    out = synthesizer.complete_raw(inputs, "t1c")
    np.testing.assert_array_equal(synthesizer.complete_raw(dict(reversed(list(inputs.items()))), "T1CE"), out)
    changed = dict(inputs, t2=inputs["t2"][:, ::-1].copy())
    assert np.abs(synthesizer.complete_raw(changed, "t1c") - out).max() > 1e-3


def test_complete_from_one_contrast_is_the_one_to_one_synthesis(synthesizer):
    slices = volumes(("t2",))["t2"]
    np.testing.assert_array_equal(
        synthesizer.complete_raw({"t2": slices}, "flair"), synthesizer.synthesize_raw(slices, "t2", "flair")
    )


def test_complete_normalized_takes_unit_range_inputs_and_does_not_mask(synthesizer):
    inputs = volumes()
    normalised = {name: percentile_normalize(slices)[0] for name, slices in inputs.items()}
    out = synthesizer.complete_normalized(normalised, "t1c")
    union = np.any(np.stack([s != 0 for s in inputs.values()]), axis=0)
    np.testing.assert_allclose(out * union, synthesizer.complete_raw(inputs, "t1c"), atol=1e-6)
    assert np.any(out[~union] > 0)  # not masked: the background has an answer too
    with pytest.raises(TfsynthError, match=r"complete_normalized expects image values in \[0, 1\]"):
        synthesizer.complete_normalized(inputs, "t1c")


def test_per_slice_targets(synthesizer):
    inputs = volumes(("t1", "t2"))
    image = np.stack([inputs["t1"], inputs["t2"]], axis=-1)
    signature = synthesizer._model.signatures["complete"]
    mixed = signature(
        image=tf.constant(image), sources=tf.constant(["t1", "t2"]), target=tf.constant(["t1c", "flair", "t1c"])
    )
    mixed = mixed["synthesized"].numpy()
    np.testing.assert_array_equal(mixed[[0, 2]], synthesizer.complete_raw(inputs, "t1c")[[0, 2]])
    np.testing.assert_array_equal(mixed[1], synthesizer.complete_raw(inputs, "flair")[1])


ONES = np.ones((2, 16, 16, 2), np.float32)
BAD_COMPLETIONS = {
    "unknown source": (ONES, ["t1", "pd"], ["t2"], "unknown sources contrast name(s):] [pd]"),
    "unknown target": (ONES, ["t1", "t2"], ["pd"], "unknown target contrast name(s):] [pd]"),
    "duplicate source": (ONES, ["t1", "T1n"], ["t2"], "sources name a contrast twice"),
    "target among sources": (ONES, ["t1", "t2"], ["t2w"], "target must be a contrast missing from sources"),
    "C differs from sources": (ONES, ["t1", "t2", "flair"], ["t1c"], "image has C channels but sources names"),
    "four sources": (np.ones((2, 16, 16, 4), np.float32), list(CONTRASTS), ["t1"], "sources must name 1 to 3"),
    "rank-3 image": (np.ones((20, 20, 2), np.float32), ["t1", "t2"], ["t1c"], "image must be a rank-4 tensor"),
    "rank-2 sources": (ONES, [["t1", "t2"]], ["t1c"], "sources must be a rank-1 tensor"),
    "rank-0 target": (ONES, ["t1", "t2"], "t1c", "target must be a rank-1 tensor"),
    "target count": (ONES, ["t1", "t2"], ["t1c"] * 3, "target must hold 1 or N contrast names"),
    "too small": (np.ones((2, 8, 16, 2), np.float32), ["t1", "t2"], ["t1c"], "height and width must be at least 16"),
    "NaN": (np.full((2, 16, 16, 2), np.nan, np.float32), ["t1", "t2"], ["t1c"], "NaN or infinite"),
    "all-zero contrast": (
        np.stack([np.arange(512, dtype=np.float32).reshape(2, 16, 16) + 1, np.zeros((2, 16, 16), np.float32)], -1),
        ["t1", "t2"],
        ["t1c"],
        "no nonzero (brain)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_COMPLETIONS))
def test_bad_completion_requests_fail_with_one_invalid_argument_naming_the_problem(complete, case):
    image, sources, target, message = BAD_COMPLETIONS[case]
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        complete(image=tf.constant(image), sources=tf.constant(sources), target=tf.constant(target))
    assert message in info.value.message


@pytest.mark.parametrize(
    "images, target, message",
    [
        ({"t1": np.ones((1, 16, 16)), "pd": np.ones((1, 16, 16))}, "t2", "unknown contrast 'pd'"),
        ({"t1": np.ones((1, 16, 16)), "T1N": np.ones((1, 16, 16))}, "t2", "contrast listed twice"),
        ({"t1": np.ones((1, 16, 16)), "t2w": np.ones((1, 16, 16))}, "t2", "target 't2' is among the inputs"),
        ({"t1": np.ones((1, 16, 16))}, "pd", "unknown contrast 'pd'"),
        ({"t1": np.ones((1, 16, 16)), "t2": np.ones((2, 16, 16))}, "t1c", "slices of one shape"),
        ({"t1": np.ones((16, 16))}, "t1c", r"\[N, H, W\]"),
        ({}, "t1c", "1 to 3 contrast names"),
        ({name: np.ones((1, 16, 16)) for name in CONTRASTS}, "t1c", "1 to 3 contrast names"),
        (np.ones((1, 16, 16, 2)), "t1c", "1 to 3 contrast names"),
    ],
)
def test_synthesizer_checks_completion_inputs_before_the_graph(synthesizer, images, target, message):
    with pytest.raises(TfsynthError, match=message):
        synthesizer.complete_raw(images, target)


def test_one_to_one_export_has_no_completion(tmp_path):
    tf.keras.utils.set_random_seed(0)
    model = UNetGenerator(filters=4, residual_blocks=0, intensity_bins=4)
    model((tf.zeros((1, SIZE, SIZE, 1)), tf.constant([0]), tf.constant([1])))
    synthesizer = load_synthesizer(write_saved_model(model, tmp_path / "saved_model", {"image_size": SIZE}))
    assert set(synthesizer._model.signatures) == {"serving_default", "synthesize_normalized", "model_info"}
    assert not synthesizer.completes and synthesizer.metadata.completion is False
    assert "complete" not in json.loads((tmp_path / "saved_model" / "metadata.json").read_text())["signatures"]
    with pytest.raises(TfsynthError, match="no completion signature"):
        synthesizer.complete_raw(volumes(("t1",)), "t2")


def test_metadata_completion_field_defaults_to_false_and_must_be_a_bool():
    assert ModelMetadata.from_dict({}).completion is False
    assert ModelMetadata.from_dict({"completion": True}).to_dict()["completion"] is True
    with pytest.raises(TfsynthError, match="completion must be true or false"):
        ModelMetadata.from_dict({"completion": "yes"})
