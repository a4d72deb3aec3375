"""Completion end to end with a real exported any-subset generator: locally, served, evaluated."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf
from dev_rest_gateway import RestDevModelServer

from tfsynth.clients.dev_servicer import ModelEntry
from tfsynth.clients.grpc_client import ServingError, SynthesisClient
from tfsynth.clients.rest_client import RestSynthesisClient
from tfsynth.commands import evaluate, synthesize
from tfsynth.commands.request import main as request_main
from tfsynth.contrasts import CONTRASTS
from tfsynth.models.generator import UNetGenerator
from tfsynth.savedmodel.io import write_saved_model
from tfsynth.synthesis.local import load_synthesizer


@pytest.fixture(scope="module")
def completion_model(tmp_path_factory):
    """A tiny untrained any-subset generator exported with a 64x64 canvas, in TF Serving's layout."""
    tf.keras.utils.set_random_seed(5)
    generator = UNetGenerator(filters=8, residual_blocks=1, any_subset=True)
    generator({"images": tf.zeros((1, 64, 64, 4)), "available": tf.ones((1, 4)), "target": tf.zeros((1,), tf.int32)})
    root = tmp_path_factory.mktemp("completion_model")
    write_saved_model(generator, root / "tfsynth" / "1", {"image_size": 64})
    return root / "tfsynth"


@pytest.fixture(scope="module")
def brasyn_dir(phantom_cohort, tmp_path_factory):
    """The phantom cohort with one contrast removed from each case (a different one each)."""
    root = tmp_path_factory.mktemp("brasyn") / "in"
    shutil.copytree(phantom_cohort, root)
    for folder, suffix in zip(
        sorted(p for p in root.iterdir() if p.is_dir()), ("t2f", "t1c", "t1n", "t2w"), strict=True
    ):
        next(folder.glob(f"*-{suffix}.nii.gz")).unlink()
    return root


@pytest.fixture(scope="module")
def local_outputs(completion_model, brasyn_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("completed")
    assert (
        synthesize.main(["--complete", str(brasyn_dir), "--model", str(completion_model), "--out", str(out), "--quiet"])
        == 0
    )
    return out


def test_local_completion_writes_each_missing_contrast(local_outputs, brasyn_dir, completion_model):
    folders = sorted(p for p in brasyn_dir.iterdir() if p.is_dir())
    assert sorted(p.name for p in local_outputs.iterdir()) == sorted(
        f"{f.name}-{s}.nii.gz" for f, s in zip(folders, ("t2f", "t1c", "t1n", "t2w"), strict=True)
    )
    written = nib.load(local_outputs / f"{folders[0].name}-t2f.nii.gz")
    reference = nib.load(next(folders[0].glob("*-t1n.nii.gz")))
    assert written.shape == reference.shape and np.allclose(written.affine, reference.affine)
    data = np.asarray(written.dataobj)
    brain = np.any([np.asarray(nib.load(p).dataobj) != 0 for p in folders[0].glob("*-t[12]*.nii.gz")], axis=0)
    assert data.min() >= 0 and data.max() <= 1 and data[brain].std() > 0
    assert np.all(data[~brain] == 0)
    assert load_synthesizer(completion_model).metadata.completion


def test_served_completion_equals_local(completion_model, brasyn_dir, local_outputs, tmp_path, capsys):
    case = sorted(p for p in brasyn_dir.iterdir() if p.is_dir())[1]  # lacks t1c
    with RestDevModelServer([ModelEntry("tfsynth", completion_model)], rest_port=0) as server:
        with SynthesisClient(server.address, timeout=60, retries=0) as client:
            x = np.random.default_rng(0).uniform(0, 100, (2, 32, 32)).astype(np.float32)
            with pytest.raises(ServingError) as info:
                client.complete({"t1": x, "t2": x}, "t2")
            assert info.value.code == "INVALID_ARGUMENT"
        # The model's voxel size as a user reads it from the export's metadata.json (none recorded:
        # the volume goes at its own, as synthesize --complete then does).
        size = load_synthesizer(completion_model).metadata.voxel_size_mm
        voxel = ["--voxel-size", *map(str, size)] if size else ["--no-resample"]
        grpc = ["--address", server.address, "--complete", str(case), str(tmp_path / "grpc"), *voxel]
        assert request_main(grpc) == 0
        rest = ["--address", server.rest_address, "--rest", "--complete", str(case), str(tmp_path / "rest"), *voxel]
        assert request_main(rest) == 0
        with RestSynthesisClient(server.rest_address, timeout=60, retries=0) as client:
            local = load_synthesizer(completion_model).complete_normalized({"t1": x / 100, "t2": x / 100}, "flair")
            served = client.complete({"t1": x / 100, "t2": x / 100}, "flair", normalized=True)
            np.testing.assert_allclose(served, local, atol=1e-5)
    name = f"{case.name}-t1c.nii.gz"
    expected = np.asarray(nib.load(local_outputs / name).dataobj)
    for folder in ("grpc", "rest"):
        np.testing.assert_allclose(np.asarray(nib.load(tmp_path / folder / name).dataobj), expected, atol=1e-4)


def test_brasyn_evaluation_with_the_export(completion_model, prepared_data, tmp_path):
    out = tmp_path / "report"
    argv = ["--model", str(completion_model), "--data", str(prepared_data), "--out", str(out), "--quiet"]
    assert evaluate.main([*argv, "--protocol", "brasyn", "--input-sizes", "1", "3"]) == 0
    assert "| 1 input(s) | 3 input(s) |" in (out / "summary.md").read_text()
    # Every contrast scored from one and from three inputs, for the model and the linear regression.
    by_size = json.loads((out / "summary.json").read_text())["summary"]["by_size"]
    for method in ("model", "linear"):
        assert set(by_size[method]) == set(CONTRASTS), method
        cells = [cell for target in by_size[method].values() for size in ("1", "3") for cell in target[size].values()]
        assert cells and all(np.isfinite(cell["mean"]) for cell in cells)


def test_brasyn_evaluation_on_new_subjects_with_the_training_cohorts_linear_baseline(
    completion_model, prepared_data, tmp_path
):
    """docs/completion.md's held-out path: new phantom subjects prepared as a test split alone,
    scored against the linear regression an evaluation on the training cohort wrote."""
    from tfsynth.commands import phantom as phantom_command
    from tfsynth.commands import prepare as prepare_command

    first = tmp_path / "report"
    model = ["--model", str(completion_model), "--quiet", "--protocol", "brasyn", "--input-sizes", "3"]
    assert evaluate.main([*model, "--data", str(prepared_data), "--out", str(first)]) == 0
    assert (
        phantom_command.main([str(tmp_path / "heldout"), "--subjects", "2", "--seed", "101", "--voxel-size", "4"]) == 0
    )
    held = tmp_path / "heldout-prepared"
    assert prepare_command.main([str(tmp_path / "heldout"), str(held), "--split", "0", "0", "2", "--quiet"]) == 0
    baseline = first / "linear_baseline.json"
    argv = [*model, "--data", str(held), "--baseline", str(baseline), "--out", str(tmp_path / "heldout-report")]
    assert evaluate.main(argv) == 0
    text = (tmp_path / "heldout-report" / "summary.md").read_text()
    assert "2 patients" in text and str(baseline) in text


def test_a_model_without_completion_is_refused(tiny_saved_model, brasyn_dir, tmp_path, capsys):
    argv = ["--complete", str(brasyn_dir), "--model", str(tiny_saved_model(32)), "--out", str(tmp_path / "o")]
    assert synthesize.main(argv) == 2
    assert "no completion signature" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
