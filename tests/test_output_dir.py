"""An output that cannot be written: one line naming the path and the reason, found before the work,
and nothing half-written (`tfsynth.data.output_dir`), in ``prepare`` and ``synthesize``."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_brats import write_case

from tfsynth.commands import synthesize
from tfsynth.commands.prepare import main as prepare_main
from tfsynth.data import nifti, output_dir, preparation, tfrecord
from tfsynth.data.output_dir import OutputError, check_output_dir

NON_UTF8 = os.fsdecode(b"caf\xe9")  # a Latin-1 folder name, as Python keeps it (a surrogate escape)


def cohort(root: Path) -> Path:
    for i in range(3):
        write_case(root, f"BraTS-GLI-{i:05d}-000", seed=i)
    return root


def no_work(*args, **kwargs):
    raise AssertionError("the work started before the output was checked")


def refuse_folders(monkeypatch, error: OSError) -> None:
    """Every new folder fails with ``error`` (what a read-only parent does, even for root)."""

    def mkdtemp(*args, **kwargs):
        raise error

    monkeypatch.setattr(output_dir.tempfile, "mkdtemp", mkdtemp)


def only_line(capsys) -> str:
    """The one error line on stderr (log lines of the work before it aside); no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_found_before_the_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(OutputError, match=rf"--out {locked}/out: cannot write in {locked} \(Permission denied\)"):
        check_output_dir(locked / "out", "--out")


def test_check_output_dir_names_the_folder_and_the_reason(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=rf"--out {tmp_path}/file/out: {tmp_path}/file is not a folder"):
        check_output_dir(tmp_path / "file" / "out", "--out")
    with pytest.raises(OutputError, match=r"caf\\xe9/out: the path is not valid UTF-8"):
        check_output_dir(tmp_path / NON_UTF8 / "out", utf8=True)
    assert check_output_dir(tmp_path / NON_UTF8 / "out") == tmp_path  # fine for Python's own writers
    assert check_output_dir(tmp_path / "a" / "b", beside=True) == tmp_path and not (tmp_path / "a").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the try-out left nothing
    refuse_folders(monkeypatch, OSError(errno.EROFS, os.strerror(errno.EROFS)))
    with pytest.raises(OutputError, match=rf"output folder {tmp_path}/x: cannot write in {tmp_path} \(Read-only file"):
        check_output_dir(tmp_path / "x")


def test_prepare_into_a_read_only_folder_stops_before_reading_a_case(tmp_path, monkeypatch, capsys):
    src = cohort(tmp_path / "src")
    monkeypatch.setattr(preparation, "validate_case", no_work)
    refuse_folders(monkeypatch, PermissionError(errno.EACCES, os.strerror(errno.EACCES)))
    assert prepare_main([str(src), str(tmp_path / "ro" / "out"), "--quiet"]) == 2
    assert (
        only_line(capsys) == f"error: output folder {tmp_path}/ro/out: cannot write in {tmp_path} (Permission denied)"
    )


def test_prepare_to_a_path_that_is_not_utf8_stops_before_reading_a_case(tmp_path, monkeypatch, capsys):
    src = cohort(tmp_path / "src")
    monkeypatch.setattr(preparation, "validate_case", no_work)
    assert prepare_main([str(src), str(tmp_path / NON_UTF8 / "out"), "--quiet"]) == 2
    line = only_line(capsys)
    assert line.startswith(f"error: output folder {tmp_path}/caf\\xe9/out: the path is not valid UTF-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_prepare_without_room_for_its_shards_stops_before_writing(tmp_path, monkeypatch, capsys):
    src = cohort(tmp_path / "src")
    monkeypatch.setattr(preparation, "write_split", no_work)
    monkeypatch.setattr(output_dir.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 2**16})())
    assert prepare_main([str(src), str(tmp_path / "out"), "--quiet"]) == 2
    line = only_line(capsys)
    assert line.startswith(f"error: output folder {tmp_path}/out: needs about ") and line.endswith(
        " MB, only 0.1 MB free (No space left on device)"
    )


