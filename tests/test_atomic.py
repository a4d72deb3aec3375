import pytest

from tfsynth.atomic import atomic_directory, atomic_path, atomic_paths, write_json


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


def visible(folder):
    """What a user or a scanner sees: the names that are not hidden."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_a_set_of_files_appears_together_or_not_at_all(tmp_path):
    a, b = tmp_path / "case-t2w.nii.gz", tmp_path / "case-t2f.nii.gz"
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C between the two files
        with atomic_paths([a, b]) as (tmp_a, tmp_b):
            tmp_a.write_text("t2")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    b.write_text("old flair")
    with pytest.raises(OSError):  # a full disk on the second file
        with atomic_paths([a, b]) as (tmp_a, tmp_b):
            tmp_a.write_text("t2")
            raise OSError(28, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == [b.name] and b.read_text() == "old flair"
    with atomic_paths([a, b]) as (tmp_a, tmp_b):
        tmp_a.write_text("t2")
        tmp_b.write_text("flair")
    assert (a.read_text(), b.read_text()) == ("t2", "flair") and visible(tmp_path) == sorted([a.name, b.name])
    assert len(list(tmp_path.iterdir())) == 2


def test_a_failing_rename_puts_the_previous_files_back(tmp_path, monkeypatch):
    import os

    from tfsynth import atomic

    a, b, c = (tmp_path / f"{n}.nii.gz" for n in "abc")
    a.write_text("old a")
    real_replace = os.replace
    renames = []

    def replace(src, dst):
        renames.append(dst)
        if dst == c:  # the last file's rename fails (a full directory, say)
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError):
        with atomic_paths([a, b, c]) as tmps:
            for tmp, text in zip(tmps, ("new a", "new b", "new c"), strict=True):
                tmp.write_text(text)
    assert c in renames
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"] and a.read_text() == "old a"


def exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def test_ctrl_c_and_sigterm_during_the_renames_act_after_the_last_one(tmp_path, monkeypatch):
    import os
    import signal

    from tfsynth import atomic

    real_replace = os.replace
    for signum, expected in ((signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit)):
        folder = tmp_path / str(int(signum))
        paths = [folder / "a.nii.gz", folder / "b.nii.gz"]

        def replace(src, dst, signum=signum, first=paths[0]):
            real_replace(src, dst)
            if dst == first:
                signal.raise_signal(signum)  # arrives between the two renames

        monkeypatch.setattr(atomic.os, "replace", replace)
        previous = signal.signal(signal.SIGTERM, exit_on_sigterm)  # as tfsynth.errors.cli_entry sets it
        try:
            with pytest.raises(expected):
                with atomic_paths(paths) as tmps:
                    for tmp in tmps:
                        tmp.write_text("x")
        finally:
            signal.signal(signal.SIGTERM, previous)
        assert sorted(p.name for p in folder.iterdir()) == ["a.nii.gz", "b.nii.gz"]


def test_the_leftovers_of_a_killed_write_are_removed_by_the_next_one(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    a, b = tmp_path / "case-t2w.nii.gz", tmp_path / "case-t2f.nii.gz"
    script = textwrap.dedent(
        f"""
        import sys, time
        from tfsynth.atomic import atomic_paths
        with atomic_paths([{str(a)!r}, {str(b)!r}]) as tmps:
            tmps[0].write_text("t2")
            print("written", flush=True)
            time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "written"
    os.kill(child.pid, signal.SIGKILL)  # no cleanup can run
    child.wait()
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 2 and visible(tmp_path) == []  # nothing looks finished
    (tmp_path / ".tmp-case-t2w.nii.gz-x1_y2z3w.nii.gz").write_text("an older tfsynth's mkstemp name")
    (tmp_path / ".tmp-other-t2w.nii.gz-abcdef12.nii.gz").write_text("another file's: not touched")
    with atomic_paths([a, b]) as tmps:
        for tmp in tmps:
            tmp.write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".tmp-other-t2w.nii.gz-abcdef12.nii.gz", a.name, b.name]
    )
