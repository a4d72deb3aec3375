"""Where a command writes: checked before any work, and a failed write said in one line.

A read-only parent folder, a full disk or a path TensorFlow cannot encode should cost the user a
second, not the whole computation and a traceback: `check_output_dir` tries the place out (it
creates and removes an empty hidden folder there, which is what permissions, read-only mounts and
ACLs actually decide) before anything is computed, and `write_error` turns an ``OSError`` met while
writing anyway (the disk filled up meanwhile) into an `OutputError` naming the path and the reason.
The writes themselves are atomic (`tfsynth.atomic`), so a failure leaves no half-written output,
and a case's files appear together; `outputs_to_write` decides what a rerun writes: only what is
missing, unless ``--overwrite``.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from tfsynth.errors import TfsynthError

K = TypeVar("K")


class OutputError(TfsynthError):
    """The output cannot be written (permissions, read-only or full file system, unusable path).

    Unlike a bad input case it is no case's fault, so a batch stops at it instead of failing every
    remaining case the same way.
    """


def shown(path: str | os.PathLike) -> str:
    """``path`` printable: bytes that are not UTF-8 (kept by Python as surrogates) as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def reason_of(error: OSError) -> str:
    """The reason of an ``OSError`` without its file name: ``"No space left on device"``."""
    if error.strerror:
        return error.strerror
    return os.strerror(error.errno) if error.errno else str(error)


def write_error(path: str | os.PathLike, error: OSError) -> OutputError:
    """The one-line error for ``error`` met while writing ``path``."""
    return OutputError(f"{shown(path)}: cannot write ({reason_of(error)})")


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_output_dir(
    directory: str | os.PathLike, what: str = "output folder", utf8: bool = False, beside: bool = False
) -> Path:
    """Checks that files can be created in ``directory`` (which is created later if missing).

    The nearest existing folder on the way is tried out by creating and removing an empty hidden
    folder in it; nothing else is created.

    Args:
        directory: the folder the command will write into (or create and write into).
        what: how to call it in the error, e.g. ``"--out"``.
        utf8: also refuse a path that is not valid UTF-8 (TensorFlow's file functions encode
            paths as UTF-8 and cannot open such a path).
        beside: ``directory`` is built beside itself and renamed into place
            (`tfsynth.atomic.atomic_directory`), so its parent is what must be writable.

    Returns:
        The folder tried out.

    Raises:
        OutputError: one line naming ``directory``, the folder at fault and the reason.
    """
    directory = Path(directory)
    if utf8:
        try:
            os.fspath(directory).encode("utf-8")
        except UnicodeEncodeError:
            raise OutputError(
                f"{what} {shown(directory)}: the path is not valid UTF-8, which TensorFlow needs to write and "
                "read TFRecords; choose a path in UTF-8"
            ) from None
    existing = _nearest_existing(directory.absolute().parent if beside else directory.absolute())
    if not existing.is_dir():
        raise OutputError(f"{what} {shown(directory)}: {shown(existing)} is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tmp-check-", dir=existing))
    except OSError as error:
        raise OutputError(
            f"{what} {shown(directory)}: cannot write in {shown(existing)} ({reason_of(error)})"
        ) from None
    return existing


def check_free_space(directory: str | os.PathLike, needed_bytes: int, what: str = "output folder") -> None:
    """Checks that the file system of ``directory`` (or its nearest existing parent) has room.

    Raises:
        OutputError: fewer than ``needed_bytes`` free, naming both in MB.
    """
    free = shutil.disk_usage(_nearest_existing(Path(directory).absolute())).free
    if free < needed_bytes:
        raise OutputError(
            f"{what} {shown(directory)}: needs about {needed_bytes / 2**20:.1f} MB, only {free / 2**20:.1f} MB free "
            f"({os.strerror(errno.ENOSPC)})"
        )


def _note(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"note: {line}", file=sys.stderr)  # keeps a progress bar intact


def outputs_to_write(
    case_id: str,
    paths: Mapping[K, Path],
    overwrite: bool = False,
    note: Callable[[str], None] = _note,
) -> dict[K, Path]:
    """The outputs of one case a run writes: all with ``overwrite``, else those missing.

    A case's outputs are written as one set (`tfsynth.atomic.atomic_paths`), so a rerun finds all
    of them or none; some only after ``kill -9``, an older tfsynth, or a user's deletion. A case
    whose outputs all exist is skipped, one with some missing gets those written (the others are
    kept as they are); either says so in one line to ``note``.

    Args:
        case_id: the case, as the notes name it.
        paths: output key (a contrast, say) -> file.
        overwrite: write them all, existing or not.
        note: receives the line (default: ``note: ...`` on stderr).

    Returns:
        The entries of ``paths`` to write, in their order; empty: skip the case.
    """
    if overwrite:
        return dict(paths)
    missing = {key: path for key, path in paths.items() if not path.exists()}  # a dangling link is no result
    present = [shown(path.name) for key, path in paths.items() if key not in missing]
    if not missing:
        note(f"case {case_id}: {', '.join(present)} already written, skipped (pass --overwrite to replace)")
    elif present:
        names = ", ".join(shown(path.name) for path in missing.values())
        note(f"case {case_id}: {', '.join(present)} already written and kept; writing the missing {names}")
    return missing
