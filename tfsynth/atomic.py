"""Atomic file and directory writes: temp names in the same folder, then renames.

An interrupted run therefore leaves either the previous complete files or ``.tmp-*`` leftovers
that nothing mistakes for a finished result (the BraTS scanners skip dot files), never a half
file. `atomic_paths` does this for a set of files, such as one case's synthesised contrasts: they
appear together or not at all, and a later write of the same names removes the leftovers a
killed run (``kill -9``, a power cut) could not.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _give_default_permissions(folder: Path) -> None:
    """mkdtemp creates private (0700) folders; results should be readable like any other output
    (e.g. by a TF Serving container running as another user)."""
    os.chmod(folder, 0o777 & ~_umask())


def _temp_name(path: Path) -> Path:
    """A fresh name beside ``path``: ``.tmp-{name}-{8 hex}{suffixes}``.

    The real suffixes stay at the end so format-sniffing writers (nibabel ``.nii.gz``) still work;
    hex digits cannot spell a contrast suffix (``-t2f``, ``_flair``), so no scanner takes a
    leftover for a result.
    """
    return path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}{''.join(path.suffixes)}")


def _leftover_pattern(path: Path) -> re.Pattern:
    # [a-z0-9_]{8}: also the names tempfile.mkstemp gave before `_temp_name`.
    return re.compile(rf"{re.escape(TMP_PREFIX + path.name)}-[a-z0-9_]{{8}}{re.escape(''.join(path.suffixes))}")


def remove_leftovers(paths: Iterable[Path]) -> None:
    """Removes the temporary files an earlier, killed write of ``paths`` left beside them.

    Two processes writing the same file at once are not supported anyway (one would replace the
    other's result); here the other's write would fail, naming the file, and leave nothing behind.
    """
    by_folder: dict[Path, list[re.Pattern]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, []).append(_leftover_pattern(path))
    for folder, patterns in by_folder.items():
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                if entry.is_file(follow_symlinks=False) and any(p.fullmatch(entry.name) for p in patterns):
                    Path(entry.path).unlink(missing_ok=True)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Holds Ctrl-C (SIGINT) and ``kill`` (SIGTERM) back for the block, then delivers them.

    Blocking the signals with ``pthread_sigmask`` would not do: the kernel hands a process signal
    to any thread that does not block it (TensorFlow's, say), and Python runs the handler anyway.
    Handlers can only be set in the main thread; elsewhere the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not None]
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in received:
            signal.raise_signal(signum)


def _rename_all(tmps: list[Path], paths: list[Path]) -> None:
    """Renames every ``tmps[i]`` onto ``paths[i]``, or (on an ``OSError``) restores the previous state.

    Files being replaced are first moved aside, so a failed rename in the middle can put them back
    instead of leaving a mix of old and new files.
    """
    done: list[tuple[Path, Path | None]] = []  # (path, where its previous file was moved)
    try:
        for tmp, path in zip(tmps, paths, strict=True):
            aside = _temp_name(path) if os.path.lexists(path) else None
            if aside is not None:
                os.replace(path, aside)
            done.append((path, aside))
            os.replace(tmp, path)
    except BaseException:
        for path, aside in reversed(done):
            if aside is None:
                path.unlink(missing_ok=True)
            elif os.path.lexists(aside):
                os.replace(aside, path)
        raise
    for _, aside in done:
        if aside is not None:
            aside.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_paths(paths: Iterable[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yields a temporary path beside each of ``paths``; renames them all onto ``paths`` if the block succeeds.

    For a set of files that belong together (one case's outputs): they appear together or not at
    all. On an exception in the block no file of the set is renamed and the temporary files are
    removed; ``paths`` that existed keep their previous contents. The renames at the end run with
    Ctrl-C and SIGTERM held back (`_signals_held`), and a failing rename undoes the ones before it.
    Only ``kill -9`` or a power cut between two renames can leave part of a set, which a rerun
    completes (`tfsynth.data.output_dir.outputs_to_write`); their leftovers are removed by the next
    write of the same names (`remove_leftovers`).

    Args:
        paths: the final files, distinct; their folders are created if missing.

    Yields:
        The temporary paths, in the order of ``paths``, each an existing empty file.
    """
    paths = [Path(p) for p in paths]
    for folder in dict.fromkeys(p.parent for p in paths):
        folder.mkdir(parents=True, exist_ok=True)
    remove_leftovers(paths)
    tmps: list[Path] = []
    try:
        for path in paths:
            tmp = _temp_name(path)
            # O_EXCL: never another writer's file; mode 0o666 & ~umask: ordinary permissions.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            tmps.append(tmp)
        yield list(tmps)
        with _signals_held():
            _rename_all(tmps, paths)
    finally:
        for tmp in tmps:  # all renamed away on success
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` if the block succeeds.

    Use it for writers that want a file name (nibabel, TFRecordWriter, matplotlib); one file of
    `atomic_paths`. On an exception the temporary file is removed and ``path`` is untouched.
    """
    with atomic_paths([path]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yields a temporary directory beside ``path``; renames it to ``path`` if the block succeeds.

    Args:
        path: the final directory. It must not exist unless ``replace`` is True.
        replace: remove an existing ``path`` just before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    try:
        yield tmp
        _give_default_permissions(tmp)
        if replace and path.exists():
            shutil.rmtree(path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    """Writes ``obj`` as indented JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
