"""Training callbacks: the supervised warm-up, step-and-epoch checkpoints, image grids for TensorBoard."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .models.gan import to_unit_range


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
