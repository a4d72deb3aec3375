"""Shared test set-up: two logical CPU devices, and a tiny phantom cohort built once per session.

The logical devices must be configured before TensorFlow initialises its runtime,
so this happens at import time.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# As the commands do (tfsynth.onednn.prefer_onednn); subprocesses and notebook kernels inherit it.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

TWO_CPUS = ["/cpu:0", "/cpu:1"]


@pytest.fixture(scope="session")
def two_cpu_strategy():
    """One MirroredStrategy over the two logical CPUs for the whole session.

    Two strategies over the same devices in one process draw the same collective group and
    instance keys, and TF then aborts the second one's all-reduce with "Shape mismatch in the
    collective instance"; so tests share this one.
    """
    return tf.distribute.MirroredStrategy(TWO_CPUS)


@pytest.fixture(scope="session")
def phantom_cohort(tmp_path_factory):
    """Four tiny phantom subjects (4 mm voxels, 60x60x39) in BraTS 2023 layout."""
    from tfsynth.phantom.cohort import write_cohort

    root = tmp_path_factory.mktemp("cohort")
    write_cohort(root, subjects=4, seed=7, voxel_size=4.0, naming="brats2023")
    return root


@pytest.fixture(scope="session")
def prepared_data(phantom_cohort, tmp_path_factory):
    """The phantom cohort prepared as 32x32 slices, split 2 / 1 / 1 subjects."""
    from tfsynth.data.preparation import prepare

    out = tmp_path_factory.mktemp("prepared") / "data"
    prepare(phantom_cohort, out, size=32, split=(0.5, 0.25, 0.25), seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_saved_model(tmp_path_factory):
    """Factory ``size -> path``: the untrained generator of the ``tiny`` preset (the default
    architecture at 8 filters, 1 residual block) exported as a serving SavedModel with a size x
    size canvas; one export per size per session."""
    from tfsynth.models import build_generator
    from tfsynth.savedmodel.io import write_saved_model
    from tfsynth.training.presets import tiny

    exported = {}

    def export(size: int):
        if size not in exported:
            tf.keras.utils.set_random_seed(0)
            generator = build_generator(tiny())  # write_saved_model builds it
            path = tmp_path_factory.mktemp(f"model{size}") / "saved_model"
            exported[size] = write_saved_model(generator, path, {"image_size": size})
        return exported[size]

    return export
