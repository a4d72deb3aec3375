"""Small shared pieces of the test suite (imported by test modules; fixtures live in conftest.py)."""

from __future__ import annotations

import socket

# A model and run small enough that a whole training run takes seconds on 2 CPU cores.
TINY = {
    "data": {"image_size": 32},
    "model": {"generator_filters": 8, "residual_blocks": 1, "discriminator_filters": 8, "discriminator_layers": 3},
    "loss": {"n_critic": 2},
    # Half supervised warm-up, half adversarial: runs cross the phase switch (mid-epoch 1 of 2).
    "train": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 4, "warmup_fraction": 0.5},
}


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
