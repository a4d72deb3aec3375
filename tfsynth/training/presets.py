"""Named configurations, as tf-models' experiment factory names its experiments.

``default``: the project's default (`tfsynth.config.Config()`). ``stargan_reference``: StarGAN's
layout and loss settings (Choi et al. 2018), the reference the default is compared with.
``completion``: the default with ``model.any_subset``: one generator for any subset of contrasts
in, a missing one out (exports the completion signatures). ``tiny``: a model and schedule small
enough that a whole training run takes seconds on 2 CPU cores (the test suite's and the notebooks' quick runs).
``brats_2mm`` and ``brats_1mm``: the default network with a schedule for a real BraTS cohort prepared
at 2 mm (120 x 120 slices) or kept at 1 mm (240 x 240). Each returns a validated `Config`; derive
variants with `variant`, e.g. ``variant(stargan_reference(), train={"batch_size": 8})``.
"""

from __future__ import annotations

from collections.abc import Callable

from tfsynth.config import Config
from tfsynth.errors import TfsynthError


def default() -> Config:
    """The project's default configuration."""
    return Config()


def completion() -> Config:
    """The default, trained on any subset of inputs (``model.any_subset``, ``data.subset_sizes``).

    It keeps the paired L1 alone (lambda_pix 100, lambda_mse 0): with the default's L1 +
    squared-error split it did better on the built-in cohort and worse on the second. It keeps
    the 10 x 560 steps its completion scores were measured at. Tumour pixels weigh more in the
    paired loss (``loss.tumor_weight``): necrotic core and edema 3, enhancing tumour 2. With every
    pixel alike, some seeds lost FLAIR's edema, which BraSyn's per-image scaling turns into a
    whole-brain error; a much larger weight cost T2 and the healthy brain. The enhancing tumour's
    weight trades T1c's PSNR (it sets T1c's brightest voxels, so BraSyn's scaling) against its
    tumour SSIM (no input shows it). Half of the training draws take three inputs
    (``data.subset_sizes`` [0.25, 0.25, 0.5], BraSyn's task; the data default draws one input
    half the time): with the default mix, T1c from three inputs could lose to T1c from T1 alone;
    with this mix every bar was met on two cohorts and two seeds, at some cost to one input. The
    measurements: docs/experiments/2026-11-30-completion.md.
    """
    return variant(
        Config(),
        data={"subset_sizes": [0.25, 0.25, 0.5]},
        model={"any_subset": True},
        loss={"lambda_pix": 100.0, "lambda_mse": 0.0, "tumor_weight": [3.0, 3.0, 2.0]},
        train={"steps_per_epoch": 560},
    )


# Generator steps of the BraTS presets: 20 epochs x 5,000 steps of batch 8, 800,000 slices drawn,
# a handful of passes over a thousand training patients' brain slices (docs/training.md says how
# this was estimated and what it costs).
BRATS_SCHEDULE = {"epochs": 20, "steps_per_epoch": 5000, "batch_size": 8}


def brats_2mm() -> Config:
    """The default network on a BraTS cohort prepared at 2 mm: 120 x 120 slices (240 x 240 x 155
    at 1 mm is 120 x 120 x 78 at 2 mm), batch 8, 20 epochs x 5,000 steps. The network is the
    default's, whose receptive field spans the same number of voxels as at the default's 3 mm."""
    return variant(Config(), data={"image_size": 120}, train=BRATS_SCHEDULE)


def brats_1mm() -> Config:
    """The default network on BraTS at its native 1 mm: 240 x 240 slices, the `brats_2mm` schedule.

    Each step costs about four times a `brats_2mm` step, and the receptive field covers half the
    anatomy it covers at 2 mm; prefer `brats_2mm` unless 1 mm detail is the point."""
    return variant(Config(), data={"image_size": 240}, train=BRATS_SCHEDULE)


def stargan_reference() -> Config:
    """StarGAN (Choi et al. 2018) at 128 x 128: the label-tiled generator with 64 filters, 6
    residual blocks and transposed-conv upsampling; a 6-layer critic; WGAN-GP with lambda_adv 1,
    lambda_gp 10, lambda_cls 1, lambda_rec 10 and 5 critic steps per generator step; Adam 1e-4,
    betas (0.5, 0.999), batch 16. The paired L1 term (lambda_pix, which StarGAN lacks) keeps the
    project's weight: BraTS contrasts are co-registered."""
    return variant(
        Config(),
        data={"image_size": 128},
        model={
            "generator": "stargan",
            "generator_filters": 64,
            "residual_blocks": 6,
            "upsampling": "transposed",
            "discriminator_filters": 64,
            "discriminator_layers": 6,
        },
        loss={"lambda_adv": 1.0, "lambda_gp": 10.0, "lambda_cls": 1.0, "lambda_rec": 10.0, "n_critic": 5},
        train={"batch_size": 16, "g_learning_rate": 1e-4, "d_learning_rate": 1e-4, "beta_1": 0.5, "beta_2": 0.999},
    )


def tiny() -> Config:
    """32 x 32 images, 8 filters, 1 residual block, a 3-layer critic, 2 epochs x 3 steps of batch 4
    (the first 3 supervised, then adversarial)."""
    return variant(
        Config(),
        data={"image_size": 32},
        model={"generator_filters": 8, "residual_blocks": 1, "discriminator_filters": 8, "discriminator_layers": 3},
        loss={"n_critic": 2},
        # Half supervised warm-up, half adversarial: a run crosses the phase switch (mid-epoch 1 of 2).
        train={"epochs": 2, "steps_per_epoch": 3, "batch_size": 4, "warmup_fraction": 0.5},
    )


PRESETS: dict[str, Callable[[], Config]] = {
    "default": default,
    "completion": completion,
    "stargan_reference": stargan_reference,
    "tiny": tiny,
    "brats_2mm": brats_2mm,
    "brats_1mm": brats_1mm,
}


def preset(name: str) -> Config:
    """The configuration named ``name``.

    Raises:
        TfsynthError: an unknown name.
    """
    if name not in PRESETS:
        raise TfsynthError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def variant(base: Config, **sections: dict) -> Config:
    """A validated copy of ``base`` with some fields of its sections replaced.

    Args:
        base: the configuration to start from (not modified).
        **sections: section name (``data``, ``model``, ``loss``, ``train``) -> {field: value}.

    Raises:
        TfsynthError: an unknown section or field, or an invalid value (`Config.from_dict`).
    """
    values = base.to_dict()
    for section, fields in sections.items():
        if section not in values:
            raise TfsynthError(f"unknown config section {section!r}; sections are {', '.join(values)}")
        values[section].update(fields)
    config = Config.from_dict(values)
    config.validate()
    return config
