"""The one exception type users see, and the CLI wrapper that turns it into an exit code."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


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
        try:
            return main(*args, **kwargs) or 0
        except TfsynthError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
