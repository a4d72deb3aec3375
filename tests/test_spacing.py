"""`prepare` on a cohort mixing voxel sizes: one in-plane target spacing (`tfsynth.data.spacing`)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from test_brats import write_case
from test_prepare import read_records

from tfsynth.commands.prepare import main
from tfsynth.data.brats import find_cases, validate_case
from tfsynth.data.manifest import load_manifest
from tfsynth.data.preparation import prepare
from tfsynth.data.spacing import resample_in_plane, target_voxel_size


def write_at(root: Path, case_id: str, zooms, shape, seed: int) -> Path:
    """A `write_case` case whose files state voxel size ``zooms`` (mm) instead of 2 mm."""
    folder = write_case(root, case_id, shape=shape, seed=seed)
    for path in folder.iterdir():
        image = nib.load(path)
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj), np.diag([-zooms[0], -zooms[1], zooms[2], 1.0])), path)
    return folder


def mixed_cohort(root: Path) -> Path:
    """Two heads of 2 mm voxels and one of 3 mm in-plane (the same 60 x 54 mm extent), all 2 mm slices;
    the 3 mm case sorts first."""
    write_at(root, "BraTS-GLI-00000-000", (3.0, 3.0, 2.0), (20, 18, 12), seed=0)
    write_at(root, "BraTS-GLI-00001-000", (2.0, 2.0, 2.0), (30, 27, 12), seed=1)
    write_at(root, "BraTS-GLI-00002-000", (2.0, 2.0, 2.0), (30, 27, 12), seed=2)
    return root


def test_target_is_the_in_plane_median_or_the_requested_size():
    zooms = [(3.0, 3.0, 5.0), (2.0, 2.0, 2.0), (0.9, 0.9, 6.0), (2.0, 2.5, 2.0)]
    assert target_voxel_size(zooms) == (2.0, 2.25, 3.5)
    assert target_voxel_size(zooms, 1.0) == (1.0, 1.0, 3.5)
    assert target_voxel_size(list(reversed(zooms))) == target_voxel_size(zooms)


def test_resampling_keeps_the_background_zero_the_labels_and_the_extent(tmp_path):
    write_at(tmp_path, "BraTS-GLI-00000-000", (3.0, 3.0, 2.0), (20, 18, 12), seed=0)
    loaded = validate_case(find_cases(tmp_path)[0])
    resampled = resample_in_plane(loaded, (2.0, 2.0, 2.0))
    assert resampled.shape == (30, 27, 12) and resampled.zooms == (2.0, 2.0, 2.0)
    for contrast, volume in resampled.volumes.items():
        assert volume.dtype == np.float32 and volume.min() >= 0
        brain = volume != 0
        assert 0.9 < brain.sum() * 4 / ((loaded.volumes[contrast] != 0).sum() * 9) < 1.1  # same brain volume in mm^3
        assert volume.max() <= loaded.volumes[contrast].max() + 1e-3  # linear: no overshoot
    assert resampled.seg.dtype == np.uint8 and set(np.unique(resampled.seg)) <= {0, 2, 3}
    # The same field of view: the grids' outer corners coincide in world space.
    first, last = [-0.5, -0.5, -0.5, 1], [*(np.array(resampled.shape) - 0.5), 1]
    np.testing.assert_allclose(resampled.affine @ first, loaded.affine @ first, atol=1e-6)
    np.testing.assert_allclose(resampled.affine @ last, loaded.affine @ [*(np.array(loaded.shape) - 0.5), 1], atol=1e-6)
    assert resample_in_plane(loaded, (3.0, 3.0, 9.0)) is loaded  # at the target in-plane: untouched


def test_a_mixed_cohort_is_resampled_to_its_median_and_says_which_cases(tmp_path):
    src = mixed_cohort(tmp_path / "src")
    notes = []
    manifest = prepare(src, tmp_path / "out", split=(1, 1, 1), info=notes.append, warn=lambda message: None)
    assert manifest["voxel_size_mm"] == [2.0, 2.0, 2.0] and manifest["voxel_size_source"] == "median of the cohort"
    assert manifest["resampled"] == {"BraTS-GLI-00000-000": {"from_mm": [3.0, 3.0, 2.0]}}
    case = manifest["cases"]["BraTS-GLI-00000-000"]
    assert case["voxel_size_mm"] == [2.0, 2.0, 2.0] and manifest["original_shape"]["BraTS-GLI-00000-000"] == [
        30,
        27,
        12,
    ]
    assert manifest["image_size"] == 32
    spacing = [note for note in notes if note.startswith("in-plane voxel size")]
    assert spacing == [
        "in-plane voxel size 2 x 2 mm (the cohort's median); resampled 1 of 3 case(s) in-plane: "
        "BraTS-GLI-00000-000 (3 x 3 mm)"
    ]
    records = [
        r
        for split in manifest["splits"].values()
        for shard in split["shards"]
        for r in read_records(tmp_path / "out" / shard["file"])
        if r["case_id"] == b"BraTS-GLI-00000-000"
    ]
    assert [int(r["slice_index"]) for r in records] == case["slices"] and set(case["slices"]) <= set(range(12))
    for r in records:
        assert np.all(r["images"][r["brain"] == 0] == 0)  # the background is still exactly 0
        assert r["images"].max() <= 1 and set(np.unique(r["tumor"])) <= {0, 2, 3}
        assert r["brain"][:, 27:].sum() == 0 and r["brain"][:1].sum() == 0  # 30 x 27 centred on 32 x 32
    # Cases re-read in pass 2 (nothing cached) are resampled the same way.
    uncached = prepare(src, tmp_path / "uncached", split=(1, 1, 1), info=lambda m: None, cache_bytes=0)
    assert [s["shards"] for s in uncached["splits"].values()] == [s["shards"] for s in manifest["splits"].values()]


def test_voxel_size_option_and_its_check(tmp_path, capsys):
    src = mixed_cohort(tmp_path / "src")
    out = tmp_path / "out"
    assert main([str(src), str(out), "--voxel-size", "3", "--split", "1", "1", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "in-plane voxel size 3 x 3 mm (--voxel-size); resampled 2 of 3 case(s) in-plane" in err
    manifest = load_manifest(out)
    assert manifest["voxel_size_mm"] == [3.0, 3.0, 2.0] and manifest["voxel_size_source"] == "--voxel-size"
    assert sorted(manifest["resampled"]) == ["BraTS-GLI-00001-000", "BraTS-GLI-00002-000"]
    assert manifest["image_size"] == 20
    for bad in ("0", "-1", "nan"):
        assert main([str(src), str(tmp_path / "bad"), "--voxel-size", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: --voxel-size must be a positive number of mm, got {float(bad)}"]
        assert not (tmp_path / "bad").exists()


def test_a_cohort_of_one_spacing_is_not_resampled_and_rewritten_byte_for_byte(tmp_path, monkeypatch):
    for i in range(3):
        write_case(tmp_path / "src", f"BraTS-GLI-{i:05d}-000", seed=i)

    def never(*args, **kwargs):
        raise AssertionError("a case at the cohort's voxel size was resampled")

    monkeypatch.setattr(ndimage, "zoom", never)  # what every resampling of tfsynth.data.geometry calls
    runs = [
        prepare(tmp_path / "src", tmp_path / f"out{i}", split=(1, 1, 1), info=lambda m: None, **options)
        for i, options in enumerate([{}, {"workers": 1, "cache_bytes": 0}, {"voxel_size": 2.0}])
    ]
    assert all(run["resampled"] == {} and run["voxel_size_mm"] == [2.0, 2.0, 2.0] for run in runs)
    shards = [[s["shards"] for s in run["splits"].values()] for run in runs]
    assert shards[0] == shards[1] == shards[2]  # file names, slice counts and sha256
