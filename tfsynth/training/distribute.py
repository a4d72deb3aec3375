"""How tfsynth picks its `tf.distribute` strategy, the same for training and tuning."""

from __future__ import annotations

import os


def select_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG names a cluster, else MirroredStrategy.

    MirroredStrategy takes every local GPU, or the CPU when there is none.
    """
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MirroredStrategy(["/cpu:0"])


def chief_and_id(strategy) -> tuple[bool, int]:
    """(is this the chief?, task id); worker 0 is the chief when the cluster names none."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True, 0
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)), task_id
