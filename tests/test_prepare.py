"""`prepare`: validation before writing, exact TFRecord contents, patient split, atomicity, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf
from test_brats import write_case

from tfsynth.commands.prepare import main
from tfsynth.contrasts import CONTRASTS
from tfsynth.data.brats import find_cases, validate_case
from tfsynth.data.manifest import load_manifest, verify_prepared
from tfsynth.data.normalize import crop_or_pad, percentile_normalize
from tfsynth.data.preparation import prepare
from tfsynth.data.splits import patient_of, split_cases, split_counts
from tfsynth.data.tfrecord import parse_example
from tfsynth.errors import TfsynthError

MANIFEST_KEYS = {
    "format_version",
    "contrasts",
    "image_size",
    "voxel_size_mm",
    "splits",
    "normalization",
    "original_shape",
    "crop",
    "tfsynth_version",
    "created",
}


def cohort(root: Path, n: int = 4) -> Path:
    """n cases in both naming eras; case 1 lacks T1c, case 2 has no segmentation."""
    for i in range(n):
        if i % 2:
            write_case(
                root,
                f"BraTS20_Training_{i:03d}",
                naming="brats2020",
                seed=i,
                contrasts=("t1", "t2", "flair") if i == 1 else CONTRASTS,
            )
        else:
            write_case(root, f"BraTS-GLI-{i:05d}-000", seed=i, seg=i != 2)
    return root


def read_records(path: Path) -> list[dict]:
    return [{k: v.numpy() for k, v in parse_example(r).items()} for r in tf.data.TFRecordDataset(str(path))]


@pytest.mark.parametrize(
    "n, split, expected",
    [
        (4, (0.5, 0.25, 0.25), (2, 1, 1)),
        (10, (0.8, 0.1, 0.1), (8, 1, 1)),
        (3, (0.8, 0.1, 0.1), (1, 1, 1)),
        (1, (0.8, 0.1, 0.1), (1, 0, 0)),
        (7, (0.7, 0.3, 0.0), (5, 2, 0)),
        (10, (6, 2, 2), (6, 2, 2)),  # counts
        (20, (8, 1, 1), (16, 2, 2)),  # integers not summing to n: proportions
        (369, (0.8, 0.1, 0.1), (295, 37, 37)),
    ],
)
def test_split_counts(n, split, expected):
    assert split_counts(n, split) == expected
    assert sum(expected) == n


def test_split_counts_rejects_nonsense():
    for bad in [(1, 1), (-1, 1, 1), (0, 0, 0), (float("nan"), 1, 1)]:
        with pytest.raises(TfsynthError, match="--split"):
            split_counts(10, bad)


def test_split_is_by_patient_and_deterministic():
    ids = [f"case{i:02d}" for i in range(20)]
    a = split_cases(ids, (0.6, 0.2, 0.2), seed=3)
    assert a == split_cases(list(reversed(ids)), (0.6, 0.2, 0.2), seed=3)
    assert sorted(sum(a.values(), [])) == ids
    assert [len(a[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    assert a != split_cases(ids, (0.6, 0.2, 0.2), seed=4)


@pytest.mark.parametrize(
    "case_id, patient",
    [
        ("BraTS-GLI-02060-100", "BraTS-GLI-02060"),
        ("BraTS-GLI-02060-101", "BraTS-GLI-02060"),
        ("BraTS-MEN-RT-0017-1", "BraTS-MEN-RT-0017"),
        ("BraTS-SSA-00002-000", "BraTS-SSA-00002"),
        ("sub-07_ses-02", "sub-07"),
        ("sub-07_ses-01_acq-ax", "sub-07"),
        ("BraTS20_Training_001", "BraTS20_Training_001"),
        ("BraTS2021_00000", "BraTS2021_00000"),
        ("patient_3", "patient_3"),
    ],
)
def test_patient_of(case_id, patient):
    assert patient_of(case_id) == patient


def test_timepoints_and_sessions_of_one_patient_share_a_split():
    # 12 patients: 6 BraTS 2024 post-treatment patients with 2-3 timepoints, 3 BIDS subjects with
    # 2 sessions, 3 BraTS 2021 cases (one per patient).
    ids = [f"BraTS-GLI-{p:05d}-{t:03d}" for p in range(2060, 2066) for t in range(100, 100 + 2 + p % 2)]
    ids += [f"sub-{p:02d}_ses-{s}" for p in range(3) for s in (1, 2)]
    ids += [f"BraTS2021_{p:05d}" for p in range(3)]
    for seed in range(20):
        split = split_cases(ids, (0.5, 0.25, 0.25), seed)
        assert sorted(sum(split.values(), [])) == sorted(ids)
        where = {patient_of(case): name for name, cases in split.items() for case in cases}
        for name, cases in split.items():
            assert all(where[patient_of(case)] == name for case in cases), (seed, split)
        assert {n: len({patient_of(c) for c in split[n]}) for n in split} == {"train": 6, "val": 3, "test": 3}
        assert split == split_cases(list(reversed(ids)), (0.5, 0.25, 0.25), seed)


def test_prepare_groups_timepoints_and_says_so(tmp_path):
    src = tmp_path / "src"
    for patient in range(4):
        for timepoint in (100, 101):
            write_case(src, f"BraTS-GLI-0206{patient}-{timepoint}", seed=patient, seg=False)
    notes = []
    manifest = prepare(src, tmp_path / "out", split=(2, 1, 1), info=notes.append, warn=lambda message: None)
    patients = {name: {c[:-4] for c in info["cases"]} for name, info in manifest["splits"].items()}
    assert {name: len(p) for name, p in patients.items()} == {"train": 2, "val": 1, "test": 1}
    assert sorted(sum((info["cases"] for info in manifest["splits"].values()), [])) == sorted(manifest["cases"])
    assert all(len(info["cases"]) == 2 * len(patients[name]) for name, info in manifest["splits"].items())
    grouping = manifest["patient_grouping"]
    assert grouping["patients"] == 4 and "<timepoint>" in grouping["rule"]
    assert grouping["groups"]["BraTS-GLI-02061"] == ["BraTS-GLI-02061-100", "BraTS-GLI-02061-101"]
    assert manifest["cases"]["BraTS-GLI-02063-101"]["patient"] == "BraTS-GLI-02063"
    notes = [note for note in notes if note.startswith("split by patient")]
    assert len(notes) == 1 and notes[0].startswith("split by patient: 8 case(s) of 4 patient(s); 4 patient(s)")
    assert "BraTS-GLI-02060: BraTS-GLI-02060-100, BraTS-GLI-02060-101" in notes[0]


def test_prepare_writes_exact_normalised_slices(tmp_path):
    src = cohort(tmp_path / "src")
    out = tmp_path / "out"
    manifest = prepare(src, out, split=(0.5, 0.25, 0.25), seed=1, shard_slices=7)
    assert MANIFEST_KEYS <= set(manifest)
    assert json.loads((out / "manifest.json").read_text()) == manifest == load_manifest(out)
    assert manifest["image_size"] == 32  # 30 x 26 in-plane, rounded up to a multiple of 4
    assert manifest["voxel_size_mm"] == [2.0, 2.0, 2.0] and manifest["contrasts"] == list(CONTRASTS)
    assert [len(manifest["splits"][s]["cases"]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json"] + [sh["file"] for s in manifest["splits"].values() for sh in s["shards"]]
    )
    verify_prepared(out)
    files = manifest["cases"]["BraTS20_Training_001"]["files"]
    assert files["t1"] == "BraTS20_Training_001/BraTS20_Training_001_t1.nii.gz" and "t1c" not in files

    records = []
    for name, split in manifest["splits"].items():
        n = len(split["shards"])
        assert [sh["file"] for sh in split["shards"]] == [f"{name}-{i:05d}-of-{n:05d}.tfrecord" for i in range(n)]
        for shard in split["shards"]:
            rows = read_records(out / shard["file"])
            assert len(rows) == shard["slices"] <= 7
            records += rows
        assert sum(sh["slices"] for sh in split["shards"]) == split["slices"]

    by_case = {}
    for r in records:
        by_case.setdefault(r["case_id"].decode(), []).append(r)
    cases = {c.case_id: c for c in find_cases(src)}
    assert sorted(by_case) == sorted(cases)
    for case_id, rows in by_case.items():
        loaded = validate_case(cases[case_id])
        entry = manifest["cases"][case_id]
        assert [r["slice_index"] for r in rows] == entry["slices"]
        assert manifest["original_shape"][case_id] == [30, 26, 12]
        for c, contrast in enumerate(CONTRASTS):
            present = contrast in loaded.volumes
            assert all(r["present"][c] == present for r in rows)
            if not present:
                assert all(not r["images"][..., c].any() for r in rows)
                continue
            norm, params = percentile_normalize(loaded.volumes[contrast])
            assert manifest["normalization"][case_id][contrast] == params.to_dict()
            expected = crop_or_pad(np.moveaxis(norm[:, :, entry["slices"]], -1, 0), 32)
            np.testing.assert_array_equal(np.stack([r["images"][..., c] for r in rows]), expected)  # bit-exact
        union = np.any([v != 0 for v in loaded.volumes.values()], axis=0)
        expected_brain = crop_or_pad(np.moveaxis(union[:, :, entry["slices"]], -1, 0).astype(np.uint8), 32)
        np.testing.assert_array_equal(np.stack([r["brain"] for r in rows]), expected_brain)
        assert all(r["has_seg"] == (loaded.seg is not None) for r in rows)
        tumor = np.stack([r["tumor"] for r in rows])
        assert set(np.unique(tumor)) == ({0, 2, 3} if loaded.seg is not None else {0})
    # Every axial slice with brain is kept; the empty ones are not.
    assert manifest["cases"]["BraTS-GLI-00000-000"]["slices"] == [k for k in range(12) if union[:, :, k].mean() >= 0.01]


def test_output_is_reproducible_with_or_without_threads_and_cache(tmp_path):
    src = cohort(tmp_path / "src")
    a = prepare(src, tmp_path / "a", seed=2, shard_slices=9)
    b = prepare(src, tmp_path / "b", seed=2, shard_slices=9, workers=1, cache_bytes=0)  # pass 2 re-reads
    assert a["splits"] == b["splits"]  # same cases, same shards, same checksums


def test_prepare_pads_and_crops(tmp_path):
    src = cohort(tmp_path / "src", n=1)
    manifest = prepare(src, tmp_path / "small", size=16, split=(1, 0, 0))
    crop = manifest["crop"]["BraTS-GLI-00000-000"]
    assert crop["crop_start"] == [7, 5] and crop["pad_before"] == [0, 0] and crop["brain_voxels_cropped"] > 0
    manifest = prepare(src, tmp_path / "big", size=40, split=(1, 0, 0))
    assert manifest["crop"]["BraTS-GLI-00000-000"]["pad_before"] == [5, 7]
    for bad in (30, 0, -4):
        with pytest.raises(TfsynthError, match="multiple of 4"):
            prepare(src, tmp_path / f"x{bad}", size=bad)


def test_refuses_prepared_or_non_empty_out(tmp_path):
    src = cohort(tmp_path / "src", n=1)
    out = tmp_path / "out"
    out.mkdir()  # an empty directory is fine
    prepare(src, out, split=(1, 0, 0))
    with pytest.raises(TfsynthError, match="already prepared"):
        prepare(src, out)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    with pytest.raises(TfsynthError, match="not an empty directory"):
        prepare(src, tmp_path / "junk")
    with pytest.raises(TfsynthError, match="not a prepared directory: no manifest.json"):
        load_manifest(tmp_path / "junk")


def test_interrupted_run_leaves_nothing_finished(tmp_path, monkeypatch):
    src = cohort(tmp_path / "src")
    out = tmp_path / "work" / "out"
    from tfsynth.data import tfrecord

    real = tfrecord.write_shard
    calls = []

    def failing_write_shard(path, records):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # e.g. Ctrl-C during the second shard
        return real(path, records)

    monkeypatch.setattr(tfrecord, "write_shard", failing_write_shard)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, out, shard_slices=5)
    assert len(calls) == 2
    assert list((tmp_path / "work").iterdir()) == []  # no out, no temp folder, no manifest


def corrupt(kind: str, src: Path) -> str:
    """Damages one file of case BraTS-GLI-00002-000 in ``src``; returns the expected error text."""
    folder = src / "BraTS-GLI-00002-000"
    t2 = folder / "BraTS-GLI-00002-000-t2w.nii.gz"
    img = nib.load(t2)
    data = np.asarray(img.dataobj)
    if kind == "truncated":
        t2.write_bytes(t2.read_bytes()[:300])
        return "t2w.nii.gz: cannot read voxel data, file truncated"
    if kind == "nan":
        data = data.copy()
        data[5, 5, 5] = np.nan
        nib.save(nib.Nifti1Image(data, img.affine), t2)
        return "t2w.nii.gz: 1 non-finite voxel"
    if kind == "shape":
        nib.save(nib.Nifti1Image(data[:, :, :-1], img.affine), t2)
        return "t2w.nii.gz: shape (30, 26, 11) differs"
    if kind == "affine":
        nib.save(nib.Nifti1Image(data, img.affine @ np.diag([1, 1, 1.5, 1])), t2)
        return "t2w.nii.gz: affine differs"
    if kind == "4d":
        nib.save(nib.Nifti1Image(np.stack([data, data], -1), img.affine), t2)
        return "t2w.nii.gz: 4-D image"
    if kind == "dims":
        t2.unlink()
        plain = t2.with_suffix("")  # .nii
        nib.save(nib.Nifti1Image(data, img.affine), plain)
        blob = bytearray(plain.read_bytes())
        blob[42:44] = np.array([4000], dtype="<i2").tobytes()
        plain.write_bytes(bytes(blob))
        return "t2w.nii: header states an implausible size (4000, 26, 12)"
    if kind == "duplicate":
        nib.save(img, folder / "BraTS-GLI-00002-000-t2w.nii")
        return "t2w.nii.gz: case BraTS-GLI-00002-000 has two t2 files"
    raise AssertionError(kind)


BAD_KINDS = ["truncated", "nan", "shape", "affine", "4d", "dims", "duplicate"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_case_stops_with_one_line_and_writes_nothing(tmp_path, capsys, kind):
    src = cohort(tmp_path / "src")
    expected = corrupt(kind, src)
    out = tmp_path / "out"
    assert main([str(src), str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert kind != "duplicate" or err[0].endswith("(--skip-bad skips such files and cases)")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["src"]


@pytest.mark.parametrize("kind", ["truncated", "duplicate"])
def test_skip_bad_reports_and_skips(tmp_path, capsys, kind):
    src = cohort(tmp_path / "src")
    expected = corrupt(kind, src)
    out = tmp_path / "out"
    assert main([str(src), str(out), "--skip-bad", "--quiet", "--split", "1", "1", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning: skipping: " in err and expected in err
    manifest = load_manifest(out)
    assert len(manifest["skipped"]) == 1 and expected in manifest["skipped"][0]
    assert sorted(manifest["cases"]) == ["BraTS-GLI-00000-000", "BraTS20_Training_001", "BraTS20_Training_003"]


def test_files_named_as_no_contrast_are_listed_once_and_the_cases_prepared(tmp_path, capsys):
    src = cohort(tmp_path / "src")
    strays = [
        src / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-t2star.nii.gz",
        src / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000_gtv.nii.gz",
        src / "BraTS20_Training_001" / "BraTS20_Training_001_brainmask.nii.gz",
    ]
    for stray in strays:
        stray.write_bytes(b"not even a NIfTI file")
    out = tmp_path / "out"
    assert main([str(src), str(out), "--quiet", "--split", "2", "1", "1"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    ignored = [line for line in warnings if "ignored 3 NIfTI file(s)" in line]
    assert len(ignored) == 1 and all(stray.name in ignored[0] for stray in strays)
    manifest = load_manifest(out)
    assert manifest["ignored_files"] == sorted(str(stray.relative_to(src)) for stray in strays)
    assert len(manifest["cases"]) == 4 and manifest["skipped"] == []
    assert len(manifest["cases"]["BraTS-GLI-00002-000"]["present"]) == 4


def test_skip_bad_with_nothing_left(tmp_path):
    write_case(tmp_path / "src", "BraTS-GLI-00000-000", contrasts=("t1",))
    (tmp_path / "src" / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000-t1n.nii.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(TfsynthError, match="no valid cases left"):
        prepare(tmp_path / "src", tmp_path / "out", skip_bad=True, warn=lambda message: None)
    assert not (tmp_path / "out").exists()


def test_empty_source_and_cli_success(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "no NIfTI files" in capsys.readouterr().err
    src = cohort(tmp_path / "src")
    assert (
        main([str(src), str(tmp_path / "out"), "--size", "28", "--split", "2", "1", "1", "--seed", "5", "--quiet"]) == 0
    )
    assert "train 2 cases" in capsys.readouterr().out
    manifest = verify_prepared(tmp_path / "out")
    assert manifest["image_size"] == 28 and manifest["seed"] == 5
    shard = tmp_path / "out" / manifest["splits"]["val"]["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-1])
    with pytest.raises(TfsynthError, match="checksum differs"):
        verify_prepared(tmp_path / "out")
    assert main([str(src), str(tmp_path / "x"), "--size", "30"]) == 2
