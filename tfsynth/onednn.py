"""Process-wide TensorFlow switches that tfsynth sets where it starts a process, never on import.

The commands (`tfsynth.errors.cli_entry` wraps every ``main``) call `prefer_onednn` before they
import TensorFlow. A library user who wants the same speed sets the variable before importing
TensorFlow::

    import os
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    import tensorflow as tf
"""

from __future__ import annotations

import os


def prefer_onednn() -> None:
    """Turns on TensorFlow's oneDNN CPU kernels unless ``TF_ENABLE_ONEDNN_OPTS`` is already set.

    TensorFlow enables them by default only on CPUs with AVX-512 VNNI, BF16 or AMX; on AVX2-only
    CPUs it falls back to Eigen, whose convolution gradients train the default model markedly
    slower (docs/speed.md). TensorFlow reads the variable once, when it is first imported, so
    this has no effect after that.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
