"""metadata.json: one schema; every reader accepts what the writer writes (e.g. voxel_size_mm as a list)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfsynth.errors import TfsynthError
from tfsynth.savedmodel.metadata import ModelMetadata, read_metadata, write_metadata
from tfsynth.synthesis.volumes import VolumeSynthesizer


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    """A tiny generator exported with the metadata `tfsynth.training.train` gives it (voxel size as a list)."""
    import tensorflow as tf

    from tfsynth.config import Config
    from tfsynth.models.generator import StarGANGenerator
    from tfsynth.savedmodel.io import write_saved_model

    tf.keras.utils.set_random_seed(0)
    generator = StarGANGenerator(filters=8, residual_blocks=1)
    generator((tf.zeros([1, 32, 32, 1]), tf.zeros([1], tf.int32)))
    run = tmp_path_factory.mktemp("run")
    metadata = {
        "config": Config().to_dict(),
        "training": {"steps": 3, "replicas": 1, "seconds": 1.0},
        "validation": {"val_psnr": 20.0},
        "data": {"image_size": 32, "voxel_size_mm": [4.0, 4.0, 4.0]},
    }
    write_saved_model(generator, run / "saved_model", metadata)
    return run


def test_every_reader_accepts_what_the_writer_writes(trained_like, phantom_cohort, tmp_path):
    from tfsynth.commands import synthesize
    from tfsynth.savedmodel.export import export_run
    from tfsynth.savedmodel.io import generator_from_saved_model
    from tfsynth.synthesis.local import load_synthesizer

    saved = trained_like / "saved_model"
    meta = read_metadata(saved)
    assert meta.voxel_size_mm == [4.0, 4.0, 4.0] and meta.image_size == 32 and meta.slice_orientation == "LPS"
    assert meta.extra["validation"] == {"val_psnr": 20.0} and meta.training["steps"] == 3
    assert ModelMetadata.from_dict(json.loads((saved / "metadata.json").read_text())) == meta
    assert load_synthesizer(trained_like).metadata == meta
    engine = VolumeSynthesizer(load_synthesizer(trained_like))
    assert engine.image_size == 32 and engine.metadata.voxel_size_mm == [4.0, 4.0, 4.0]
    version = export_run(trained_like, tmp_path / "models")
    served = read_metadata(version)
    assert served.serving["version"] == 1 and served.model_version == "tfsynth v1"
    assert served.voxel_size_mm == meta.voxel_size_mm
    assert load_synthesizer(tmp_path / "models" / "tfsynth").metadata.serving["version"] == 1
    rebuilt = generator_from_saved_model(version)  # reads model.config and model.class
    assert type(rebuilt).__name__ == meta.model["class"] and rebuilt.get_config()["filters"] == 8
    source = sorted(phantom_cohort.glob("*/*-t1n.nii.gz"))[0]
    out = tmp_path / "out"
    argv = ["--model", str(version), "--source", "t1", "--target", "t2", "--out", str(out), "--quiet", str(source)]
    assert synthesize.main(argv) == 0
    assert len(list(out.iterdir())) == 1


def test_schema_reads_old_and_scalar_forms_and_refuses_wrong_values(tmp_path):
    assert ModelMetadata.from_dict({"voxel_size_mm": 3}).voxel_size_mm == [3.0, 3.0, 3.0]
    assert ModelMetadata.from_dict({}).slice_orientation == "LPS"  # written before the key existed
    bad = {
        "voxel_size_mm": ["3", 3, 3],
        "image_size": 0,
        "slice_orientation": "LLS",
        "format": "monai-bundle",
        "format_version": 99,
        "contrasts": ["t1", "t2"],
        "model": [],
        "slice_axis": 0,
    }
    for key, value in bad.items():
        with pytest.raises(TfsynthError, match=f"^where: .*{key}"):
            ModelMetadata.from_dict({key: value}, "where")
    with pytest.raises(TfsynthError, match="voxel_size_mm must be three positive numbers"):
        ModelMetadata.from_dict({"voxel_size_mm": [3.0, 3.0]})
    with pytest.raises(TfsynthError, match="expected a JSON object"):
        ModelMetadata.from_dict([1, 2])
    write_metadata(tmp_path, {"voxel_size_mm": 2, "image_size": 64, "custom": {"a": 1}})
    document = json.loads((tmp_path / "metadata.json").read_text())
    assert document["voxel_size_mm"] == [2.0, 2.0, 2.0] and document["custom"] == {"a": 1}
    assert read_metadata(tmp_path).to_dict() == document
    with pytest.raises(TfsynthError, match="metadata.json: not found"):
        read_metadata(tmp_path / "nothing")
    assert read_metadata(tmp_path / "nothing", required=False) == ModelMetadata()
    assert np.isclose(read_metadata(tmp_path).voxel_size_mm[0], 2.0)


def test_exports_of_the_previous_format_keep_loading(trained_like, tmp_path):
    """Format 2 (tfsynth 0.1): no model_info signature, the StarGAN reference's class named "Generator"."""
    import shutil

    from tfsynth.savedmodel.io import generator_from_saved_model
    from tfsynth.synthesis.local import load_synthesizer

    old = tmp_path / "old"
    shutil.copytree(trained_like / "saved_model", old)
    document = json.loads((old / "metadata.json").read_text())
    document["format_version"] = 2
    document["model"]["class"] = "Generator"
    (old / "metadata.json").write_text(json.dumps(document))
    assert read_metadata(old).format_version == 2
    assert type(generator_from_saved_model(old)).__name__ == "StarGANGenerator"
    assert load_synthesizer(old).metadata.image_size == 32
