"""SavedModel export: in-graph preprocessing equals the Python pipeline, loads without tfsynth, atomic versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfsynth.commands.export import main
from tfsynth.contrasts import CONTRASTS
from tfsynth.data.normalize import crop_or_pad, percentile_normalize, undo_crop_or_pad
from tfsynth.errors import TfsynthError
from tfsynth.models.generator import StarGANGenerator
from tfsynth.savedmodel import contract
from tfsynth.savedmodel.export import export_run
from tfsynth.savedmodel.io import generator_from_saved_model, write_saved_model
from tfsynth.savedmodel.preprocessing import percentile
from tfsynth.synthesis.local import load_synthesizer
from tfsynth.training.presets import tiny

SIZE = 32


@pytest.fixture(scope="module")
def generator():
    tf.keras.utils.set_random_seed(1)
    model = StarGANGenerator(filters=8, residual_blocks=1)
    model((np.zeros((1, SIZE, SIZE, 1), np.float32), np.zeros((1,), np.int32)))
    return model


@pytest.fixture(scope="module")
def run_dir(generator, tmp_path_factory):
    """A minimal run directory: config.json + saved_model/ as training writes them."""
    run = tmp_path_factory.mktemp("run")
    config = tiny()  # 32 x 32 (SIZE), 8 filters, 1 residual block: the generator fixture's
    (run / "config.json").write_text(config.to_json())
    metadata = {  # the keys tfsynth.training.train passes
        "config": config.to_dict(),
        "training": {"steps": 2},
        "data": {"image_size": SIZE, "voxel_size_mm": 4.0},
        "evaluation": {"t1->t2": {"psnr": 20.5}},
    }
    write_saved_model(generator, run / "saved_model", metadata)
    return run


@pytest.fixture(scope="module")
def synthesizer(run_dir):
    return load_synthesizer(run_dir)


def volume(shape=(6, 20, 30), seed=0):
    """Slices of a fake skull-stripped volume: positive intensities inside, 0 outside."""
    rng = np.random.default_rng(seed)
    data = rng.gamma(2.0, 100.0, shape).astype(np.float32)
    data[:, :3] = 0
    data[:, :, -4:] = 0
    return data


def reference(generator, slices, label):
    """The pipeline in numpy + Keras: normalise the whole stack, pad to the canvas, run, crop, mask."""
    x01, _ = percentile_normalize(slices)
    h, w = slices.shape[1:]
    canvas = max(SIZE, -(-max(h, w) // 4) * 4)
    if h != w:  # the export pads H and W independently; square test inputs keep crop_or_pad applicable
        raise ValueError("use square slices")
    padded = crop_or_pad(x01, canvas)
    out = generator((padded[..., None] * 2 - 1, np.full(len(slices), CONTRASTS.index(label), np.int32))).numpy()[..., 0]
    out = np.clip((out + 1) / 2, 0, 1)
    return undo_crop_or_pad(out, (h, w)) * (slices != 0)


@pytest.mark.parametrize("size", [20, 32, 37])
def test_serving_default_equals_numpy_normalisation_and_keras_generator(generator, synthesizer, size):
    slices = volume((5, size, size), seed=size)
    got = synthesizer.synthesize_raw(slices, "t1", "t2")
    assert got.shape == slices.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, reference(generator, slices, "t2"), atol=1e-5)
    assert np.all(got[slices == 0] == 0)


def test_large_slices_with_background_borders_are_cropped_to_the_canvas(generator, synthesizer):
    """A 44x44 slice whose brain fits the 32x32 canvas runs on that canvas, as training slices did."""
    slices = np.zeros((2, 44, 44), np.float32)
    slices[:, 10:34, 8:36] = volume((2, 24, 28), seed=9)
    padded = np.zeros((2, 44, 44), np.float32)
    padded[:, 6:38, 6:38] = reference(generator, slices[:, 6:38, 6:38], "t1")
    np.testing.assert_allclose(synthesizer.synthesize_raw(slices, "flair", "t1"), padded, atol=1e-5)


def test_serving_default_equals_tfsynth_synthesize_on_a_volume(synthesizer):
    """The serving contract: a client sending a whole volume gets what `tfsynth synthesize` gives."""
    from tfsynth.synthesis.volumes import VolumeSynthesizer

    vol = np.zeros((40, 36, 7), np.float32)  # [X, Y, Z]; brain fits the 32x32 canvas
    vol[6:34, 5:31, 1:6] = np.random.default_rng(4).gamma(2.0, 80.0, (28, 26, 5))
    local = VolumeSynthesizer(synthesizer, batch_size=2).synthesize_volume(vol, "t1", ["flair", "t2"])  # both per call
    for target in ("flair", "t2"):
        served = np.moveaxis(synthesizer.synthesize_raw(np.moveaxis(vol, -1, 0), "t1", target), 0, -1)
        np.testing.assert_allclose(served, local[target], atol=1e-5)


def test_non_square_slices_pad_each_axis_and_crop_back(synthesizer):
    """18 x 41 slices (brain everywhere, so no crop) sit centrally on a 32 x 44 canvas: 7 rows of
    zeros above, 1 column left; the answer is the canvas' synthesis cut back to those pixels."""
    slices = volume((3, 18, 41))
    out = synthesizer.synthesize_raw(slices, "t1", "flair")
    assert out.shape == (3, 18, 41)
    x01, _ = percentile_normalize(slices)
    canvas = np.zeros((3, 32, 44), np.float32)
    canvas[:, 7:25, 1:42] = x01
    on_canvas = synthesizer.synthesize_normalized(canvas, "t1", ["flair"] * 3)
    np.testing.assert_allclose(out, on_canvas[:, 7:25, 1:42] * (slices != 0), atol=1e-5)


