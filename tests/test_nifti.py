"""NIfTI reading with validation, and writing on a reference grid."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from tfsynth.data.nifti import read_volume, write_like
from tfsynth.errors import TfsynthError

AFFINE = np.array([[-1.5, 0, 0, 90], [0, -1.5, 0, 126], [0, 0, 3, -72], [0, 0, 0, 1]], dtype=float)


def volume(shape=(12, 10, 6), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32) * 1000


def test_read_volume_round_trip_nii_and_gz(tmp_path):
    data = volume()
    for name in ("a.nii", "a.nii.gz"):
        nib.save(nib.Nifti1Image(data, AFFINE), tmp_path / name)
        read, img = read_volume(tmp_path / name)
        assert read.dtype == np.float32 and read.shape == data.shape
        np.testing.assert_array_equal(read, data)
        np.testing.assert_allclose(img.affine, AFFINE)


def test_read_volume_applies_scaling(tmp_path):
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), AFFINE)
    img.header.set_slope_inter(0.5, 10)
    nib.save(img, tmp_path / "s.nii")
    read, _ = read_volume(tmp_path / "s.nii")
    np.testing.assert_allclose(read, np.arange(24).reshape(2, 3, 4) * 0.5 + 10)


def test_truncated_gz(tmp_path):
    nib.save(nib.Nifti1Image(volume((40, 40, 20)), AFFINE), tmp_path / "t.nii.gz")
    blob = (tmp_path / "t.nii.gz").read_bytes()
    (tmp_path / "t.nii.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(TfsynthError, match=r"t\.nii\.gz: cannot read voxel data, file truncated or corrupt"):
        read_volume(tmp_path / "t.nii.gz")


def test_truncated_uncompressed_and_garbage(tmp_path):
    nib.save(nib.Nifti1Image(volume(), AFFINE), tmp_path / "t.nii")
    blob = (tmp_path / "t.nii").read_bytes()
    (tmp_path / "t.nii").write_bytes(blob[:600])
    with pytest.raises(TfsynthError, match=r"t\.nii: cannot read voxel data"):
        read_volume(tmp_path / "t.nii")
    (tmp_path / "g.nii.gz").write_bytes(gzip.compress(b"not a nifti file"))
    with pytest.raises(TfsynthError, match=r"g\.nii\.gz: cannot read NIfTI header"):
        read_volume(tmp_path / "g.nii.gz")
    with pytest.raises(TfsynthError, match="file not found"):
        read_volume(tmp_path / "missing.nii.gz")


def test_4d_rejected_trailing_singleton_accepted(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3, 2), np.float32), AFFINE), tmp_path / "four.nii.gz")
    with pytest.raises(TfsynthError, match=r"four\.nii\.gz: 4-D image of shape \(4, 4, 3, 2\)"):
        read_volume(tmp_path / "four.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3, 1), np.float32), AFFINE), tmp_path / "one.nii.gz")
    assert read_volume(tmp_path / "one.nii.gz")[0].shape == (4, 4, 3)
    nib.save(nib.Nifti1Image(np.ones((4, 4), np.float32), AFFINE), tmp_path / "two.nii.gz")
    with pytest.raises(TfsynthError, match="2-D image"):
        read_volume(tmp_path / "two.nii.gz")


def test_absurd_header_dims_refused_before_reading_data(tmp_path, monkeypatch):
    nib.save(nib.Nifti1Image(volume((4, 4, 4)), AFFINE), tmp_path / "big.nii")
    blob = bytearray((tmp_path / "big.nii").read_bytes())
    blob[42:48] = np.array([30000, 30000, 30000], dtype="<i2").tobytes()  # dim[1..3] of the NIfTI-1 header
    (tmp_path / "big.nii").write_bytes(bytes(blob))

    def no_data_access(*args, **kwargs):
        raise AssertionError("voxel data was read before the header check")

    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__", no_data_access)
    with pytest.raises(TfsynthError, match=r"big\.nii: header states an implausible size \(30000, 30000, 30000\)"):
        read_volume(tmp_path / "big.nii")
    monkeypatch.undo()
    nib.save(nib.Nifti1Image(volume((20, 20, 20)), AFFINE), tmp_path / "ok.nii")
    with pytest.raises(TfsynthError, match="implausible size"):
        read_volume(tmp_path / "ok.nii", max_voxels=1000)


def test_non_finite_and_bad_zooms(tmp_path):
    data = volume()
    data[0, 0, 0] = np.inf
    data[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(data, AFFINE), tmp_path / "nan.nii.gz")
    with pytest.raises(TfsynthError, match=r"nan\.nii\.gz: 2 non-finite voxel values"):
        read_volume(tmp_path / "nan.nii.gz")
    img = nib.Nifti1Image(volume(), AFFINE)
    img.header["pixdim"][1] = np.nan  # (nibabel itself repairs 0 and negative values)
    nib.save(img, tmp_path / "zoom.nii")
    with pytest.raises(TfsynthError, match="invalid voxel size"):
        read_volume(tmp_path / "zoom.nii")


def test_write_like_keeps_the_exact_grid(tmp_path):
    ref = nib.Nifti1Image(np.arange(12 * 10 * 6, dtype=np.int16).reshape(12, 10, 6), AFFINE)
    ref.set_qform(AFFINE, code=1)
    ref.set_sform(AFFINE, code=2)
    nib.save(ref, tmp_path / "ref.nii.gz")
    _, ref_img = read_volume(tmp_path / "ref.nii.gz")
    data = volume() / 1000
    out = write_like(tmp_path / "out" / "syn.nii.gz", data, ref_img)
    assert sorted(p.name for p in out.parent.iterdir()) == ["syn.nii.gz"]  # no temp leftovers
    read, img = read_volume(out)
    np.testing.assert_array_equal(read, data)
    np.testing.assert_allclose(img.affine, AFFINE)
    assert img.get_data_dtype() == np.float32
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 2
    assert img.header.get_zooms() == ref_img.header.get_zooms()
    with pytest.raises(TfsynthError, match="differs from the reference grid"):
        write_like(tmp_path / "bad.nii.gz", data[:-1], ref_img)
    assert not (tmp_path / "bad.nii.gz").exists()


def test_write_like_resets_the_intensity_header_and_says_what_the_file_is(tmp_path):
    """A reference with a display window, scaling, intent and description of its own (as scanners
    and converters write them): the output keeps the grid but none of these."""
    ref = nib.Nifti1Image(np.arange(12 * 10 * 6, dtype=np.int16).reshape(12, 10, 6), AFFINE)
    ref.set_qform(AFFINE, code=1)
    ref.set_sform(AFFINE @ np.diag([1, 1, 1.0001, 1]), code=4)  # sform differs slightly from qform
    ref.header.set_slope_inter(2.5, -100.0)
    ref.header["cal_min"], ref.header["cal_max"] = 0.0, 300.0
    ref.header["descrip"] = b"T1 MPRAGE TR=2300 TE=2.98"
    ref.header["aux_file"] = b"lut.txt"
    ref.header.set_intent("z score")
    ref.header.set_xyzt_units("mm", "sec")
    nib.save(ref, tmp_path / "ref.nii.gz")
    _, ref_img = read_volume(tmp_path / "ref.nii.gz")
    text = "tfsynth: T2 synthesised from T1 by tfsynth v3, range 0-1 " + "x" * 40
    out = write_like(tmp_path / "syn.nii.gz", volume() / 1000, ref_img, descrip=text)
    img = nib.load(out)
    header = img.header
    assert (float(header["cal_min"]), float(header["cal_max"])) == (0.0, 0.0)
    # nibabel consumes the stored scaling into the array proxy on load (the header then reads NaN).
    assert (img.dataobj.slope, img.dataobj.inter) == (1.0, 0.0)
    assert img.get_data_dtype() == np.float32
    assert header["descrip"].tobytes().rstrip(b"\0") == text.encode()[:80]
    assert header["aux_file"].tobytes().rstrip(b"\0") == b"" and int(header["intent_code"]) == 0
    assert header.get_xyzt_units() == ("mm", "sec")
    for coded in ("get_qform", "get_sform"):
        matrix, code = getattr(img, coded)(coded=True)
        expected, expected_code = getattr(ref_img, coded)(coded=True)
        assert int(code) == int(expected_code)
        np.testing.assert_array_equal(matrix, expected)
    assert img.shape == ref_img.shape


def test_clinical_matrices_read_and_the_size_message_states_both_limits(tmp_path):
    # 640x640 and 1024x1024 in-plane matrices are routine clinical 2-D acquisitions.
    for shape in ((640, 640, 31), (1024, 1024, 4)):
        data = np.zeros(shape, np.float32)
        data[100:200, 100:200, :] = 1.0
        nib.save(nib.Nifti1Image(data, AFFINE), tmp_path / "clinical.nii")
        assert read_volume(tmp_path / "clinical.nii")[0].shape == shape
    for dims in ([4000, 26, 12], [2000, 2000, 200]):  # one absurd axis; plausible axes but 800 M voxels
        nib.save(nib.Nifti1Image(volume((4, 4, 4)), AFFINE), tmp_path / "big.nii")
        blob = bytearray((tmp_path / "big.nii").read_bytes())
        blob[42:48] = np.array(dims, dtype="<i2").tobytes()
        (tmp_path / "big.nii").write_bytes(bytes(blob))
        with pytest.raises(TfsynthError, match=r"implausible size .*\(limits: 2048 voxels per axis, 268435456 voxels"):
            read_volume(tmp_path / "big.nii")


def test_colour_vector_and_complex_images_are_named_as_such(tmp_path):
    rgb = np.zeros((6, 5, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, AFFINE), tmp_path / "rgb.nii.gz")
    rgba = np.zeros((6, 5, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")])
    nib.save(nib.Nifti1Image(rgba, AFFINE), tmp_path / "rgba.nii.gz")
    vector = nib.Nifti1Image(np.ones((6, 5, 4, 1, 3), np.float32), AFFINE)
    vector.header.set_intent("rgb vector")  # ITK / MRtrix store colour as a 5-D vector image
    nib.save(vector, tmp_path / "vector.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((6, 5, 4, 3), np.uint8), AFFINE), tmp_path / "channels.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((6, 5, 4), np.complex64), AFFINE), tmp_path / "complex.nii.gz")
    expected = {
        "rgb": r"RGB colour image",
        "rgba": r"RGBA colour image",
        "vector": r"RGB image stored as 3 components per voxel \(intent 'rgb vector'",
        "channels": r"RGB colour image \(uint8, 3 channels",
        "complex": r"complex-valued image \(complex64\)",
    }
    for name, reason in expected.items():
        with pytest.raises(TfsynthError, match=rf"{name}\.nii\.gz: {reason}.*; one grey-level volume expected") as info:
            read_volume(tmp_path / f"{name}.nii.gz")
        assert "corrupt" not in str(info.value)
