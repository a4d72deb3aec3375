"""Training callbacks: the supervised warm-up, step-and-epoch checkpoints, the best epoch's generator, image
grids for TensorBoard."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfsynth.models.gan import to_unit_range


class AdversarialWarmup(keras.callbacks.Callback):
    """Trains supervised only (no critic) for the first ``warmup_steps`` generator steps, then adversarially.

    ESRGAN's recipe (Wang et al. 2018): a generator pre-trained on the pixel loss starts the
    adversarial phase from good images, and a warm-up step costs a fraction of a GAN step (no
    critic update, no gradient penalty, no cycle pass). The phase follows the generator
    optimizer's step count, so a resumed run is in the phase its step says. Keras' ``fit`` calls
    ``model.train_function`` afresh every step, so re-making it here switches within an epoch.

    Args:
        warmup_steps: generator steps of the warm-up (0: adversarial from the start).
    """

    def __init__(self, warmup_steps: int):
        super().__init__()
        self.warmup_steps = int(warmup_steps)

    def _sync(self):
        adversarial = int(self.model.g_optimizer.iterations.numpy()) >= self.warmup_steps
        if adversarial != self.model.adversarial:
            self.model.set_adversarial(adversarial)
            self.model.make_train_function(force=True)

    def on_train_begin(self, logs=None):
        self._sync()

    def on_train_batch_begin(self, batch, logs=None):
        if not self.model.adversarial:
            self._sync()


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback that writes epoch-level logs only, without per-batch work.

    With ``update_freq="epoch"`` Keras 3.15's callback records nothing per batch, yet still calls
    ``summary.scalar`` on every batch log after every step (no writer is active, so nothing is
    written). On the default run (2-core CPU) those calls stalled every epoch by a large part of
    its training time (docs/speed.md); this drops them and keeps everything the callback
    writes at epoch ends (the loss terms, the validation metrics).

    Args:
        log_dir: the TensorBoard directory.
        **kwargs: as `keras.callbacks.TensorBoard`, except ``update_freq``, which is ``"epoch"``.
    """

    def __init__(self, log_dir, **kwargs):
        if kwargs.pop("update_freq", "epoch") != "epoch":
            raise ValueError("EpochTensorBoard writes epoch logs only (update_freq='epoch')")
        super().__init__(log_dir, update_freq="epoch", **kwargs)

    def on_train_batch_end(self, batch, logs=None):
        # Without logs the base class skips the batch scalars and still does the rest (graph,
        # steps per second, profiling) when those are asked for.
        super().on_train_batch_end(batch, None)


class StepCheckpoint(keras.callbacks.Callback):
    """Saves a `tf.train.CheckpointManager` after generator steps and at each epoch end.

    The manager decides when: with a ``step_counter`` and a ``checkpoint_interval`` it saves once
    that many steps have passed since its last save and never twice at one step; without an
    interval this saves at epoch ends only. Checkpoints are numbered by the step, so a restarted
    run knows where it stands.

    Args:
        manager: manages a checkpoint of the models and both optimizers.
        step: the generator step counter (the generator optimizer's ``iterations``).
    """

    def __init__(self, manager: tf.train.CheckpointManager, step):
        super().__init__()
        self.manager = manager
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if self.manager.checkpoint_interval:
            self.manager.save(checkpoint_number=int(self.step.numpy()))

    def on_epoch_end(self, epoch, logs=None):
        self.manager.save(checkpoint_number=int(self.step.numpy()), check_interval=False)


