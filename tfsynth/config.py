"""Nested dataclass configuration with a strict JSON round trip.

``Config.from_dict`` rejects unknown keys and invalid values before any work starts, so a
typo in a config file is one clear error, not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tfsynth.errors import TfsynthError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# Which weights a run exports: its best epoch by validation PSNR, or its last.
EXPORT_EPOCHS = ("best", "last")
UPSAMPLING = ("resize", "transposed")
GENERATORS = ("unet", "stargan")
# Default probabilities of 1, 2 and 3 inputs in any-subset training (`DataConfig.subset_sizes`):
# trained on one input only, the generator cannot use three; this mix can, for a small loss on the
# one-to-one pairs (docs/experiments/2026-11-30-any-subset-mix.md).
SUBSET_SIZES = (0.5, 0.25, 0.25)
# The tumour labels of prepared data, in `LossWeights.tumor_weight` order (BraTS 2023 labels 1, 2, 3;
# `tfsynth.data.brats` maps BraTS 2020's enhancing label 4 to 3).
TUMOR_LABELS = ("necrotic core", "edema", "enhancing tumour")


def _is_number(value) -> bool:
    """A JSON number: an int or a float, not a bool (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def tumor_weights(value) -> list[float]:
    """``loss.tumor_weight`` as three floats (one per `TUMOR_LABELS`); a number stands for all three.

    Raises:
        TfsynthError: not a non-negative number nor three of them.
    """
    weights = [value] * len(TUMOR_LABELS) if _is_number(value) else value
    if not (
        isinstance(weights, (list, tuple))
        and len(weights) == len(TUMOR_LABELS)
        and all(_is_number(w) and w >= 0 for w in weights)
    ):
        raise TfsynthError(
            f"loss.tumor_weight must be a non-negative number or {len(TUMOR_LABELS)} of them "
            f"({', '.join(TUMOR_LABELS)}), got {value!r}"
        )
    return [float(w) for w in weights]


@dataclasses.dataclass
class DataConfig:
    """Where the prepared data lives and how examples are drawn.

    Attributes:
        image_size: H = W of the slices the network sees; a multiple of 4.
        flip: random left-right flips during training.
        subset_sizes: with ``model.any_subset``, the probabilities of drawing 1, 2 and 3 input
            contrasts per training example (non-negative, summing to 1); a draw larger than the
            contrasts a slice has besides its target takes them all.
    """

    image_size: int = 80
    flip: bool = True
    subset_sizes: list = dataclasses.field(default_factory=lambda: list(SUBSET_SIZES))


@dataclasses.dataclass
class ModelConfig:
    """StarGANGenerator and discriminator architecture and sizes.

    ``generator``: ``"unet"`` (the default: `tfsynth.models.UNetGenerator`, conditioned on the
    (source, target) pair after every instance norm) or ``"stargan"`` (the reference: target label
    tiled as input channels); the U-Net beat the lookup-table baseline on more pairs at equal
    wall-clock (docs/experiments/2026-11-30-designs-at-equal-wall-clock.md). The sizes (16
    filters, 4 residual blocks) buy the default run more steps within its budget on a 2-core CPU;
    the StarGAN reference is 64 filters and 6 residual blocks.
    """

    generator: str = "unet"
    generator_filters: int = 16
    residual_blocks: int = 4
    # "resize" (nearest 2x + 3x3 conv) or StarGAN's "transposed" 4x4 stride-2 convs, which left
    # checkerboard artefacts in the short default run.
    upsampling: str = "resize"
    discriminator_filters: int = 16
    discriminator_layers: int = 5
    # unet only: hat-encoding centres of the input intensity, and the per-pair lookup table on
    # them (0: neither).
    intensity_bins: int = 16
    # unet only: any subset of the contrasts in (the missing one out), drawn per training example
    # by data.subset_sizes; False: one contrast in, as the paper. Off by default: at equal steps
    # the mix of subsets costs the one-to-one pairs, which the default is measured on
    # (docs/experiments/2026-11-30-any-subset-mix.md); the "completion" preset turns it on.
    any_subset: bool = False


@dataclasses.dataclass
class LossWeights:
    """Weights of the loss terms.

    lambda_gp, lambda_cls and lambda_rec are StarGAN's (Choi et al. 2018). lambda_pix weighs the
    paired L1 to the co-registered real target (pix2pix uses 100, Isola et al. 2017) and lambda_mse
    the paired squared error beside it, so the adversarial term sharpens rather than leads. The
    default splits the paired term, 50 and 500: the L1's minimiser is the conditional median of the
    target, the squared error's its mean, and PSNR scores the mean. Where the target varies from
    patient to patient beyond what the source shows (where healthy tissue falls in each T1c volume's
    percentile window), the L1 alone lost T1 -> T1c to the lookup table; the split won it back and
    kept the easy pairs' margins (docs/experiments/2026-11-30-designs-at-equal-wall-clock.md).
    n_critic is 1, not StarGAN's 5: on a CPU budget five critic updates halve the generator's
    progress per second. lambda_adv weighs the generator's adversarial term (StarGAN: 1; 0 trains
    the generator without the critic). It is 0.1 because a WGAN critic's gradient is not bounded the
    way pix2pix's cross-entropy is: at weight 1 it was as large as a weight-100 paired L1 and drew
    stripes into short runs' images. lambda_ssim weighs a structural dissimilarity term
    (1 - SSIM) / 2 beside the paired terms (Zhao et al. 2017), which won the default its SSIM margins over the
    lookup table. gp_every > 1 applies the gradient penalty on one critic step in gp_every, weighted
    by gp_every (StyleGAN2's lazy regularisation). tumor_weight weighs the paired L1 and squared
    error on tumour pixels against the rest of the image (weight 1): one weight per BraTS 2023 label
    of the prepared slices, [necrotic core (1), edema (2), enhancing tumour (3)], or one number for
    all three (a config file may give either; it is stored as three). The tumour is about 1 % of a
    slice, and a completion scored with BraSyn's per-image scaling stands or falls on its brightest
    tissue, FLAIR's edema; the enhancing tumour, which no input shows, is the one label a larger
    weight made worse (docs/experiments/2026-11-30-completion.md). [1, 1, 1] weighs every pixel
    alike; slices without a segmentation are weighed alike whatever it is.
    """

    lambda_adv: float = 0.1
    lambda_gp: float = 10.0
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_pix: float = 50.0
    lambda_mse: float = 500.0
    lambda_ssim: float = 20.0
    n_critic: int = 1
    gp_every: int = 1
    tumor_weight: list = dataclasses.field(
        default_factory=lambda: [1.0] * len(TUMOR_LABELS), metadata={"coerce": tumor_weights}
    )


@dataclasses.dataclass
class TrainConfig:
    """Optimisation schedule: Adam(beta 0.5, 0.999) with linear decay over the second half.

    The generator's learning rate is 1e-3, five times pix2pix's 2e-4 (the critic keeps 2e-4; 2e-3
    learned less in equal time), and the batch is 4, not 8: the default run has 8,400 steps, not
    StarGAN's 200k, and more, smaller steps learned as much per CPU second.
    ``warmup_fraction`` of the steps train the generator on the paired terms alone (no critic);
    the rest adds the critic, the adversarial, classification and cycle terms (ESRGAN's schedule).
    The default is 1: within the default's budget the adversarial phase lowered PSNR and SSIM
    and did not make the images more natural (NIQE), so the default run is supervised; set it
    below 1 to train the critic (docs/experiments/2026-11-30-designs-at-equal-wall-clock.md).
    float32 is the default precision: on CPUs with AVX2 and no AVX-512-BF16 or AMX, TF 2.21's
    bf16 convolution gradients run many times slower than float32 (docs/speed.md).
    """

    epochs: int = 10
    # 10 x 840 steps: what fits the default run's budget of a quarter of an hour on a 2-core CPU,
    # phantom build and export included (docs/experiments/2026-11-25-default-run-quality.md).
    steps_per_epoch: int = 840
    batch_size: int = 4
    g_learning_rate: float = 1e-3
    d_learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    decay_start_fraction: float = 0.5
    warmup_fraction: float = 1.0
    precision: str = "float32"
    seed: int = 0
    # "best": export the epoch with the highest validation PSNR (`tfsynth.training.callbacks.BestEpoch`);
    # "last": the final weights. A long run on few patients overfits the nearly-identity pairs
    # (docs/experiments/2026-11-25-longer-runs.md); a run without a validation split exports its
    # last epoch either way.
    export_epoch: str = "best"
    # The exported SavedModel averages each answer with its answer on the left-right mirrored
    # slice when training drew flips (`data.flip` and a known left-right axis): twice the
    # generator's inference cost for a higher mean brain PSNR on every cohort measured
    # (docs/experiments/2026-11-25-default-run-quality.md).
    export_mirror_average: bool = True


@dataclasses.dataclass
class Config:
    """The full effective configuration of a run; ``config.json`` in a run directory."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossWeights = dataclasses.field(default_factory=LossWeights)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Builds a validated config; missing keys take defaults, unknown keys are an error."""
        config = _from_dict(cls, values, "config")
        config.validate()
        return config

    @classmethod
    def from_json_file(cls, path: str | Path) -> Config:
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise TfsynthError(f"config {path}: no such file") from None
        except json.JSONDecodeError as error:
            raise TfsynthError(f"config {path}: not valid JSON ({error})") from None
        try:
            return cls.from_dict(values)
        except TfsynthError as error:
            raise TfsynthError(f"config {path}: {error}") from None

    def training_subset_sizes(self) -> list[float] | None:
        """``data.subset_sizes`` if the run trains on any subset of inputs, else None (one input)."""
        return list(self.data.subset_sizes) if self.model.any_subset else None

    def validate(self) -> None:
        """Raises `TfsynthError` naming the first invalid value."""
        if self.data.image_size < 16 or self.data.image_size % 4:
            raise TfsynthError(f"data.image_size must be a multiple of 4 and >= 16, got {self.data.image_size}")
        for name in ("generator_filters", "residual_blocks", "discriminator_filters", "discriminator_layers"):
            _require(
                getattr(self.model, name) >= (0 if name == "residual_blocks" else 1),
                f"model.{name}",
                getattr(self.model, name),
            )
        if self.model.generator not in GENERATORS:
            raise TfsynthError(
                f"model.generator must be {' or '.join(map(repr, GENERATORS))}, got {self.model.generator!r}"
            )
        _require(
            self.model.intensity_bins == 0 or self.model.intensity_bins >= 2,
            "model.intensity_bins",
            self.model.intensity_bins,
        )
        check_subset_sizes(self.data.subset_sizes)
        if self.model.any_subset and self.model.generator != "unet":
            raise TfsynthError("model.any_subset needs model.generator 'unet'")
        if self.model.upsampling not in UPSAMPLING:
            raise TfsynthError(
                f"model.upsampling must be {' or '.join(map(repr, UPSAMPLING))}, got {self.model.upsampling!r}"
            )
        if (
            self.data.image_size % (2**self.model.discriminator_layers)
            and self.data.image_size < 2**self.model.discriminator_layers
        ):
            raise TfsynthError(
                f"model.discriminator_layers={self.model.discriminator_layers} downsamples "
                f"image_size={self.data.image_size} below one pixel"
            )
        for field in dataclasses.fields(LossWeights):
            value = getattr(self.loss, field.name)
            if "coerce" in field.metadata:  # checks its own value (tumor_weight)
                field.metadata["coerce"](value)
                continue
            _require(
                value >= 0 if field.name not in ("n_critic", "gp_every") else value >= 1, f"loss.{field.name}", value
            )
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            _require(getattr(self.train, name) >= 1, f"train.{name}", getattr(self.train, name))
        for name in ("g_learning_rate", "d_learning_rate"):
            _require(getattr(self.train, name) > 0, f"train.{name}", getattr(self.train, name))
        for name in ("decay_start_fraction", "warmup_fraction"):
            _require(0 <= getattr(self.train, name) <= 1, f"train.{name}", getattr(self.train, name))
        if self.train.export_epoch not in EXPORT_EPOCHS:
            raise TfsynthError(
                f"train.export_epoch must be {' or '.join(map(repr, EXPORT_EPOCHS))}, got {self.train.export_epoch!r}"
            )
        if self.train.precision not in PRECISIONS:
            raise TfsynthError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.train.precision!r}")


