"""Small shared pieces of the test suite (imported by test modules; fixtures live in conftest.py)."""

from __future__ import annotations

import socket

from tfsynth.training.presets import tiny

# A model and run small enough that a whole training run takes seconds on 2 CPU cores, as a dict.
TINY = tiny().to_dict()


def small_any_subset_unet(seed: int, size: int = 32):
    """A built any-subset U-Net generator (8 filters, 1 residual block, 8 bins) seeded ``seed``,
    for size x size slices: big enough to be a real serving graph, small enough to export in seconds."""
    import tensorflow as tf

    from tfsynth.models import UNetGenerator

    tf.keras.utils.set_random_seed(seed)
    model = UNetGenerator(filters=8, residual_blocks=1, intensity_bins=8, any_subset=True)
    model((tf.zeros((1, size, size, 1)), tf.constant([0]), tf.constant([1])))
    return model


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