def test_a_disk_that_fills_up_while_prepare_writes_leaves_nothing(tmp_path, monkeypatch, capsys):
    src = cohort(tmp_path / "src")

    class FullDisk:  # tf.io.TFRecordWriter on a full disk
        def __init__(self, path):
            self.path = path

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, record):
            raise tf.errors.ResourceExhaustedError(None, None, f"{self.path}; No space left on device")

    monkeypatch.setattr(tfrecord.tf.io, "TFRecordWriter", FullDisk)
    assert prepare_main([str(src), str(tmp_path / "out"), "--quiet"]) == 2
    assert only_line(capsys) == f"error: {tmp_path}/out: cannot write (No space left on device)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no output, no temp folder


class Identity:
    """Stands in for `tfsynth.synthesis.local.Synthesizer`: returns its input slices."""

    metadata: dict = {}

    def synthesize_normalized(self, images01, source, targets):
        return np.asarray(images01, dtype=np.float32)


def test_synthesize_into_a_read_only_folder_stops_before_loading_the_model(tmp_path, monkeypatch, capsys):
    src = cohort(tmp_path / "src")
    monkeypatch.setattr("tfsynth.synthesis.local.load_synthesizer", no_work)
    refuse_folders(monkeypatch, PermissionError(errno.EACCES, os.strerror(errno.EACCES)))
    argv = ["--model", "m", "--source", "t1", "--target", "t2", "--out", str(tmp_path / "ro" / "out"), str(src)]
    assert synthesize.main(argv) == 2
    assert only_line(capsys) == f"error: --out {tmp_path}/ro/out: cannot write in {tmp_path} (Permission denied)"
    monkeypatch.setattr("tfsynth.synthesis.local.load_synthesizer", lambda model: Identity())
    assert synthesize.main(["--complete", str(src), "--model", "m", "--out", str(tmp_path / "ro" / "out")]) == 2
    assert only_line(capsys) == f"error: --out {tmp_path}/ro/out: cannot write in {tmp_path} (Permission denied)"


def test_a_full_disk_in_synthesize_names_the_file_and_stops_the_batch(tmp_path, monkeypatch, capsys):
    src = cohort(tmp_path / "src")
    monkeypatch.setattr("tfsynth.synthesis.local.load_synthesizer", lambda model: Identity())
    saved = []
    real_save = nifti.nib.save

    def save(image, path):  # the first file fits, then the disk is full (gzip names no file then)
        if saved:
            Path(path).write_bytes(b"half a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        saved.append(path)
        real_save(image, path)

    monkeypatch.setattr(nifti.nib, "save", save)
    out = tmp_path / "out"
    argv = ["--model", "m", "--source", "t1", "--target", "t2", "--out", str(out), "--quiet", str(src)]
    assert synthesize.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    full = f"{out}/BraTS-GLI-00001-000-t2w.nii.gz: cannot write (No space left on device)"
    assert err == [
        f"error: case BraTS-GLI-00001-000: {full}",
        "synthesized 1 case(s) x 1 contrast(s) into " + str(out),
        "1 case(s) failed: BraTS-GLI-00001-000",
    ]
    assert [p.name for p in out.iterdir()] == ["BraTS-GLI-00000-000-t2w.nii.gz"]  # no half file, no third case


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    """A real file system of ``size`` at ``path`` (needs root and a kernel that lets the container mount)."""
    path.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode
    ):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_really_full_disk(tmp_path, monkeypatch, capsys):
    src = cohort(tmp_path / "src")
    with small_tmpfs(tmp_path / "small", "64k") as small:
        assert prepare_main([str(src), str(small / "out"), "--quiet"]) == 2
        assert "only 0.1 MB free (No space left on device)" in only_line(capsys)
        (small / "filler").write_bytes(b"\0" * 60_000)
        monkeypatch.setattr("tfsynth.synthesis.local.load_synthesizer", lambda model: Identity())
        argv = ["--model", "m", "--source", "t1", "--target", "t2", "--out", str(small / "o"), "--quiet", str(src)]
        assert synthesize.main(argv) == 1
        err = capsys.readouterr().err
        assert "-t2w.nii.gz: cannot write (No space left on device)" in err and "Traceback" not in err
        assert not list((small / "o").iterdir())
