"""Small shared pieces of the test suite (imported by test modules; fixtures live in conftest.py)."""

from __future__ import annotations

import socket

from tfsynth.presets import tiny

# A model and run small enough that a whole training run takes seconds on 2 CPU cores, as a dict.
TINY = tiny().to_dict()


def free_ports(n: int) -> list[int]:
    """``n`` distinct localhost ports that were free a moment ago.

    All sockets stay bound until every port is chosen, so the OS cannot hand out the same port
    twice. The ports are released before a server binds them, which leaves a small race with
    other processes on the machine.

    Raises:
        OSError: localhost TCP ports cannot be bound (e.g. a network-less sandbox).
    """
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            sockets.append(s)
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
