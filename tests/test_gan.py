"""The unified GAN's training step: loss terms, replicas, mixed precision, learning."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsynth.config import Config
from tfsynth.models import LinearDecay, build_gan
from tfsynth.models.gan import TEST_METRICS, TRAIN_METRICS
from tfsynth.quality.full_reference import ssim
from tfsynth.training.presets import tiny

SIZE = 32


def tiny_config(loss=None, **train) -> Config:
    values = tiny().to_dict()
    values["loss"].update({"lambda_ssim": 1.0, "lambda_mse": 2.0, **(loss or {})})
    values["train"].update({"epochs": 1, "steps_per_epoch": 4, **train})
    return Config.from_dict(values)


def toy_data(n=16, batch=4, seed=0):
    """A trivial paired mapping: the target image is the negated source image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
    images = np.stack([np.sin(6 * xx * rng.uniform(0.5, 2)) * np.cos(4 * yy * rng.uniform(0.5, 2)) for _ in range(n)])
    images = images[..., None].astype("float32")
    source = rng.integers(0, 4, n).astype("int32")
    target = ((source + rng.integers(1, 4, n)) % 4).astype("int32")
    inputs = {"image": images, "source": source, "target": target}
    return tf.data.Dataset.from_tensor_slices((inputs, -images)).batch(batch, drop_remainder=True)


def test_every_loss_term_is_reported_and_finite():
    gan = build_gan(tiny_config())
    history = gan.fit(toy_data(), epochs=1, validation_data=toy_data(8, seed=1), verbose=0).history
    assert set(history) == set(TRAIN_METRICS) | {f"val_{name}" for name in TEST_METRICS}
    assert all(np.isfinite(values[-1]) for values in history.values())
    assert history["gp"][-1] > 0 and history["d_cls"][-1] > 0
    assert int(gan.g_optimizer.iterations) == 4
    assert int(gan.d_optimizer.iterations) == 4 * 2  # n_critic critic updates per generator update


def _unit_weights_config() -> Config:
    """Every term on, at weight 1.

    Float rounding differs between one and two devices (sums in another order), and after a
    few SGD steps instance norm of a near-constant channel (rsqrt(var + 1e-5) ~ 300) can
    amplify it; weights of 1 and two steps (4 critic + 2 generator updates) stay clear of that.
    """
    values = tiny_config().to_dict()
    values["loss"].update(lambda_gp=1.0, lambda_cls=1.0, lambda_rec=1.0, lambda_pix=1.0)
    return Config.from_dict(values)


def _train(strategy, initial_weights, steps=2):
    """A few steps with plain SGD: Adam normalises gradient scale away, which would hide a
    loss that is off by the replica count."""
    gan = build_gan(_unit_weights_config(), strategy)
    gan.set_weights(initial_weights)
    with strategy.scope():
        gan.compile(keras.optimizers.SGD(0.02), keras.optimizers.SGD(0.02), gan.loss_weights)
        gan.g_optimizer.build(gan.generator.trainable_variables)
        gan.d_optimizer.build(gan.discriminator.trainable_variables)
    history = gan.fit(toy_data(n=4 * steps, batch=4), epochs=1, verbose=0).history
    return gan, history


def _distance(weights: list, others: list) -> float:
    """Euclidean distance between two weight lists, all variables taken as one vector."""
    return float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(weights, others, strict=True))))


def test_two_replicas_train_exactly_like_one_device(two_cpu_strategy):
    """Same global batch, seed and start: two replicas' summed gradients equal one device's."""
    keras.utils.set_random_seed(0)
    start = build_gan(_unit_weights_config()).get_weights()
    one, one_history = _train(tf.distribute.OneDeviceStrategy("/cpu:0"), start)
    two, two_history = _train(two_cpu_strategy, start)
    assert two.distribute_strategy.num_replicas_in_sync == 2
    after = one.get_weights()
    moved = max(np.max(np.abs(a - b)) for a, b in zip(after, start, strict=True))
    assert moved > 1e-3, "training did not change the weights"
    # Compare the updates, not the weights: the two runs sum the same gradients in another
    # order, and that leaves the two-replica update off by 1e-4 to 1e-3 of its size over all
    # variables (one small variable by up to 8e-3), while a loss off by the replica count
    # changes an SGD update by 50-100 %.
    update, apart = _distance(after, start), _distance(after, two.get_weights())
    assert apart <= 0.01 * update, (apart, update)
    for name in TRAIN_METRICS:
        assert one_history[name][-1] == pytest.approx(two_history[name][-1], rel=1e-3, abs=1e-4), name