def test_in_graph_percentiles_match_numpy(synthesizer):
    """serving_default == synthesize_normalized(percentile_normalize(x)) masked: the normalisations agree."""
    slices = volume((4, 24, 24), seed=3)
    x01, _ = percentile_normalize(slices)
    via_numpy = synthesizer.synthesize_normalized(x01, "t1", ["t1c"] * 4) * (slices != 0)
    np.testing.assert_allclose(synthesizer.synthesize_raw(slices, "t1", "t1c"), via_numpy, atol=1e-6)


def test_aliases_and_case_map_to_the_same_contrast(synthesizer):
    slices = volume((2, 16, 16))
    t2 = synthesizer.synthesize_raw(slices, "t1", "t2")
    np.testing.assert_array_equal(synthesizer.synthesize_raw(slices, "t1", ["T2W", "t2"]), t2)
    flair = synthesizer.synthesize_raw(slices, "t1", "flair")
    np.testing.assert_array_equal(synthesizer.synthesize_raw(slices, "t1", "T2F"), flair)
    assert not np.allclose(t2, flair)


BAD_REQUESTS = {
    "unknown contrast": (np.ones((2, 16, 16), np.float32), ["t2", "pd"], "unknown target contrast name(s):] [pd]"),
    "wrong rank": (np.ones((16, 16), np.float32), ["t2"], "image must be a rank-3 tensor"),
    "rank-4 image": (np.ones((1, 16, 16, 1), np.float32), ["t2"], "image must be a rank-3 tensor"),
    "NaN": (np.full((1, 16, 16), np.nan, np.float32), ["t2"], "image contains NaN or infinite values"),
    "too small": (np.ones((1, 8, 16), np.float32), ["t2"], "height and width must be at least 16"),
    "target count": (np.ones((3, 16, 16), np.float32), ["t1", "t2"], "target must hold 1 or N contrast names"),
    "target rank": (np.ones((1, 16, 16), np.float32), [["t2"]], "target must be a rank-1 tensor"),
    "all zero": (np.zeros((1, 16, 16), np.float32), ["t2"], "no nonzero (brain) voxels"),
}


@pytest.fixture(scope="module")
def serving_default(run_dir):
    return tf.saved_model.load(str(run_dir / "saved_model")).signatures["serving_default"]


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_fail_with_invalid_argument_naming_the_problem(serving_default, case):
    image, target, message = BAD_REQUESTS[case]
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        serving_default(image=tf.constant(image), source=tf.constant(["t1"]), target=tf.constant(target))
    assert message in info.value.message


@pytest.mark.parametrize(
    "source, message",
    [
        (["pd"], "unknown source contrast name(s):] [pd]"),
        (["t1", "t2", "t1"], "source must hold 1 or N contrast names"),
        ([["t1"]], "source must be a rank-1 tensor"),
    ],
)
def test_bad_source_fails_with_invalid_argument_naming_it(serving_default, source, message):
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        serving_default(
            image=tf.constant(np.ones((2, 16, 16), np.float32)), source=tf.constant(source), target=tf.constant(["t2"])
        )
    assert message in info.value.message


