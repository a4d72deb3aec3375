"""BraTS case discovery in every naming era, and per-case validation.

`write_case` (tiny synthetic skull-stripped volumes) is also used by test_prepare and test_pipeline.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tfsynth.data.brats import discover_cases, find_cases, parse_name, validate_case
from tfsynth.errors import TfsynthError

SUFFIXES = {
    "brats2020": {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"},
    "brats2023": {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f", "seg": "seg"},
}
AFFINE = np.diag([-2.0, -2.0, 2.0, 1.0])


def brain_ellipsoid(shape) -> np.ndarray:
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    return sum(g**2 / 0.8**2 for g in grid) < 1


def write_case(
    root: Path,
    case_id: str,
    naming: str = "brats2023",
    contrasts=("t1", "t1c", "t2", "flair"),
    seg: bool = True,
    shape=(30, 26, 12),
    ext: str = ".nii.gz",
    seed: int = 0,
) -> Path:
    """Writes one case folder of random-texture ellipsoid 'brains' (background exactly 0)."""
    folder = Path(root) / case_id
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    brain = brain_ellipsoid(shape)
    sep = "-" if naming == "brats2023" else "_"
    for i, contrast in enumerate(contrasts):
        volume = ((rng.random(shape) * 400 + 100 * (i + 1)) * brain).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, AFFINE), folder / f"{case_id}{sep}{SUFFIXES[naming][contrast]}{ext}")
    if seg:
        labels = np.zeros(shape, dtype=np.uint8)
        labels[shape[0] // 2 :, :, :][brain[shape[0] // 2 :]] = 2
        labels[shape[0] // 2 : shape[0] // 2 + 3, shape[1] // 2 : shape[1] // 2 + 3, :] = (
            4 if naming == "brats2020" else 3
        )
        nib.save(nib.Nifti1Image(labels, AFFINE), folder / f"{case_id}{sep}seg{ext}")
    return folder


@pytest.mark.parametrize(
    "name, expected",
    [
        ("BraTS20_Training_001_t1ce.nii.gz", ("BraTS20_Training_001", "t1c", "brats2020")),
        ("BraTS20_Training_001_flair.nii", ("BraTS20_Training_001", "flair", "brats2020")),
        ("BraTS2021_00000_seg.nii.gz", ("BraTS2021_00000", "seg", "brats2020")),
        ("BraTS-GLI-00000-000-t2f.nii.gz", ("BraTS-GLI-00000-000", "flair", "brats2023")),
        ("BraTS-MEN-00004-000-t1n.nii.gz", ("BraTS-MEN-00004-000", "t1", "brats2023")),
        ("BraTS-SSA-00002-000-T2W.nii.gz", ("BraTS-SSA-00002-000", "t2", "brats2023")),
        ("BraTS20_Training_001.nii.gz", None),
        ("BraTS20_Training_001_t3.nii.gz", None),
        ("notes_t1.txt", None),
    ],
)
def test_parse_name(name, expected):
    assert parse_name(Path(name)) == expected


def test_find_cases_both_eras_missing_contrast_no_seg(tmp_path):
    write_case(tmp_path, "BraTS20_Training_001", naming="brats2020", ext=".nii")
    write_case(tmp_path / "nested", "BraTS-GLI-00000-000", contrasts=("t1", "t2"), seg=False)
    write_case(tmp_path, "BraTS2021_00007", naming="brats2020", contrasts=("flair",))
    (tmp_path / "BraTS-GLI-00000-000.csv").write_text("ignored, not NIfTI\n")
    cases = {c.case_id: c for c in find_cases(tmp_path)}
    assert sorted(cases) == ["BraTS-GLI-00000-000", "BraTS2021_00007", "BraTS20_Training_001"]
    old = cases["BraTS20_Training_001"]
    assert old.naming == "brats2020" and sorted(old.files) == ["flair", "t1", "t1c", "t2"]
    assert old.files["t1c"].name == "BraTS20_Training_001_t1ce.nii" and old.seg.name == "BraTS20_Training_001_seg.nii"
    new = cases["BraTS-GLI-00000-000"]
    assert new.naming == "brats2023" and sorted(new.files) == ["t1", "t2"] and new.seg is None
    assert list(cases["BraTS2021_00007"].files) == ["flair"]


def test_empty_and_missing_folder(tmp_path):
    with pytest.raises(TfsynthError, match="no NIfTI files"):
        find_cases(tmp_path)
    with pytest.raises(TfsynthError, match="not a directory"):
        find_cases(tmp_path / "absent")


def test_files_named_as_no_contrast_are_listed_once_and_ignored(tmp_path):
    # BraTS-MEN-RT's target volume, brain masks of several tools, a nameless scan, in two cases.
    write_case(tmp_path, "BraTS-MEN-RT-0017-1", contrasts=("t1c",), seg=False)
    write_case(tmp_path, "BraTS-GLI-00000-000")
    strays = [
        tmp_path / "BraTS-MEN-RT-0017-1" / "BraTS-MEN-RT-0017-1_gtv.nii.gz",
        tmp_path / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000-t1n_brainmask.nii.gz",
        tmp_path / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000_mask.nii.gz",
        tmp_path / "BraTS-GLI-00000-000" / "scan.nii",
    ]
    for stray in strays:
        stray.write_bytes(b"")
    for find in (find_cases, lambda root, warn: discover_cases(root, warn=warn).cases):
        warnings = []
        cases = find(tmp_path, warn=warnings.append)
        assert [(c.case_id, sorted(c.files)) for c in cases] == [
            ("BraTS-GLI-00000-000", ["flair", "t1", "t1c", "t2"]),
            ("BraTS-MEN-RT-0017-1", ["t1c"]),
        ]
        assert len(warnings) == 1 and "ignored 4 NIfTI file(s) named neither as a contrast nor" in warnings[0]
        assert all(str(stray.relative_to(tmp_path)) in warnings[0] for stray in strays)
    assert discover_cases(tmp_path, warn=lambda m: None).ignored == sorted(strays)
    # Only files of no known naming: one error saying what names are expected.
    only = tmp_path / "only"
    only.mkdir()
    (only / "scan.nii.gz").write_bytes(b"")
    with pytest.raises(TfsynthError, match=r"only: no BraTS case found; file names must be <case>_<t1\|t1ce"):
        find_cases(only, warn=lambda m: None)


def test_many_ignored_files_are_counted_after_the_first_ten(tmp_path):
    for i in range(13):
        write_case(tmp_path, f"BraTS-GLI-{i:05d}-000", contrasts=("t1",), seg=False, shape=(4, 4, 4))
        (tmp_path / f"BraTS-GLI-{i:05d}-000" / "mask.nii.gz").write_bytes(b"")
    warnings = []
    assert len(find_cases(tmp_path, warn=warnings.append)) == 13
    assert len(warnings) == 1 and warnings[0].count("mask.nii.gz") == 10 and warnings[0].endswith(" and 3 more")


def test_seg_only_and_duplicate_contrast(tmp_path):
    write_case(tmp_path, "BraTS-GLI-00001-000", contrasts=())
    with pytest.raises(TfsynthError, match="segmentation but no contrast"):
        find_cases(tmp_path)
    other = tmp_path / "x"
    write_case(other, "BraTS-GLI-00002-000", contrasts=("t1",))
    write_case(other, "BraTS-GLI-00002-000", contrasts=("t1",), seg=False, ext=".nii")
    with pytest.raises(TfsynthError, match="two t1 files"):
        find_cases(other)
    # Reported, the whole case is skipped: which of the two files is meant is unknowable.
    write_case(other, "BraTS-GLI-00003-000")
    reported = []
    assert [c.case_id for c in find_cases(other, on_bad=reported.append)] == ["BraTS-GLI-00003-000"]
    assert len(reported) == 1 and "BraTS-GLI-00002-000 has two t1 files" in reported[0]


def test_links_exclusion_unknown_files_and_empty_folders(tmp_path):
    cases, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    write_case(cases, "BraTS-GLI-00000-000")
    write_case(elsewhere, "BraTS-GLI-00001-000")
    (cases / "BraTS-GLI-00001-000").symlink_to(elsewhere / "BraTS-GLI-00001-000", target_is_directory=True)
    (cases / "BraTS-GLI-00000-000" / "loop").symlink_to(cases, target_is_directory=True)  # walked once
    (cases / "BraTS-GLI-00000-000" / "brainmask.nii.gz").write_bytes(b"")
    out = cases / "out"  # an output folder inside the input holds a flat file of case 00000
    write_case(out, "x", contrasts=("flair",), seg=False)
    (out / "x" / "x-t2f.nii.gz").rename(out / "BraTS-GLI-00000-000-t2f.nii.gz")
    (cases / "empty").mkdir()
    unknown, bad = [], []
    found = find_cases(cases, on_bad=bad.append, warn=unknown.append, exclude=out, empty_folders=True)
    assert [(c.case_id, c.folder.name, len(c.files)) for c in found] == [
        ("BraTS-GLI-00000-000", "BraTS-GLI-00000-000", 4),
        ("BraTS-GLI-00001-000", "BraTS-GLI-00001-000", 4),
    ]
    assert len(unknown) == 1 and "ignored 1 NIfTI file(s)" in unknown[0] and "brainmask.nii.gz" in unknown[0]
    assert len(bad) == 1 and bad[0].startswith(f"{cases / 'empty'}: no NIfTI files")
    # Without the exclusion the output folder's file makes case 00000 ambiguous (two folders).
    bad.clear()
    found = find_cases(cases, on_bad=bad.append, warn=unknown.append)
    assert [c.case_id for c in found] == ["BraTS-GLI-00001-000"] and "also has files in" in bad[0]


def test_validate_case_loads_and_harmonises_labels(tmp_path):
    write_case(tmp_path, "BraTS20_Training_002", naming="brats2020", contrasts=("t1", "flair"))
    loaded = validate_case(find_cases(tmp_path)[0])
    assert sorted(loaded.volumes) == ["flair", "t1"] and loaded.shape == (30, 26, 12)
    assert loaded.zooms == (2.0, 2.0, 2.0) and np.allclose(loaded.affine, AFFINE)
    assert loaded.seg.dtype == np.uint8 and set(np.unique(loaded.seg)) == {0, 2, 3}  # label 4 -> 3


def test_label_4_in_a_brats_2023_case_is_mapped_with_a_warning(tmp_path):
    folder = write_case(tmp_path, "BraTS-GLI-00009-000")
    seg = next(folder.glob("*-seg.nii.gz"))
    labels = np.asarray(nib.load(seg).dataobj).copy()
    labels[labels == 3] = 4  # an older case renamed to the 2023 scheme
    _rewrite(seg, labels)
    warnings = []
    loaded = validate_case(find_cases(tmp_path)[0], warn=warnings.append)
    assert set(np.unique(loaded.seg)) == {0, 2, 3}
    assert len(warnings) == 1 and warnings[0].startswith(f"{seg}: label 4") and "mapped to 3" in warnings[0]
    write_case(tmp_path / "old", "BraTS20_Training_009", naming="brats2020")
    warnings.clear()
    validate_case(find_cases(tmp_path / "old")[0], warn=warnings.append)
    assert warnings == []  # BraTS <= 2021 label 4 is the documented convention: no warning


def test_cases_in_any_orientation_are_reoriented_to_lps(tmp_path):
    """A RAS-stored case (as MONAI Orientation("RAS") leaves it) loads with the same voxels as LPS."""
    write_case(tmp_path / "lps", "BraTS-GLI-00010-000")
    folder = write_case(tmp_path / "ras", "BraTS-GLI-00010-000")
    for path in folder.iterdir():
        nib.save(nib.as_closest_canonical(nib.load(path)), path)
    lps, ras = (validate_case(find_cases(tmp_path / name)[0]) for name in ("lps", "ras"))
    assert ras.orientation == "RAS" and lps.orientation == "LPS"
    for contrast in lps.volumes:
        np.testing.assert_array_equal(ras.volumes[contrast], lps.volumes[contrast])
    np.testing.assert_array_equal(ras.seg, lps.seg)
    np.testing.assert_allclose(ras.affine, lps.affine)


def test_non_skull_stripped_volume_is_refused_naming_it(tmp_path):
    folder = write_case(tmp_path, "BraTS-GLI-00011-000")
    t2 = next(folder.glob("*-t2w.nii.gz"))
    data = np.asarray(nib.load(t2).dataobj)
    _rewrite(t2, np.where(data == 0, -32768, data).astype(np.float32))
    with pytest.raises(TfsynthError, match=r"-t2w\.nii\.gz: its background is not 0: .*-32768.*skull-strip") as error:
        validate_case(find_cases(tmp_path)[0])
    assert "--brain-mask" not in str(error.value)  # prepare and evaluate have no such option


def _rewrite(path: Path, data=None, affine=None):
    img = nib.load(path)
    data = np.asarray(img.dataobj) if data is None else data
    nib.save(nib.Nifti1Image(data, img.affine if affine is None else affine), path)


def test_validate_case_rejects_shape_mismatch(tmp_path):
    folder = write_case(tmp_path, "BraTS-GLI-00003-000")
    _rewrite(folder / "BraTS-GLI-00003-000-t2w.nii.gz", data=np.ones((30, 26, 11), np.float32))
    with pytest.raises(TfsynthError, match=r"BraTS-GLI-00003-000-t2w\.nii\.gz: shape \(30, 26, 11\) differs"):
        validate_case(find_cases(tmp_path)[0])


def test_validate_case_affine_tolerance(tmp_path):
    folder = write_case(tmp_path, "BraTS-GLI-00004-000")
    seg = folder / "BraTS-GLI-00004-000-seg.nii.gz"
    _rewrite(seg, affine=AFFINE + 1e-5)  # float32 rounding between tools: accepted
    validate_case(find_cases(tmp_path)[0])
    shifted = AFFINE.copy()
    shifted[0, 3] = 2.0
    _rewrite(seg, affine=shifted)
    with pytest.raises(TfsynthError, match=r"-seg\.nii\.gz: affine differs .* by up to 2 mm"):
        validate_case(find_cases(tmp_path)[0])


def test_validate_case_rejects_nan_and_empty_volume(tmp_path):
    folder = write_case(tmp_path, "BraTS-GLI-00005-000")
    path = folder / "BraTS-GLI-00005-000-t1c.nii.gz"
    data = np.asarray(nib.load(path).dataobj).copy()
    data[3, 4, 5] = np.nan
    _rewrite(path, data=data)
    with pytest.raises(TfsynthError, match=r"t1c\.nii\.gz: 1 non-finite voxel"):
        validate_case(find_cases(tmp_path)[0])
    _rewrite(path, data=np.zeros_like(data))
    with pytest.raises(TfsynthError, match=r"t1c\.nii\.gz: volume is all zero"):
        validate_case(find_cases(tmp_path)[0])