def _generator_trained_against(values: dict, start: list, critic_seed: int) -> list:
    """StarGANGenerator weights after 2 steps from ``start`` against a critic with random weights."""
    gan = build_gan(Config.from_dict(values))
    # Eager: the same step, without tracing it for each of the four models (3 s instead of 10 s).
    gan.run_eagerly = True
    gan.set_weights(start)
    rng = np.random.default_rng(critic_seed)
    for variable in gan.discriminator.trainable_variables:
        variable.assign(rng.normal(0, 0.1, variable.shape).astype("float32"))
    gan.fit(toy_data(n=8), epochs=1, verbose=0)
    return gan.generator.get_weights()


def test_with_lambda_adv_and_cls_zero_the_critic_does_not_steer_the_generator():
    """The generator sees the critic only through the adversarial and classification terms:
    with both weighted 0, two different critics leave the same generator."""
    values = tiny_config().to_dict()
    values["loss"].update(lambda_adv=0.0, lambda_cls=0.0)
    keras.utils.set_random_seed(0)
    start = build_gan(Config.from_dict(values)).get_weights()
    free = [_generator_trained_against(values, start, seed) for seed in (1, 2)]
    for a, b in zip(*free, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    values["loss"]["lambda_adv"] = 1.0  # the same two critics now pull the generator apart
    steered = [_generator_trained_against(values, start, seed) for seed in (1, 2)]
    assert max(np.max(np.abs(a - b)) for a, b in zip(*steered, strict=True)) > 1e-5


def test_paired_l1_falls_on_a_trivial_mapping():
    config = tiny_config(epochs=1, steps_per_epoch=30, g_learning_rate=1e-3, d_learning_rate=1e-3)
    gan = build_gan(config)
    data = toy_data(16)
    before = gan.evaluate(data, verbose=0, return_dict=True)["l1"]
    gan.fit(data.repeat(), epochs=1, steps_per_epoch=30, verbose=0)
    after = gan.evaluate(data, verbose=0, return_dict=True)["l1"]
    assert after < 0.7 * before


def test_mixed_bfloat16_trains_and_outputs_float32():
    gan = build_gan(tiny_config(precision="mixed_bfloat16"))
    assert gan.generator.layers[0].compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # scoped, not leaked
    history = gan.fit(toy_data(), epochs=1, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in history.values())
    out = gan({"image": tf.zeros((2, SIZE, SIZE, 1)), "source": tf.constant([2, 3]), "target": tf.constant([0, 1])})
    assert out.dtype == tf.float32
    assert all(v.dtype == "float32" for v in gan.generator.trainable_variables)


def test_linear_decay_schedule():
    schedule = LinearDecay(1e-4, total_steps=100, decay_start_fraction=0.5)
    assert float(schedule(0)) == pytest.approx(1e-4)
    assert float(schedule(50)) == pytest.approx(1e-4)
    assert float(schedule(75)) == pytest.approx(5e-5)
    assert float(schedule(100)) == pytest.approx(0.0)
    assert float(schedule(150)) == pytest.approx(0.0)


def test_supervised_warmup_then_the_critic_joins_mid_epoch():
    from tfsynth.models import warmup_steps
    from tfsynth.training.callbacks import AdversarialWarmup

    config = tiny_config(warmup_fraction=0.5)
    assert warmup_steps(config) == 2
    gan = build_gan(config)
    d_before = [w.numpy().copy() for w in gan.discriminator.weights]
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((self.model.adversarial, int(self.model.d_optimizer.iterations)))

    gan.fit(toy_data(), epochs=1, verbose=0, callbacks=[AdversarialWarmup(warmup_steps(config)), Record()])
    # Two warm-up steps leave the critic untouched; then n_critic = 2 updates per generator step.
    assert seen == [(False, 0), (False, 0), (True, 2), (True, 4)]
    assert int(gan.g_optimizer.iterations) == 4
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(d_before, gan.discriminator.weights, strict=True))


