"""tf.data pipelines: element structure, ranges, valid random pairs, flips, determinism, eval pairs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from test_brats import write_case

from tfsynth.data.manifest import load_manifest
from tfsynth.data.pipeline import label_weight_table, make_dataset, make_eval_dataset
from tfsynth.data.preparation import prepare
from tfsynth.data.tfrecord import parse_example
from tfsynth.errors import TfsynthError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """3 training cases: all four contrasts; T1 + FLAIR only; T2 only (its slices are dropped)."""
    src = tmp_path_factory.mktemp("src")
    write_case(src, "BraTS-GLI-00000-000", seed=0)
    write_case(src, "BraTS-GLI-00001-000", contrasts=("t1", "flair"), seed=1)
    write_case(src, "BraTS-GLI-00002-000", contrasts=("t2",), seg=False, seed=2)
    write_case(src, "BraTS-GLI-00003-000", seed=3)
    out = tmp_path_factory.mktemp("prep") / "data"
    prepare(src, out, split=(3, 0, 1), seed=0, shard_slices=8)
    return out


def records(prepared, split="train"):
    files = sorted(str(p) for p in prepared.glob(f"{split}-*.tfrecord"))
    return [{k: v.numpy() for k, v in parse_example(r).items()} for r in tf.data.TFRecordDataset(files)]


def as_numpy(ds, n):
    return [tf.nest.map_structure(lambda t: t.numpy(), el) for el in ds.take(n)]


def test_training_elements(prepared):
    ds = make_dataset(prepared, "train", batch_size=4, flip=False, seed=1, deterministic=True)
    spec = ds.element_spec
    assert spec[0]["image"] == tf.TensorSpec([4, 32, 32, 1], tf.float32)
    assert spec[0]["source"] == tf.TensorSpec([4], tf.int32) and spec[0]["target"] == tf.TensorSpec([4], tf.int32)
    assert spec[1] == tf.TensorSpec([4, 32, 32, 1], tf.float32)
    rows = records(prepared)
    usable = [r for r in rows if r["present"].sum() >= 2]
    seen = set()
    for inputs, target_image in as_numpy(ds, 30):  # 120 examples: more than one pass, so it repeats
        assert inputs["image"].min() >= -1 and inputs["image"].max() <= 1 and target_image.min() >= -1
        for image, s, t, timg in zip(inputs["image"], inputs["source"], inputs["target"], target_image, strict=True):
            assert s != t
            # The pair comes from one stored slice in which both contrasts are present.
            match = [
                r
                for r in usable
                if r["present"][s]
                and r["present"][t]
                and np.array_equal(image[..., 0], r["images"][..., s] * 2 - 1)
                and np.array_equal(timg[..., 0], r["images"][..., t] * 2 - 1)
            ]
            assert match, (s, t)
            seen.add((int(s), int(t)))
    assert len(seen) == 12  # every ordered pair occurs
    assert not any(r["present"].sum() >= 2 for r in rows if r["case_id"] == b"BraTS-GLI-00002-000")


def test_deterministic_mode_is_reproducible(prepared):
    def run(seed):
        return as_numpy(make_dataset(prepared, batch_size=8, seed=seed, deterministic=True), 6)

    a, b, c = run(5), run(5), run(6)
    for x, y in zip(a, b, strict=True):
        tf.nest.map_structure(np.testing.assert_array_equal, x, y)
    assert any(not np.array_equal(x[0]["image"], z[0]["image"]) for x, z in zip(a, c, strict=True))


def test_flips_along_the_left_right_axis(prepared):
    assert load_manifest(prepared)["lr_axis"] == 0  # the affine's x axis is the slice's axis 0
    t1 = [r["images"][..., 0] * 2 - 1 for r in records(prepared) if r["present"][0]]
    plain = {x.tobytes() for x in t1}
    flipped = {np.flip(x, axis=0).tobytes() for x in t1}
    n_plain = n_flipped = 0
    for inputs, _ in as_numpy(make_dataset(prepared, batch_size=8, flip=True, seed=2, deterministic=True), 10):
        for image, s in zip(inputs["image"], inputs["source"], strict=True):
            if s == 0:
                key = image[..., 0].tobytes()
                n_plain += key in plain
                n_flipped += key in flipped and key not in plain
    assert n_plain > 0 and n_flipped > 0


def test_validation_mode_is_finite_fixed_and_keeps_remainder(prepared):
    usable = sum(r["present"].sum() >= 2 for r in records(prepared, "test"))
    ds = make_dataset(prepared, "test", batch_size=5, training=False)
    a, b = as_numpy(ds, -1), as_numpy(ds, -1)
    assert sum(len(x["source"]) for x, _ in a) == usable and usable % 5
    for x, y in zip(a, b, strict=True):
        tf.nest.map_structure(np.testing.assert_array_equal, x, y)


def test_eval_dataset_yields_every_pair_with_masks(prepared):
    rows = records(prepared, "test")
    expected = sum(int(r["present"].sum()) * (int(r["present"].sum()) - 1) for r in rows)
    ds = make_eval_dataset(prepared, "test", batch_size=16)
    inputs_spec, targets_spec = ds.element_spec
    assert targets_spec["brain"].dtype == tf.uint8 and targets_spec["brain"].shape[1:] == (32, 32, 1)
    elements = as_numpy(ds, -1)
    assert sum(len(x["source"]) for x, _ in elements) == expected == 12 * len(rows)
    x, y = elements[0]
    first = rows[0]
    assert list(zip(x["source"][:12], x["target"][:12], strict=True)) == [
        (s, t) for s in range(4) for t in range(4) if s != t
    ]
    np.testing.assert_array_equal(y["target_image"][0, ..., 0], first["images"][..., 1] * 2 - 1)
    np.testing.assert_array_equal(y["brain"][0, ..., 0], first["brain"])
    np.testing.assert_array_equal(y["tumor"][0, ..., 0], first["tumor"])
    assert y["case_id"][0] == first["case_id"] and y["slice_index"][0] == first["slice_index"]
    only = as_numpy(make_eval_dataset(prepared, "test", batch_size=64, pairs=[("T1", "t2f")]), -1)
    assert sum(len(x["source"]) for x, _ in only) == len(rows)
    assert {(int(s), int(t)) for x, _ in only for s, t in zip(x["source"], x["target"], strict=True)} == {(0, 3)}


def test_pipeline_errors(prepared, tmp_path):
    with pytest.raises(TfsynthError, match="split 'val' .* is empty"):
        make_dataset(prepared, "val")
    with pytest.raises(TfsynthError, match="unknown split 'dev'"):
        make_eval_dataset(prepared, "dev")
    with pytest.raises(TfsynthError, match="not a prepared directory"):
        make_dataset(tmp_path)
    with pytest.raises(TfsynthError, match="different source and target"):
        make_eval_dataset(prepared, "test", pairs=[("t1", "t1n")])


def test_distributes_over_two_replicas(prepared, two_cpu_strategy):
    strategy = two_cpu_strategy
    dist = strategy.experimental_distribute_dataset(make_dataset(prepared, batch_size=4, seed=0))
    inputs, target = next(iter(dist))
    assert [t.shape[0] for t in strategy.experimental_local_results(target)] == [2, 2]


def test_phantom_cohort_end_to_end(prepared_data):
    manifest = load_manifest(prepared_data)
    assert manifest["image_size"] == 32 and [len(manifest["splits"][s]["cases"]) for s in manifest["splits"]] == [
        2,
        1,
        1,
    ]
    inputs, target = next(iter(make_dataset(prepared_data, batch_size=4, seed=0)))
    assert inputs["image"].shape == target.shape == (4, 32, 32, 1)
    assert np.all(inputs["source"].numpy() != inputs["target"].numpy())
    assert float(tf.reduce_max(target)) > 0.5 and float(tf.reduce_min(target)) == -1.0


def test_split_without_any_pair_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "src"
    write_case(src, "BraTS-GLI-00000-000", seed=0)
    write_case(src, "BraTS-GLI-00001-000", contrasts=("t2",), seg=False, seed=1)
    out = tmp_path / "data"
    prepare(src, out, split=(1, 1, 0), seed=0)
    assert "only 1 contrast" in capsys.readouterr().err
    val_case = load_manifest(out)["splits"]["val"]["cases"]
    assert val_case == ["BraTS-GLI-00001-000"] or val_case == ["BraTS-GLI-00000-000"]
    single = "val" if val_case == ["BraTS-GLI-00001-000"] else "train"
    with pytest.raises(TfsynthError, match=f"split '{single}' .* no case with two or more contrasts"):
        make_dataset(out, single, batch_size=2, training=False)


def stored_present(rows, images):
    """``present`` of the stored slice that ``images`` [S, S, 4] in [-1, 1] is (unflipped)."""
    match = [r["present"] for r in rows if np.array_equal(r["images"] * 2 - 1, images)]
    assert len(match) >= 1
    return match[0]


def subset_examples(prepared, sizes, n=30, seed=1):
    ds = make_dataset(prepared, "train", batch_size=4, flip=False, seed=seed, deterministic=True, subset_sizes=sizes)
    for inputs, target_image in as_numpy(ds, n):
        yield from zip(inputs["images"], inputs["available"], inputs["target"], target_image, strict=True)


def test_any_subset_elements_draw_a_present_target_and_present_inputs_besides_it(prepared):
    ds = make_dataset(
        prepared, "train", batch_size=4, flip=False, seed=1, deterministic=True, subset_sizes=[0.4, 0.3, 0.3]
    )
    assert ds.element_spec[0] == {
        "images": tf.TensorSpec([4, 32, 32, 4], tf.float32),
        "available": tf.TensorSpec([4, 4], tf.float32),
        "target": tf.TensorSpec([4], tf.int32),
    }
    rows = records(prepared)
    sizes, targets = set(), set()
    for images, available, target, target_image in subset_examples(prepared, [0.4, 0.3, 0.3]):
        present = stored_present(rows, images)
        assert available[target] == 0 and present[target]
        assert set(np.flatnonzero(available)) <= set(np.flatnonzero(present))
        np.testing.assert_array_equal(target_image[..., 0], images[..., target])
        sizes.add((int(present.sum()), int(available.sum())))
        targets.add(int(target))
    # Four contrasts present: 1, 2 or 3 inputs; two present (T1 + FLAIR): always the other one.
    assert {(4, 1), (4, 2), (4, 3), (2, 1)} == sizes and targets == {0, 1, 2, 3}


@pytest.mark.parametrize("sizes, expected", [([1, 0, 0], {(4, 1), (2, 1)}), ([0, 0, 1], {(4, 3), (2, 1)})])
def test_subset_sizes_set_how_many_inputs_and_are_capped_by_the_present_contrasts(prepared, sizes, expected):
    rows = records(prepared)
    seen = set()
    for images, available, _, _ in subset_examples(prepared, sizes, n=12):
        seen.add((int(stored_present(rows, images).sum()), int(available.sum())))
    assert seen == expected


def test_any_subset_stream_is_reproducible_and_checks_its_sizes(prepared):
    a, b = (list(subset_examples(prepared, [0.5, 0.25, 0.25], n=4, seed=3)) for _ in range(2))
    for x, y in zip(a, b, strict=True):
        tf.nest.map_structure(np.testing.assert_array_equal, x, y)
    with pytest.raises(TfsynthError, match="subset_sizes"):
        make_dataset(prepared, subset_sizes=[0.5, 0.6, -0.1])


@pytest.mark.parametrize("subset_sizes", [None, [0.4, 0.3, 0.3]])
def test_tumor_weight_adds_a_weight_map_that_follows_its_slice_and_flip(prepared, subset_sizes):
    """Each tumour label's own weight (necrotic core, edema, enhancing tumour: 2, 3, 5 here) where
    the stored slice's segmentation has that label, 1 elsewhere, flipped with the images; the draws
    themselves are those of the unweighted stream."""
    rows = records(prepared)

    def stream(tumor_weight):
        ds = make_dataset(
            prepared, batch_size=4, flip=True, seed=2, deterministic=True, subset_sizes=subset_sizes,
            tumor_weight=tumor_weight,
        )  # fmt: skip
        return as_numpy(ds, 12)

    def views(inputs, i):
        """(flipped?, segmentation as shown) for each stored slice and orientation the element's input matches."""
        for row in rows:
            for flip in (False, True):
                images, tumour = (
                    (np.flip(row["images"], 0), np.flip(row["tumor"], 0)) if flip else (row["images"], row["tumor"])
                )
                shown = images * 2 - 1
                if subset_sizes is None and np.array_equal(inputs["image"][i, ..., 0], shown[..., inputs["source"][i]]):
                    yield flip, tumour
                if subset_sizes is not None and np.array_equal(inputs["images"][i], shown):
                    yield flip, tumour

    plain, weighted = stream(1.0), stream([2.0, 3.0, 5.0])
    by_label = np.array([1.0, 2.0, 3.0, 5.0], np.float32)
    assert all(len(element) == 2 for element in plain)
    orientations, labels = set(), set()
    for (inputs, target_image), (w_inputs, w_target, weight) in zip(plain, weighted, strict=True):
        tf.nest.map_structure(np.testing.assert_array_equal, (inputs, target_image), (w_inputs, w_target))
        assert weight.shape == target_image.shape
        for i in range(len(weight)):
            fits = [
                (flip, tumour)
                for flip, tumour in views(w_inputs, i)
                if np.array_equal(weight[i, ..., 0], by_label[tumour])
            ]
            assert fits, "the weight map is no stored slice's segmentation, as shown"
            orientations.add(fits[0][0])
            labels.update(np.unique(fits[0][1]).tolist())
    # The check saw edema and enhancing tumour (the labels these cases have), flipped and not.
    assert labels == {0, 2, 3} and orientations == {False, True}


def test_label_weight_table_maps_each_tumour_label_and_checks_the_weights():
    assert label_weight_table(1.0) is None and label_weight_table([1, 1, 1]) is None  # no weight map
    np.testing.assert_array_equal(label_weight_table(4.0)[:5], [1, 4, 4, 4, 4])
    table = label_weight_table([3.0, 2.0, 0.5])
    np.testing.assert_array_equal(table[:4], [1, 3, 2, 0.5])
    assert table.shape == (256,) and table[4] == table[255] == 3.0  # other labels: tumour, the largest
    for bad in ([1.0, 2.0], -1.0, [1, 1, "3"]):
        with pytest.raises(TfsynthError, match="loss.tumor_weight must be a non-negative number or 3"):
            label_weight_table(bad)
