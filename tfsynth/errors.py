"""The one exception type users see, the CLI wrapper that turns it into an exit code, and the
short form of TensorFlow's runtime errors that local inference and the serving clients report."""

from __future__ import annotations

import functools
import re
import signal
import sys
import threading
from collections.abc import Callable

from tfsynth.onednn import prefer_onednn


class TfsynthError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The message names the offending thing (file, contrast, key, tensor) and the reason.
    Command-line entry points print it as ``error: <message>`` and exit with status 2.
    """


EXIT_USAGE_ERROR = 2


def cli_entry(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wraps a ``main(argv)`` so a `TfsynthError` becomes one stderr line and exit code 2.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        prefer_onednn()  # commands import TensorFlow only inside main
        _exit_cleanly_on_sigterm()
        try:
            return main(*args, **kwargs) or 0
        except TfsynthError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


def batch_exit_status(done: str, failed_cases: list[str]) -> int:
    """Prints a batch command's outcome to stderr and returns its exit status.

    Args:
        done: what was written, e.g. ``"completed 3 case(s) into out/"``.
        failed_cases: the cases that failed (each already reported when it failed).

    Returns:
        0 when every case succeeded, else 1 (the others' outputs are complete and kept).
    """
    print(done, file=sys.stderr)
    if failed_cases:
        print(f"{len(failed_cases)} case(s) failed: {', '.join(failed_cases)}", file=sys.stderr)
        return 1
    return 0


def tf_error_message(message: str) -> str:
    """The useful part of a TensorFlow runtime error: drops node names and graph-execution preambles.

    ``"Graph execution error:\\n\\nDetected at node ...\\nassertion failed: [unknown contrast
    name(s):] [\\"foo\\"]\\n\\t [[{{node Assert}}]]"`` -> ``"assertion failed: [unknown contrast
    name(s):] [\\"foo\\"]"``. Works for messages from TF Serving too.
    """
    lines = []
    for line in str(message).splitlines():
        stripped = line.strip()
        if (
            not stripped
            or stripped.startswith(("Graph execution error", "Detected at node", "<stack traces", "[[{{", "[[node"))
            or stripped == "Detected at node:"
        ):
            continue
        lines.append(re.sub(r"\s*\[Op:[^\]]*\]$", "", stripped))
    return " ".join(lines) or str(message).strip()


def _raise_system_exit(signum, frame):
    raise SystemExit(128 + signum)


def _exit_cleanly_on_sigterm() -> None:
    """Turns SIGTERM (``kill``, ``docker stop``, batch-queue time-outs) into ``SystemExit``.

    Python's default SIGTERM action skips ``finally`` blocks, which would leave the temp
    folders of atomic writes behind; as an exception, cleanup runs.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_system_exit)