def test_warmup_reports_no_critic_terms():
    gan = build_gan(tiny_config())
    gan.set_adversarial(False)
    logs = gan.fit(toy_data(), epochs=1, verbose=0).history
    assert logs["d_loss"][-1] == logs["gp"][-1] == logs["g_adv"][-1] == logs["g_rec"][-1] == 0.0
    assert logs["g_pix"][-1] > 0 and logs["g_ssim"][-1] > 0
    assert int(gan.d_optimizer.iterations) == 0


def test_dssim_term_matches_the_ssim_metric():
    from tfsynth.models import losses

    rng = np.random.default_rng(3)
    a = rng.uniform(-1, 1, (2, 32, 32, 1)).astype("float32")
    b = np.clip(a + rng.normal(0, 0.3, a.shape), -1, 1).astype("float32")
    got = losses.dssim(tf.constant(a), tf.constant(b)).numpy()
    want = [(1 - ssim((a[i, ..., 0] + 1) / 2, (b[i, ..., 0] + 1) / 2)) / 2 for i in range(2)]
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(losses.dssim(tf.constant(a), tf.constant(a)).numpy(), 0.0, atol=1e-6)


def test_lazy_gradient_penalty_applies_on_every_kth_critic_step():
    gan = build_gan(tiny_config(loss={"n_critic": 1, "gp_every": 2}))
    data = toy_data()
    gps = [gan.fit(data, epochs=1, steps_per_epoch=1, verbose=0).history["gp"][-1] for _ in range(4)]
    assert gps[0] > 0 and gps[2] > 0
    assert gps[1] == gps[3] == 0.0


def toy_subset_data(n=16, batch=4, seed=0):
    """Any-subset elements: four channels, one to three available, the target the negated mean of them."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (n, SIZE, SIZE, 4)).astype("float32")
    target = rng.integers(0, 4, n).astype("int32")
    available = (rng.uniform(size=(n, 4)) < 0.6).astype("float32")
    available[np.arange(n), (target + 1) % 4] = 1.0
    available[np.arange(n), target] = 0.0
    mean = (images * available[:, None, None, :]).sum(-1, keepdims=True) / available.sum(-1)[:, None, None, None]
    inputs = {"images": images, "available": available, "target": target}
    return tf.data.Dataset.from_tensor_slices((inputs, -mean)).batch(batch, drop_remainder=True)


def subset_config(**train) -> Config:
    values = tiny_config(**train).to_dict()
    values["model"]["any_subset"] = True
    return Config.from_dict(values)


def test_any_subset_training_reports_every_term_and_validates_both_forms():
    gan = build_gan(subset_config(warmup_fraction=0.0))
    history = gan.fit(toy_subset_data(), epochs=1, validation_data=toy_subset_data(8, seed=1), verbose=0).history
    assert all(np.isfinite(values[-1]) for values in history.values())
    # The adversarial phase runs the critic, the classification and the cycle in the subset form too.
    assert history["gp"][-1] > 0 and history["d_cls"][-1] > 0 and history["g_cls"][-1] > 0
    assert history["g_rec"][-1] > 0
    # The one-contrast form still trains and evaluates on the same model.
    assert np.isfinite(gan.fit(toy_data(8), epochs=1, verbose=0).history["g_rec"][-1])
    assert np.isfinite(gan.evaluate(toy_data(8, seed=2), verbose=0, return_dict=True)["psnr"])


def test_any_subset_cycle_rebuilds_an_available_input_from_the_fake_and_the_others():
    gan = build_gan(subset_config())
    inputs, _ = next(iter(toy_subset_data(4)))
    fake = tf.random.uniform((4, SIZE, SIZE, 1), -1, 1, seed=3)
    calls = []
    real_generator = gan.generator
    gan.generator = lambda x, training=False: calls.append(x) or real_generator(x, training=training)
    try:
        _, original = gan.cycle(inputs, fake)
    finally:
        gan.generator = real_generator
    (call,) = calls
    available, target = inputs["available"].numpy(), inputs["target"].numpy()
    for i in range(4):
        back = int(call["target"][i])
        assert available[i, back] == 1  # one of the inputs is rebuilt ...
        np.testing.assert_array_equal(original[i, ..., 0], inputs["images"][i, ..., back])
        expected = available[i].copy()
        expected[back], expected[target[i]] = 0, 1  # ... from the others plus the fake target
        np.testing.assert_array_equal(call["available"][i], expected)
        np.testing.assert_array_equal(call["images"][i, ..., target[i]], fake[i, ..., 0])
