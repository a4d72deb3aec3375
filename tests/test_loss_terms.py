"""The loss-term registry: one entry per weighted generator term, summed, tracked and searched from there."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfsynth.config import LossWeights
from tfsynth.models import loss_terms
from tfsynth.models.loss_terms import GENERATOR_TERMS, GeneratorStep, Term, generator_loss, search_ranges


def stub_step(cycles: list) -> GeneratorStep:
    """A batch of two 16x16 images whose terms are all nonzero; counts cycle passes in ``cycles``."""
    rng = np.random.default_rng(0)
    fake = tf.constant(rng.uniform(-1, 1, (2, 16, 16, 1)), tf.float32)
    real = tf.constant(rng.uniform(-1, 1, (2, 16, 16, 1)), tf.float32)

    def cycle():
        cycles.append(1)
        return fake * 0.5, real

    return GeneratorStep(
        fake=fake,
        target_image=real,
        target=tf.constant([1, 2]),
        pixel_weight=None,
        critic=(tf.ones((2, 2, 2, 1)) * 0.3, tf.constant([[0.1, 2.0, 0.3, 0.4], [1.0, 0.0, 0.5, 0.2]])),
        cycle=cycle,
    )


def test_every_weight_has_one_term_and_every_term_a_weight():
    fields = {f.name for f in dataclasses.fields(LossWeights) if f.name.startswith("lambda_")}
    terms = [term.weight for term in GENERATOR_TERMS]
    assert len(terms) == len(set(terms))
    assert fields == set(terms) | set(loss_terms.CRITIC_SEARCH)
    assert set(search_ranges()) <= fields
    assert all(low < high for low, high in search_ranges().values())


def test_the_loss_is_the_weighted_sum_of_the_computed_terms():
    weights = LossWeights(
        lambda_adv=0.5, lambda_cls=2.0, lambda_rec=3.0, lambda_pix=5.0, lambda_mse=7.0, lambda_ssim=11.0
    )
    cycles = []
    loss, values = generator_loss(stub_step(cycles), weights, adversarial=True)
    assert set(values) == {term.metric for term in GENERATOR_TERMS} and all(float(v) != 0 for v in values.values())
    expected = sum(getattr(weights, term.weight) * float(values[term.metric]) for term in GENERATOR_TERMS)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert len(cycles) == 1


def test_the_warm_up_and_zero_weights_skip_what_they_should():
    cycles = []
    _, values = generator_loss(stub_step(cycles), LossWeights(lambda_ssim=0.0), adversarial=False)
    adversarial = {term.metric for term in GENERATOR_TERMS if term.adversarial}
    assert all(float(values[name]) == 0 for name in adversarial | {"g_ssim"})
    assert float(values["g_pix"]) > 0 and not cycles
    _, values = generator_loss(stub_step(cycles), LossWeights(lambda_rec=0.0), adversarial=True)
    assert not cycles and float(values["g_rec"]) == 0 and float(values["g_adv"]) != 0


def test_a_new_term_is_one_entry(monkeypatch):
    extra = Term("g_extra", "lambda_pix", lambda step: tf.constant(1.0), search=(1.0, 2.0))
    monkeypatch.setattr(loss_terms, "GENERATOR_TERMS", (*GENERATOR_TERMS, extra))
    base, _ = generator_loss(stub_step([]), LossWeights(), adversarial=False)
    monkeypatch.setattr(loss_terms, "GENERATOR_TERMS", GENERATOR_TERMS)
    without, _ = generator_loss(stub_step([]), LossWeights(), adversarial=False)
    assert float(base) - float(without) == pytest.approx(LossWeights().lambda_pix, rel=1e-5)
