import pytest

from tfsynth.atomic import atomic_directory, atomic_path, write_json


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "volume.nii.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volume.nii.gz"]


def test_successful_write_replaces_file(tmp_path):
    write_json(tmp_path / "m.json", {"a": 1})
    write_json(tmp_path / "m.json", {"a": 2})
    assert (tmp_path / "m.json").read_text().strip().endswith("}")
    assert '"a": 2' in (tmp_path / "m.json").read_text()
    assert len(list(tmp_path.iterdir())) == 1


def test_directory_appears_only_when_complete(tmp_path):
    final = tmp_path / "1"
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as tmp:
            (tmp / "saved_model.pb").write_text("x")
            raise RuntimeError("interrupted")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic_directory(final) as tmp:
        (tmp / "saved_model.pb").write_text("x")
    assert (final / "saved_model.pb").read_text() == "x"


def test_existing_directory_is_kept_unless_replace(tmp_path):
    final = tmp_path / "run"
    final.mkdir()
    (final / "old").write_text("o")
    with pytest.raises(OSError):
        with atomic_directory(final) as tmp:
            (tmp / "new").write_text("n")
    assert (final / "old").exists()
    with atomic_directory(final, replace=True) as tmp:
        (tmp / "new").write_text("n")
    assert sorted(p.name for p in final.iterdir()) == ["new"]


def test_results_get_ordinary_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {})
        with atomic_directory(tmp_path / "d"):
            pass
    finally:
        os.umask(mask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
