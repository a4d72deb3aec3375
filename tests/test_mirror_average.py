"""The serving graph's test-time mirror average: what it computes, and when training asks for it."""

from __future__ import annotations

import types

import numpy as np
import pytest
from helpers import small_any_subset_unet

from tfsynth.config import Config
from tfsynth.data.manifest import training_flip_axis
from tfsynth.errors import TfsynthError
from tfsynth.savedmodel import io as savedmodel_io
from tfsynth.savedmodel.io import write_saved_model
from tfsynth.savedmodel.metadata import ModelMetadata, read_metadata
from tfsynth.synthesis.local import load_synthesizer
from tfsynth.training import train as train_module

SIZE = 32


@pytest.fixture(scope="module")
def generator():
    model = small_any_subset_unet(7, SIZE)
    return model


@pytest.fixture(scope="module")
def exports(generator, tmp_path_factory):
    """The same generator exported without a mirror average and with one along each slice axis."""
    root = tmp_path_factory.mktemp("mirror")
    return {
        axis: load_synthesizer(
            write_saved_model(generator, root / f"axis{axis}", {"image_size": SIZE, "mirror_average_axis": axis})
        )
        for axis in (None, 0, 1)
    }


def volume(rng, shape):
    """Raw slices with a zero border; H and W leave an even margin to the 32 canvas, so the
    central padding is symmetric and mirroring the request equals mirroring the canvas."""
    data = rng.gamma(2.0, 100.0, shape).astype(np.float32)
    data[:, :2] = 0
    data[:, :, -3:] = 0
    return data


@pytest.mark.parametrize("axis", [0, 1])
def test_answer_is_the_mean_of_the_answers_on_the_slice_and_its_mirror(exports, axis):
    slices = volume(np.random.default_rng(axis), (11, 20, 30))  # 11 slices: two chunks of the graph
    plain = exports[None]

    def mirrored(x):
        return np.flip(x, axis=1 + axis)

    expected = 0.5 * (
        plain.synthesize_raw(slices, "t1", "flair") + mirrored(plain.synthesize_raw(mirrored(slices), "t1", "flair"))
    )
    averaged = exports[axis].synthesize_raw(slices, "t1", "flair")
    np.testing.assert_allclose(averaged, expected, atol=2e-6)
    # The generator is not mirror-symmetric, so the average is a different answer.
    assert np.abs(averaged - plain.synthesize_raw(slices, "t1", "flair")).max() > 1e-3
    assert exports[axis].metadata.mirror_average_axis == axis and plain.metadata.mirror_average_axis is None


def test_completion_averages_its_mirror_too(exports):
    rng = np.random.default_rng(3)
    images = {"t1": volume(rng, (3, 20, 30)), "t2": volume(rng, (3, 20, 30))}
    plain = exports[None]
    expected = 0.5 * (
        plain.complete_raw(images, "flair")
        + np.flip(plain.complete_raw({k: np.flip(v, 1) for k, v in images.items()}, "flair"), 1)
    )
    np.testing.assert_allclose(exports[0].complete_raw(images, "flair"), expected, atol=2e-6)


def test_precision_re_export_keeps_the_mirror_average(exports, tmp_path):
    from tfsynth.savedmodel.export import export_run

    version = export_run(exports[0].path, tmp_path, precision="bfloat16")
    assert read_metadata(version).mirror_average_axis == 0


@pytest.mark.parametrize("value", [2, -1, True, "0"])
def test_metadata_refuses_another_axis(value):
    with pytest.raises(TfsynthError, match="mirror_average_axis must be 0, 1 or null"):
        ModelMetadata.from_dict({"mirror_average_axis": value})


def test_training_flips_along_the_manifests_left_right_axis():
    assert [training_flip_axis({"lr_axis": axis}, True) for axis in (0, 1, None)] == [0, 1, None]
    assert training_flip_axis({"lr_axis": 0}, False) is None


@pytest.mark.parametrize(
    ("flip", "export_mirror_average", "expected"), [(True, True, 1), (False, True, None), (True, False, None)]
)
def test_a_run_exports_the_average_only_along_the_axis_it_flipped(
    generator, tmp_path, monkeypatch, flip, export_mirror_average, expected
):
    """What train hands the exporter; that the exporter builds the graph the key names is
    `test_answer_is_the_mean_of_the_answers_on_the_slice_and_its_mirror`'s job."""
    written = []
    monkeypatch.setattr(savedmodel_io, "write_saved_model", lambda model, path, metadata: written.append(metadata))
    config = Config.from_dict({"data": {"image_size": SIZE, "flip": flip}})
    config.train.export_mirror_average = export_mirror_average
    manifest = {"image_size": SIZE, "lr_axis": 1}
    summary = {"steps": 1, "replicas": 1, "seconds": 1.0, "exported": {"epoch": 1}, "final": {}}
    gan = types.SimpleNamespace(generator=generator)
    train_module._export(gan, tmp_path, config, manifest, summary, log=print)
    assert ModelMetadata.from_dict(written[0]).mirror_average_axis == expected
