"""A case's outputs appear together or not at all, and a rerun completes what an interrupted run left.

For every command that writes several files for one case (``tfsynth synthesize`` one-to-one and on
a folder of cases, ``tfsynth synthesize --complete``, ``tfsynth request`` on a volume and on a case
folder): the write of a file is made to fail (Ctrl-C, a full disk, ``kill``), no file of that case
may then be visible, and a rerun without ``--overwrite`` writes exactly what is missing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil

import numpy as np
import pytest

from tfsynth.clients.grpc_client import BaseClient
from tfsynth.commands import request, synthesize
from tfsynth.contrasts import CONTRASTS
from tfsynth.data import nifti
from tfsynth.data.brats import find_cases
from tfsynth.savedmodel.contract import TARGET
from tfsynth.synthesis import completion


@pytest.fixture(scope="module")
def tiny_model(tiny_saved_model):
    return tiny_saved_model(64)  # the size test_synthesize.py uses: one export per session


@pytest.fixture()
def cases(phantom_cohort, tmp_path):
    """Two phantom cases (folders of links to the session's files)."""
    root = tmp_path / "cases"
    for case in sorted(p for p in phantom_cohort.iterdir() if p.is_dir())[:2]:
        (root / case.name).mkdir(parents=True)
        for file in case.iterdir():
            (root / case.name / file.name).symlink_to(file)
    return root


def fail_save(monkeypatch, at: int, error: BaseException) -> list:
    """Makes the ``at``-th NIfTI save (1-based) write half a file and raise ``error``; returns the saves."""
    saves = []
    real_save = nifti.nib.save

    def save(image, path):
        saves.append(path)
        if len(saves) == at:
            with open(path, "wb") as half:
                half.write(b"\x1f\x8b half a volume")
            raise error
        real_save(image, path)

    monkeypatch.setattr(nifti.nib, "save", save)
    return saves


def listing(folder) -> list[str]:
    """Everything in ``folder``, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def stamps(folder) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


INTERRUPTIONS = {
    "ctrl-c": (KeyboardInterrupt(), 130),
    "disk full": (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), 1),
    "kill": (SystemExit(143), None),  # SIGTERM, as tfsynth.errors.cli_entry turns it into SystemExit
}


def run(main, argv, expected_exit):
    if expected_exit is None:
        with pytest.raises(SystemExit):
            main(argv)
    else:
        assert main(argv) == expected_exit


@pytest.mark.parametrize("interruption", ["ctrl-c", "disk full"])  # kill takes ctrl-c's path, at a model load each
def test_synthesize_interrupted_in_a_case_leaves_none_of_its_files_and_a_rerun_writes_them(
    interruption, tiny_model, cases, tmp_path, monkeypatch, capsys
):
    first, second = sorted(p.name for p in cases.iterdir())
    out = tmp_path / "out"
    argv = ["--model", str(tiny_model), "--source", "t1", "--target", "t2", "flair", "--out", str(out), "--quiet"]
    error, code = INTERRUPTIONS[interruption]
    fail_save(monkeypatch, 4, error)  # the second case's second target
    run(synthesize.main, [*argv, str(cases)], code)
    first_files = [f"{first}-t2f.nii.gz", f"{first}-t2w.nii.gz"]
    assert listing(out) == first_files  # the second case: no file, no half file, no temporary file
    monkeypatch.undo()
    capsys.readouterr()
    assert synthesize.main([*argv, str(cases)]) == 0  # no --overwrite needed
    assert listing(out) == sorted([*first_files, f"{second}-t2f.nii.gz", f"{second}-t2w.nii.gz"])
    err = capsys.readouterr().err
    assert f"note: case {first}: {first}-t2w.nii.gz, {first}-t2f.nii.gz already written, skipped" in err
    assert "1 case(s) already written, skipped" in err and "error" not in err


def test_a_rerun_writes_only_the_missing_files_and_overwrite_replaces_all(tiny_model, cases, tmp_path, capsys):
    first, second = sorted(p.name for p in cases.iterdir())
    out = tmp_path / "out"
    argv = ["--model", str(tiny_model), "--source", "t1", "--target", "t2", "flair", "--out", str(out), "--quiet"]
    one_to_one = [str(cases / second / f"{second}-t1n.nii.gz")]
    assert synthesize.main([*argv, str(cases / first), *one_to_one]) == 0
    # A half case from an older tfsynth (or a user's deletion): its FLAIR is missing.
    (out / f"{second}-t2f.nii.gz").unlink()
    before = stamps(out)
    capsys.readouterr()
    assert synthesize.main([*argv, str(cases / first), *one_to_one]) == 0
    err = capsys.readouterr().err
    assert (
        f"note: case {second}: {second}-t2w.nii.gz already written and kept; writing the missing {second}-t2f.nii.gz"
        in err
    )
    after = stamps(out)
    assert sorted(after) == sorted([*before, f"{second}-t2f.nii.gz"])
    assert all(after[name] == stamp for name, stamp in before.items())  # what was complete is left alone
    assert synthesize.main([*argv, "--overwrite", str(cases / first), *one_to_one]) == 0
    replaced = stamps(out)
    assert sorted(replaced) == sorted(after) and all(replaced[n] != after[n] for n in after)
    assert "note:" not in capsys.readouterr().err


class MeanCompleter:
    """Stands in for the local model: the missing contrast is the mean of the others."""

    metadata: dict = {}

    def complete_normalized(self, images01, target):
        return np.mean(list(images01.values()), axis=0)


@pytest.fixture()
def brasyn(phantom_cohort, tmp_path):
    """Two cases of the phantom cohort, each lacking one contrast."""
    root = tmp_path / "in"
    for index, case in enumerate(sorted(p for p in phantom_cohort.iterdir() if p.is_dir())[:2]):
        shutil.copytree(case, root / case.name)
        missing = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"}[CONTRASTS[index]]
        next((root / case.name).glob(f"*-{missing}.nii.gz")).unlink()
    return root


@pytest.mark.parametrize("interruption", list(INTERRUPTIONS))
def test_complete_interrupted_leaves_no_file_of_the_case_and_a_rerun_completes_the_run(
    interruption, brasyn, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    error, _ = INTERRUPTIONS[interruption]
    fail_save(monkeypatch, 2, error)
    with contextlib.suppress(type(error)):
        completion.complete_directory(MeanCompleter(), brasyn, out)
    first, second = (case.case_id for case in find_cases(brasyn))
    assert listing(out) == [f"{first}-t1n.nii.gz"]
    monkeypatch.undo()
    capsys.readouterr()
    result = completion.complete_directory(MeanCompleter(), brasyn, out)
    assert (
        result.skipped == [first]
        and result.failures == []
        and [p.name for p in result.written] == [f"{second}-t1c.nii.gz"]
    )
    assert f"note: case {first}: {first}-t1n.nii.gz already written, skipped" in capsys.readouterr().err
    assert listing(out) == [f"{first}-t1n.nii.gz", f"{second}-t1c.nii.gz"]


class EchoClient(BaseClient):
    """A serving client whose server returns the slices it is sent, recording the targets asked for."""

    def _endpoint(self, address):
        return address

    def _connect(self):
        self.targets = []

    def _predict(self, signature, inputs):
        self.targets.extend(inputs[TARGET])
        return np.asarray(inputs["image"], np.float32).reshape(inputs["image"].shape[:3])

    def close(self):
        pass


@pytest.mark.parametrize("interruption", list(INTERRUPTIONS))
def test_request_on_a_volume_interrupted_writes_nothing_and_a_rerun_requests_only_what_is_missing(
    interruption, cases, tmp_path, monkeypatch, capsys
):
    clients = []
    monkeypatch.setattr(
        request, "open_client", lambda args: contextlib.closing(clients.append(EchoClient("x")) or clients[-1])
    )
    case = sorted(cases.iterdir())[0]
    out = tmp_path / "out"
    argv = [
        "--address",
        "x",
        "--no-resample",
        "--target",
        "t2",
        "flair",
        str(case / f"{case.name}-t1n.nii.gz"),
        str(out),
    ]
    error, code = INTERRUPTIONS[interruption]
    with monkeypatch.context() as patch:
        fail_save(patch, 2, error)
        run(request.main, argv, 2 if code == 1 else code)  # a full disk is one error line, exit 2
    assert listing(out) == []
    capsys.readouterr()
    assert request.main(argv) == 0
    t2, flair = f"{case.name}-t2w.nii.gz", f"{case.name}-t2f.nii.gz"
    assert listing(out) == sorted([t2, flair]) and clients[-1].targets == ["t2", "flair"]
    (out / flair).unlink()
    capsys.readouterr()
    assert request.main(argv) == 0
    assert clients[-1].targets == ["flair"] and listing(out) == sorted([t2, flair])
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out / flair)
    assert f"note: case {case.name}: {t2} already written and kept; writing the missing {flair}" in captured.err
    assert request.main(argv) == 0 and clients[-1].targets == [] and capsys.readouterr().out == ""
    assert request.main([*argv, "--overwrite"]) == 0 and clients[-1].targets == ["t2", "flair"]


def test_request_complete_on_a_written_case_keeps_it_with_a_note(brasyn, tmp_path, monkeypatch, capsys):
    class Completer(EchoClient):
        def _predict(self, signature, inputs):
            self.targets.extend(inputs[TARGET])
            return np.asarray(inputs["image"], np.float32).mean(axis=-1)

    clients = []
    monkeypatch.setattr(
        request, "open_client", lambda args: contextlib.closing(clients.append(Completer("x")) or clients[-1])
    )
    case = sorted(brasyn.iterdir())[0]
    argv = ["--address", "x", "--no-resample", "--complete", str(case), str(tmp_path / "out")]
    with monkeypatch.context() as patch:
        fail_save(patch, 1, KeyboardInterrupt())
        assert request.main(argv) == 130
    assert listing(tmp_path / "out") == []
    assert request.main(argv) == 0 and clients[-1].targets == ["t1"]
    capsys.readouterr()
    assert request.main(argv) == 0 and clients[-1].targets == []
    captured = capsys.readouterr()
    assert (
        captured.out == ""
        and f"note: case {case.name}: {case.name}-t1n.nii.gz already written, skipped" in captured.err
    )