def test_source_equal_to_target_returns_the_normalised_input(synthesizer):
    x01 = volume((2, 20, 24)) / 1000.0
    np.testing.assert_allclose(synthesizer.synthesize_normalized(x01, "t2", "t2"), x01, atol=1e-6)
    assert not np.allclose(synthesizer.synthesize_normalized(x01, "t1", "t2"), x01, atol=1e-3)


def test_synthesize_normalized_rejects_raw_intensities(synthesizer):
    with pytest.raises(TfsynthError, match=r"expects image values in \[0, 1\]"):
        synthesizer.synthesize_normalized(volume((1, 16, 16)), "t1", "t2")


def test_synthesizer_checks_inputs_before_the_graph(synthesizer):
    with pytest.raises(TfsynthError, match="unknown contrast 'pd'"):
        synthesizer.synthesize_raw(volume((1, 16, 16)), "t1", "pd")
    with pytest.raises(TfsynthError, match=r"\[N, H, W\]"):
        synthesizer.synthesize_raw(np.ones((16, 16)), "t1", "t2")


LOADERS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    path, inputs, out = sys.argv[1:]
    data = np.load(inputs)
    results = {}
    model = tf.saved_model.load(path)
    for name in ("serving_default", "synthesize_normalized"):
        fn = model.signatures[name]
        results["tf2_" + name] = fn(image=tf.constant(data[name]), source=tf.constant([b"t1"]), target=tf.constant([b"t2"]))["synthesized"].numpy()
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        for name in ("serving_default", "synthesize_normalized"):
            signature = meta.signature_def[name]
            feeds = {
                signature.inputs["image"].name: data[name],
                signature.inputs["source"].name: np.array([b"t1"]),
                signature.inputs["target"].name: np.array([b"t2"]),
            }
            results["tf1_" + name] = session.run(signature.outputs["synthesized"].name, feeds)
    assert not any(m.startswith("tfsynth") for m in sys.modules), "the SavedModel pulled in tfsynth"
    np.savez(out, **results)
    """
)


@pytest.fixture(scope="module")
def bf16_model(generator, tmp_path_factory):
    return write_saved_model(
        generator, tmp_path_factory.mktemp("bf16") / "saved_model", {"image_size": SIZE}, compute_dtype="bfloat16"
    )


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_saved_model_loads_without_tfsynth_in_tf2_and_tf1_session_loaders(
    generator, run_dir, bf16_model, tmp_path, precision
):
    model = run_dir / "saved_model" if precision == "float32" else bf16_model
    slices = volume((3, 24, 24), seed=5)
    x01, _ = percentile_normalize(slices)
    np.savez(tmp_path / "in.npz", serving_default=slices, synthesize_normalized=x01)
    script = tmp_path / "load.py"
    script.write_text(LOADERS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    subprocess.run(
        [sys.executable, str(script), str(model), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        check=True,
        cwd=tmp_path,  # not the repo: nothing importable as tfsynth by accident
        env=env,
        capture_output=True,
    )
    got = np.load(tmp_path / "out.npz")
    expected = reference(generator, slices, "t2")
    atol = 1e-5 if precision == "float32" else 0.05  # bfloat16 convolutions vs the float32 Keras model
    for loader in ("tf2", "tf1"):
        np.testing.assert_allclose(got[f"{loader}_serving_default"], expected, atol=atol)
        np.testing.assert_allclose(got[f"{loader}_synthesize_normalized"] * (slices != 0), expected, atol=atol)
    np.testing.assert_array_equal(got["tf1_serving_default"], got["tf2_serving_default"])


def psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def test_bfloat16_export_is_close_to_float32_and_metadata_records_the_precision(synthesizer, bf16_model):
    bf16 = load_synthesizer(bf16_model)
    slices = volume((4, 32, 32), seed=11)
    exact, fast = synthesizer.synthesize_raw(slices, "t1", "flair"), bf16.synthesize_raw(slices, "t1", "flair")
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    assert not np.array_equal(fast, exact)  # the convolutions really ran in bfloat16
    assert np.abs(fast - exact).max() < 0.05 and psnr(fast, exact) > 35
    precision = bf16.metadata.model["compute_precision"]
    assert bf16.metadata.model["exported_compute_dtype"] == precision["compute_dtype"] == "bfloat16"
    assert precision["instance_norm_statistics"] == precision["variables"] == "float32"
    assert synthesizer.metadata.model["compute_precision"]["compute_dtype"] == "float32"


def test_in_graph_percentile_equals_numpy_without_a_full_sort():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 199, 200, 201, 5000):
        for values in (rng.gamma(2, 100, n).astype(np.float32), np.round(rng.gamma(2, 2, n)).astype(np.float32)):
            for q in (0.5, 99.5):
                assert percentile(tf.constant(values), q).numpy() == np.percentile(values.astype(np.float64), q)


def test_metadata_states_the_contract(run_dir):
    meta = json.loads((run_dir / "saved_model" / "metadata.json").read_text())
    assert meta["contrasts"] == ["t1", "t1c", "t2", "flair"]
    assert meta["contrast_aliases"]["t2f"] == "flair"
    assert meta["image_size"] == SIZE and meta["voxel_size_mm"] == [4.0, 4.0, 4.0]
    assert meta["slice_orientation"] == "LPS" and meta["slice_axis"] == 2
    assert meta["intensity"]["normalization"]["low_percentile"] == 0.5
    assert meta["intensity"]["output_range"] == [0.0, 1.0]
    assert set(meta["signatures"]) == {"serving_default", "synthesize_normalized", "model_info"}
    assert set(meta["signatures"]["serving_default"]["inputs"]) == {"image", "source", "target"}
    assert meta["signatures"]["serving_default"]["outputs"]["synthesized"]["shape"] == ["N", "H", "W"]
    assert meta["training"]["config"]["data"]["image_size"] == SIZE
    assert meta["training"]["steps"] == 2
    assert meta["evaluation"] == {"t1->t2": {"psnr": 20.5}}
    assert meta["tensorflow_version"] == tf.__version__ and meta["tfsynth_version"]
    assert meta["model"]["exported_compute_dtype"] == "float32"


def test_the_export_is_the_declared_contract(run_dir):
    """Signatures, input names and dtypes, outputs and metadata.json all as the contract declares."""
    model = tf.saved_model.load(str(run_dir / "saved_model"))
    assert set(model.signatures) == {*contract.SIGNATURES, contract.INFO_SIGNATURE}
    for declared in contract.exported(completion=False):
        fn = model.signatures[declared.name]
        inputs = fn.structured_input_signature[1]
        assert {key: spec.dtype.name for key, spec in inputs.items()} == {
            key: tensor.dtype for key, tensor in declared.inputs.items()
        }
        assert set(fn.structured_outputs) == set(declared.outputs)
    meta = json.loads((run_dir / "saved_model" / "metadata.json").read_text())
    assert meta["signatures"] == contract.metadata_signatures(completion=False)


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_mixed_precision_generator_is_exported_in_the_requested_precision(tmp_path, compute_dtype):
    from tfsynth.models.precision import precision_scope

    with precision_scope("mixed_bfloat16"):
        bf16 = StarGANGenerator(filters=8, residual_blocks=1)
        bf16((np.zeros((1, 16, 16, 1), np.float32), np.zeros((1,), np.int32)))
    path = write_saved_model(bf16, tmp_path / "sm", {"image_size": 16}, compute_dtype=compute_dtype)
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["model"]["trained_compute_dtype"] == "bfloat16"
    assert meta["model"]["exported_compute_dtype"] == compute_dtype
    x01 = np.random.default_rng(0).uniform(0, 1, (2, 16, 16)).astype(np.float32)
    served = load_synthesizer(path).synthesize_normalized(x01, "flair", "t1")
    keras_out = (bf16((x01[..., None] * 2 - 1, np.zeros(2, np.int32))).numpy()[..., 0] + 1) / 2
    np.testing.assert_allclose(served, np.clip(keras_out, 0, 1), atol=0.03)  # bf16 vs float32 arithmetic


def test_write_saved_model_rejects_unknown_precision(generator, tmp_path):
    with pytest.raises(TfsynthError, match="precision 'float16' is not one of float32, bfloat16"):
        write_saved_model(generator, tmp_path / "sm", {}, compute_dtype="float16")
    assert not (tmp_path / "sm").exists()


def test_export_run_precision_rebuilds_the_generator_from_the_saved_model(generator, run_dir, synthesizer, tmp_path):
    rebuilt = generator_from_saved_model(run_dir / "saved_model")
    for ours, theirs in zip(rebuilt.get_weights(), generator.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    base = tmp_path / "models"
    assert main([str(run_dir), "--base-path", str(base), "--precision", "bfloat16"]) == 0
    version = base / "tfsynth" / "1"
    meta = json.loads((version / "metadata.json").read_text())
    assert meta["model"]["compute_precision"]["compute_dtype"] == "bfloat16"
    assert meta["serving"]["version"] == 1 and meta["evaluation"] == {"t1->t2": {"psnr": 20.5}}
    slices = volume((2, 32, 32), seed=12)
    exact = synthesizer.synthesize_raw(slices, "t1", "t1c")
    np.testing.assert_allclose(load_synthesizer(version).synthesize_raw(slices, "t1", "t1c"), exact, atol=0.05)
    same = export_run(run_dir, base, precision="float32")  # the run's own precision: a plain copy
    np.testing.assert_array_equal(load_synthesizer(same).synthesize_raw(slices, "t1", "t1c"), exact)
    with pytest.raises(TfsynthError, match="precision"):
        export_run(run_dir, base, precision="int8")


def test_export_run_writes_numbered_versions_atomically(run_dir, tmp_path):
    base = tmp_path / "models"
    first = export_run(run_dir, base)
    second = export_run(run_dir, base)
    assert (first.name, second.name) == ("1", "2")
    assert export_run(run_dir, base, version=7).name == "7"
    assert export_run(run_dir, base).name == "8"
    assert sorted(p.name for p in (base / "tfsynth").iterdir()) == ["1", "2", "7", "8"]  # no .tmp-* leftovers
    meta = json.loads((second / "metadata.json").read_text())
    assert meta["serving"]["version"] == 2 and meta["serving"]["model_name"] == "tfsynth"
    assert load_synthesizer(base / "tfsynth").path.name == "8"


def test_export_run_errors(run_dir, tmp_path):
    base = tmp_path / "models"
    export_run(run_dir, base, version=3)
    with pytest.raises(TfsynthError, match="already exists; versions are immutable"):
        export_run(run_dir, base, version=3)
    with pytest.raises(TfsynthError, match="positive integer"):
        export_run(run_dir, base, version=0)
    with pytest.raises(TfsynthError, match="no exported model"):
        export_run(tmp_path / "empty-run", base)
    with pytest.raises(TfsynthError, match="model name"):
        export_run(run_dir, base, name="../evil")


def test_export_cli(run_dir, tmp_path, capsys):
    base = tmp_path / "models"
    assert main([str(run_dir), "--base-path", str(base), "--name", "synth"]) == 0
    assert capsys.readouterr().out.strip() == str(base / "synth" / "1")
    assert main([str(run_dir), "--base-path", str(base), "--name", "synth", "--version", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere"), "--base-path", str(base)]) == 2
    assert "error: " in capsys.readouterr().err


def test_write_saved_model_refuses_to_overwrite_other_directories(generator, tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep")
    with pytest.raises(TfsynthError, match="not a SavedModel"):
        write_saved_model(generator, tmp_path / "precious", {})
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep"


def test_load_synthesizer_rejects_paths_without_a_model(tmp_path):
    with pytest.raises(TfsynthError, match="no SavedModel found"):
        load_synthesizer(tmp_path)
    with pytest.raises(TfsynthError, match="no such file"):
        load_synthesizer(tmp_path / "missing")


def test_concurrent_export_taking_the_same_version_is_a_clear_error(run_dir, tmp_path, monkeypatch):
    import shutil

    import tfsynth.savedmodel.export as export_module

    real_copytree = shutil.copytree

    theirs = tmp_path / "models" / "tfsynth" / "1"

    def copy_while_another_export_lands(*args, **kwargs):
        if not theirs.exists():  # the other export's rename lands mid-copy
            theirs.mkdir(parents=True)
            (theirs / "saved_model.pb").write_text("theirs")
        return real_copytree(*args, **kwargs)

    monkeypatch.setattr(export_module.shutil, "copytree", copy_while_another_export_lands)
    with pytest.raises(TfsynthError, match="appeared while exporting"):
        export_run(run_dir, tmp_path / "models")
    model_dir = tmp_path / "models" / "tfsynth"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1"]  # ours cleaned up, theirs untouched
    assert (model_dir / "1" / "saved_model.pb").read_text() == "theirs"


def test_corrupt_metadata_is_a_clear_error(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(run_dir / "saved_model", copy)
    (copy / "metadata.json").write_text("{truncated")
    with pytest.raises(TfsynthError, match="metadata.json: not valid JSON"):
        load_synthesizer(copy)
