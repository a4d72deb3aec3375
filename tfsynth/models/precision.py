"""Mixed-precision policies, scoped so that building one model does not change the next."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

from tfsynth.config import PRECISIONS
from tfsynth.errors import TfsynthError


@contextlib.contextmanager
def precision_scope(name: str) -> Iterator[None]:
    """Sets the global Keras dtype policy to ``name`` for the layers created in the block.

    Layers keep the policy they were created with, so models built inside the block
    stay mixed-precision after it ends, and the previous global policy comes back.

    Args:
        name: ``float32``, ``mixed_bfloat16`` (fast on CPUs with AMX / AVX512-BF16) or
            ``mixed_float16`` (GPUs; needs loss scaling, see `wrap_optimizer`).
    """
    if name not in PRECISIONS:
        raise TfsynthError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def wrap_optimizer(optimizer, precision: str):
    """Adds dynamic loss scaling for float16 (bfloat16 has float32's range and needs none)."""
    if precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
