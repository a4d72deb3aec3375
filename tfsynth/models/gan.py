"""The unified GAN: one `keras.Model` that owns generator and discriminator and trains both.

``model.fit(dataset)`` takes elements ``({"image", "source", "target"}, target_image)`` (the
``(inputs, targets)`` shape ``fit`` needs under MirroredStrategy): image and target_image
float32 [B, H, W, 1] in [-1, 1], source and target int32 [B] contrast indices; or, for an
any-subset generator, ``({"images", "available", "target"}, target_image)`` with images float32
[B, H, W, K] and available [B, K] 0/1 (`tfsynth.data.pipeline.make_dataset` with subset_sizes).
The supervised terms are the same for both forms. In the subset form the critic's real images
are the targets (with their labels) and the cycle rebuilds one available input, drawn per
example, from the fake plus the other available inputs.

n_critic: Keras hands `train_step` one batch, so each call runs ``n_critic``
discriminator updates on that batch (a fresh gradient-penalty interpolation each time)
and then one generator update. The generator is frozen during the critic updates, so
its fake images are computed once and reused: one generator forward pass serves all
critic updates and the generator update (its tape is re-entered afterwards). Compared
with StarGAN, which draws a new batch for every critic step, the critic sees fewer
distinct images per generator step, but a step costs one generator forward pass fewer
and ``steps_per_epoch`` counts generator updates.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from . import losses

TRAIN_METRICS = ("d_loss", "d_adv", "d_cls", "gp", "g_loss", "g_adv", "g_cls", "g_rec", "g_pix", "g_mse", "g_ssim")
TEST_METRICS = ("l1", "psnr", "ssim")
# The input keys the generators read (one-contrast and any-subset forms).
GENERATOR_KEYS = ("image", "images", "available", "source", "target")


@keras.saving.register_keras_serializable(package="tfsynth")
class UnifiedGAN(keras.Model):
    """StarGAN-style training of a label-conditioned generator against a dual-head critic.

    Args:
        generator: maps ``(image [B,H,W,1], target int [B])`` to [B,H,W,1] in [-1, 1].
        discriminator: maps [B,H,W,1] to ``(src [B,h,w,1], cls [B,num_contrasts])``.
        num_contrasts: number of contrast labels.
        gp_seed: seed of the gradient-penalty interpolation weights. They are a
            stateless function of (seed, critic step, example position in the global
            batch), so any number of replicas draws the same numbers as one device.

    Call args:
        inputs: ``{"image", "source", "target"}``, ``{"images", "available", "target"}`` (extra
            keys ignored) or ``(image, target)``.

    Returns:
        The generator's float32 [B, H, W, 1] output.
    """

    def __init__(self, generator, discriminator, num_contrasts: int = 4, gp_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.num_contrasts = num_contrasts
        self.gp_seed = gp_seed
        # False during the supervised warm-up: no critic, no adversarial, classification or
        # cycle term. Read when the train function is traced (`set_adversarial`).
        self.adversarial = True
        self.trackers = {name: keras.metrics.Mean(name=name) for name in TRAIN_METRICS + TEST_METRICS}

    def compile(self, g_optimizer, d_optimizer, loss_weights, **kwargs):
        """Sets the optimizers and loss weights.

        Args:
            g_optimizer, d_optimizer: Keras optimizers for generator and discriminator.
            loss_weights: a `tfsynth.config.LossWeights` (lambda_adv, lambda_gp, lambda_cls,
                lambda_rec, lambda_pix, lambda_mse, lambda_ssim, n_critic, gp_every) or any
                object with those attributes.
            **kwargs: passed to `keras.Model.compile` (e.g. ``run_eagerly``).
        """
        # optimizer=None: Keras would otherwise make an rmsprop over all weights .
        kwargs.setdefault("jit_compile", False)  # XLA is slower on CPU here (docs/speed.md).
        super().compile(optimizer=None, **kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.loss_weights = loss_weights

    def set_adversarial(self, adversarial: bool) -> None:
        """Switches between the supervised warm-up and the adversarial phase.

        The train step is traced with the phase's terms only (the warm-up runs no critic), so a
        change drops the traced train function and the next `fit` traces it again.
        """
        if bool(adversarial) != self.adversarial:
            self.adversarial = bool(adversarial)
            self.train_function = None

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            inputs = {key: inputs[key] for key in GENERATOR_KEYS if key in inputs}
        return self.generator(inputs, training=training)

    def build(self, input_shape=None):
        """Creates all weights from a [1, H, W, 1] image shape (default 32 x 32)."""
        shape = (1, 32, 32, 1)
        if isinstance(input_shape, dict):
            shape = tuple(input_shape["image"])
        elif input_shape is not None and len(input_shape) == 4:
            shape = tuple(input_shape)
        image = tf.zeros((1,) + tuple(shape[1:]), tf.float32)
        label = tf.zeros((1,), tf.int32)
        self.discriminator(self.generator((image, label, label)))
        self.built = True

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skips Keras' symbolic build when `build` already created every weight.

        Under a strategy, Keras 3.15 builds by pulling one batch (which the epoch then
        misses) and averaging it over replicas, which fails for dict inputs under
        MultiWorkerMirroredStrategy. The GAN has no compiled loss or metrics to build.
        """
        if not self.built:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # --- the maths of one step, in named pieces -------------------------------------------

    def _critic(self, images):
        """Per-example Wasserstein score [B] of images [B, H, W, 1]."""
        src, _ = self.discriminator(images, training=True)
        return losses.critic_score(src)

    def _gp_alpha(self, batch_size):
        """This replica's slice of the global batch's interpolation weights, float32 [B]."""
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group if context else 0
        replicas = context.num_replicas_in_sync if context else 1
        seed = tf.stack([tf.constant(self.gp_seed, tf.int64), tf.cast(self.d_optimizer.iterations, tf.int64)])
        alpha = tf.random.stateless_uniform([batch_size * replicas], seed=seed)
        return alpha[replica * batch_size : (replica + 1) * batch_size]

    def gradient_penalty(self, real, fake):
        """WGAN-GP term, this replica's share of the global-batch mean (scalar)."""
        alpha = self._gp_alpha(tf.shape(real)[0])
        return losses.replica_mean(losses.gradient_penalty(self._critic, real, fake, alpha))

    def discriminator_step(self, real, fake, real_label):
        """One critic update; ``real_label`` int [B] the contrasts of ``real``. Returns this replica's
        (unscaled) loss terms."""
        w = self.loss_weights
        with tf.GradientTape() as tape:
            # One critic pass over real and fake together (no batch statistics inside).
            src, cls_both = self.discriminator(tf.concat([real, fake], axis=0), training=True)
            src_real, src_fake = tf.split(src, 2, axis=0)
            cls_real = cls_both[: tf.shape(real)[0]]
            adv = losses.replica_mean(losses.critic_score(src_fake) - losses.critic_score(src_real))
            cls = losses.replica_mean(losses.classification(cls_real, real_label))
            every = int(getattr(w, "gp_every", 1))
            if not w.lambda_gp:
                gp = tf.constant(0.0)
            elif every == 1:
                gp = self.gradient_penalty(real, fake)
            else:
                # Lazy regularisation (Karras et al. 2020, StyleGAN2 sec. 3.1): the penalty on one
                # critic step in ``every``, weighted by ``every`` to keep its average strength.
                due = tf.equal(self.d_optimizer.iterations % every, 0)
                gp = tf.cond(due, lambda: self.gradient_penalty(real, fake), lambda: tf.constant(0.0))
            loss = adv + w.lambda_cls * cls + w.lambda_gp * every * gp
            scaled = self.d_optimizer.scale_loss(loss)
        variables = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables, strict=True))
        return {"d_loss": loss, "d_adv": adv, "d_cls": cls, "gp": gp}

    def cycle(self, inputs, fake):
        """The cycle's reconstruction and what it should equal, both [B, H, W, 1].

        One contrast in: the source rebuilt from the fake (StarGAN). Any subset in: one available
        input per example (a stateless draw keyed on the seed and the step) rebuilt from the fake
        in the target's channel plus the other available inputs.
        """
        target = inputs["target"]
        if "images" not in inputs:
            return self.generator((fake, target, inputs["source"]), training=True), inputs["image"]
        images = tf.cast(inputs["images"], tf.float32)
        available = tf.cast(inputs["available"] > 0, tf.float32)
        seed = tf.stack([tf.constant(self.gp_seed, tf.int64), tf.cast(self.g_optimizer.iterations, tf.int64)])
        scores = tf.where(available > 0, tf.random.stateless_uniform(tf.shape(available), seed=seed), -1.0)
        back = tf.argmax(scores, axis=-1, output_type=tf.int32)
        back_hot = tf.one_hot(back, self.num_contrasts)
        target_hot = tf.one_hot(tf.cast(target, tf.int32), self.num_contrasts)
        swapped = images * (1.0 - target_hot[:, None, None, :]) + fake * target_hot[:, None, None, :]
        reconstruction = self.generator(
            {"images": swapped, "available": available - back_hot + target_hot, "target": back}, training=True
        )
        return reconstruction, tf.reduce_sum(images * back_hot[:, None, None, :], axis=-1, keepdims=True)

    def train_step(self, data):
        # A third element is the paired losses' per-pixel weight [B, H, W, 1] (Keras's
        # sample_weight slot; `make_dataset` with ``tumor_weight``).
        inputs, target_image, pixel_weight = keras.utils.unpack_x_y_sample_weight(data)
        target = inputs["target"]
        if "images" in inputs:
            generator_inputs = {key: inputs[key] for key in ("images", "available", "target")}
            # The critic's real images: the targets, the only contrast every example holds whole.
            real, real_label = target_image, target
        else:
            generator_inputs = (inputs["image"], inputs["source"], target)
            real, real_label = inputs["image"], inputs["source"]
        w = self.loss_weights
        zero = tf.constant(0.0)
        with tf.GradientTape() as g_tape:
            fake = self.generator(generator_inputs, training=True)
        d_terms = {"d_loss": zero, "d_adv": zero, "d_cls": zero, "gp": zero}
        if self.adversarial:
            frozen_fake = tf.stop_gradient(fake)
            for _ in range(int(w.n_critic)):
                d_terms = self.discriminator_step(real, frozen_fake, real_label)
        with g_tape:
            g_terms = {"g_adv": zero, "g_cls": zero, "g_rec": zero, "g_ssim": zero}
            if self.adversarial:
                src_fake, cls_fake = self.discriminator(fake, training=True)
                g_terms["g_adv"] = losses.replica_mean(-losses.critic_score(src_fake))
                g_terms["g_cls"] = losses.replica_mean(losses.classification(cls_fake, target))
            if self.adversarial and w.lambda_rec:
                # The cycle costs a second generator pass; paired data makes it optional.
                reconstruction, original = self.cycle(inputs, fake)
                g_terms["g_rec"] = losses.replica_mean(losses.l1(reconstruction, original))
            g_terms["g_pix"] = losses.replica_mean(losses.l1(fake, target_image, pixel_weight))
            g_terms["g_mse"] = losses.replica_mean(losses.squared_error(fake, target_image, pixel_weight))
            if w.lambda_ssim:
                g_terms["g_ssim"] = losses.replica_mean(losses.dssim(fake, target_image))
            g_loss = (
                w.lambda_adv * g_terms["g_adv"]
                + w.lambda_cls * g_terms["g_cls"]
                + w.lambda_rec * g_terms["g_rec"]
                + w.lambda_pix * g_terms["g_pix"]
                + w.lambda_mse * g_terms["g_mse"]
                + w.lambda_ssim * g_terms["g_ssim"]
            )
            scaled = self.g_optimizer.scale_loss(g_loss)
        variables = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(scaled, variables), variables, strict=True))
        return self._update({**d_terms, "g_loss": g_loss, **g_terms}, TRAIN_METRICS)

    def test_step(self, data):
        inputs, target_image = data
        fake01 = to_unit_range(self(inputs, training=False))
        real01 = to_unit_range(target_image)
        values = {
            "l1": tf.reduce_mean(tf.abs(fake01 - real01), axis=[1, 2, 3]),
            "psnr": tf.image.psnr(fake01, real01, max_val=1.0),
            "ssim": tf.image.ssim(fake01, real01, max_val=1.0),
        }
        for name, per_example in values.items():
            self.trackers[name].update_state(per_example)
        return _logs({name: self.trackers[name].result() for name in TEST_METRICS})

    def _update(self, replica_losses, names):
        """Feeds the trackers and returns their results.

        The losses are this replica's share of the global mean; times the replica
        count they are the replica's own mean, and a Mean tracker averages those.
        """
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context else 1
        for name in names:
            self.trackers[name].update_state(replica_losses[name] * replicas)
        return _logs({name: self.trackers[name].result() for name in names})

    def get_config(self):
        return {
            **super().get_config(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "num_contrasts": self.num_contrasts,
            "gp_seed": self.gp_seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)


def _logs(results: dict) -> dict:
    """Step logs in the shape Keras can reduce over replicas.

    Under MultiWorkerMirroredStrategy Keras 3.15 reduces logs with ``reduce("MEAN", axis=0)``,
    which needs a batch axis: give the scalars one (Keras reduces it away again).
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results


def to_unit_range(images):
    """Maps network images in [-1, 1] to [0, 1] (clipped), float32."""
    return tf.clip_by_value((tf.cast(images, tf.float32) + 1.0) / 2.0, 0.0, 1.0)