def check_subset_sizes(sizes) -> None:
    """Three non-negative probabilities (of 1, 2, 3 inputs) summing to 1, else `TfsynthError`."""
    numbers = isinstance(sizes, (list, tuple)) and all(_is_number(p) for p in sizes)
    if not numbers or len(sizes) != 3 or min(sizes) < 0 or abs(sum(sizes) - 1.0) > 1e-6:
        raise TfsynthError(
            f"data.subset_sizes must be 3 non-negative probabilities of 1, 2, 3 inputs summing to 1, got {sizes!r}"
        )


def _require(condition: bool, name: str, value) -> None:
    if not condition:
        raise TfsynthError(f"{name} has an invalid value {value!r}")


def _from_dict(cls, values, where: str):
    if not isinstance(values, dict):
        raise TfsynthError(f"{where} must be a JSON object, got {type(values).__name__}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise TfsynthError(f"unknown key {where}.{unknown[0]}; valid keys: {', '.join(fields)}")
    kwargs = {}
    for name, value in values.items():
        default = (
            fields[name].default_factory()
            if fields[name].default_factory is not dataclasses.MISSING
            else fields[name].default
        )
        if dataclasses.is_dataclass(default):
            kwargs[name] = _from_dict(type(default), value, f"{where}.{name}")
        elif "coerce" in fields[name].metadata:
            kwargs[name] = fields[name].metadata["coerce"](value)
        else:
            kwargs[name] = _coerce(value, default, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(value, default, where: str):
    """Checks a JSON value against the type of the field's default (ints accepted for floats)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = _is_number(value)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise TfsynthError(f"{where} must be of type {type(default).__name__}, got {value!r}")
    return value