class BestEpoch(keras.callbacks.Callback):
    """Keeps the generator of the epoch with the highest ``monitor`` (validation PSNR) in its own checkpoint.

    Keras' ``ModelCheckpoint(save_best_only=True)`` does the same for a whole model in a file; this
    keeps the generator alone in a `tf.train.Checkpoint` whose score and epoch are variables of the
    same checkpoint, so a kill between saves can never pair one epoch's weights with another's
    score, and a resumed run knows the best so far. Epochs without ``monitor`` in their logs (no
    validation split) save nothing.

    Args:
        directory: where the checkpoint goes (one kept); created on the first save.
        generator: the generator whose weights are kept.
        monitor: the epoch-log key to maximise.
    """

    SCORE = "score/.ATTRIBUTES/VARIABLE_VALUE"
    EPOCH = "epoch/.ATTRIBUTES/VARIABLE_VALUE"

    def __init__(self, directory, generator, monitor: str = "val_psnr"):
        super().__init__()
        self.monitor = monitor
        self.score = tf.Variable(-np.inf, dtype=tf.float64, trainable=False)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        checkpoint = tf.train.Checkpoint(weights=_weights(generator), score=self.score, epoch=self.epoch)
        self.manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=1)
        found = best_epoch(directory)
        if found:
            self.epoch.assign(found["epoch"])
            self.score.assign(found["score"])

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value) or value <= self.score.numpy():
            return
        self.score.assign(float(value))
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


def best_epoch(directory) -> dict | None:
    """``{"path", "epoch" (1-based), "score"}`` of the checkpoint `BestEpoch` kept in ``directory``, or None."""
    path = tf.train.latest_checkpoint(str(directory))
    if not path:
        return None
    reader = tf.train.load_checkpoint(path)
    return {
        "path": path,
        "epoch": int(reader.get_tensor(BestEpoch.EPOCH)),
        "score": float(reader.get_tensor(BestEpoch.SCORE)),
    }


def _weights(model) -> list:
    """Every variable of a built ``model``, in its fixed order.

    A checkpoint of the model object would miss the layers a Keras 3 model holds in Python lists
    (the U-Net's encoder, blocks and decoder are not `tf.train.Checkpoint` children); the flat
    list, as Keras optimizers checkpoint their variables, holds them all.
    """
    return list(model.weights)


def restore_best_epoch(directory, generator) -> dict | None:
    """Loads the weights `BestEpoch` kept in ``directory`` into ``generator``; `best_epoch`'s dict, or None."""
    best = best_epoch(directory)
    if best:
        tf.train.Checkpoint(weights=_weights(generator)).restore(best["path"]).expect_partial()
    return best


class ImageGrid(keras.callbacks.Callback):
    """Writes a source | synthesized | real-target grid of fixed validation examples each epoch.

    Args:
        log_dir: TensorBoard directory (written under ``log_dir/images``).
        batch: ``(inputs, target_image)`` as the dataset yields it; up to ``max_rows`` rows shown.
        contrasts: contrast names, for the image's description.
        max_rows: examples in the grid.
    """

    def __init__(self, log_dir, batch, contrasts, max_rows: int = 4):
        super().__init__()
        inputs, target_image = batch
        self.inputs = {key: value[:max_rows] for key, value in inputs.items()}
        self.target_image = target_image[:max_rows]
        self.contrasts = contrasts
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "images"))

    def grid(self) -> np.ndarray:
        """float32 [1, rows*H, 3*W, 1] in [0, 1]."""
        fake = self.model.generator(self.inputs, training=False)
        columns = [to_unit_range(x) for x in (self.inputs["image"], fake, self.target_image)]
        rows = tf.concat(columns, axis=2)  # [N, H, 3W, 1]
        return tf.reshape(rows, (1, -1, rows.shape[2], 1)).numpy()

    def on_epoch_end(self, epoch, logs=None):
        pairs = ", ".join(
            f"{self.contrasts[s]}->{self.contrasts[t]}"
            for s, t in zip(np.asarray(self.inputs["source"]), np.asarray(self.inputs["target"]), strict=True)
        )
        with self.writer.as_default():
            tf.summary.image(
                "source | synthesized | real target",
                self.grid(),
                step=epoch + 1,
                description=f"rows (top to bottom): {pairs}",
            )
        self.writer.flush()
