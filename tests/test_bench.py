"""`tfsynth.training.throughput` (under `tfsynth bench`): FLOP counts from TensorFlow's profiler."""

from __future__ import annotations

import pytest

from tfsynth.training.presets import tiny, variant
from tfsynth.training.throughput import generator_flops, preset_rows


@pytest.mark.parametrize("generator", ["stargan", "unet"])
def test_generator_flops_scale_with_the_image_area_and_cover_the_convolutions(generator):
    config = variant(tiny(), model={"generator": generator})  # 32 x 32, 8 filters, 1 residual block
    small, large = generator_flops(config), generator_flops(config, 64, 64)
    assert large == pytest.approx(4 * small, rel=0.02)  # a fully convolutional network
    assert generator_flops(config, 32, 64) == pytest.approx(2 * small, rel=0.02)
    # At least the 7x7 head conv's multiply-adds (x 2) over all 32 x 32 pixels.
    assert small > 2 * 32 * 32 * 49 * 8


def test_bench_presets_are_measured_at_their_own_size_with_their_runs_kinds_of_step():
    rows = preset_rows(["brats_1mm", "tiny"], ["float32"])
    assert [(label.split(",")[0], config.data.image_size, adversarial) for label, config, adversarial in rows] == [
        ("brats_1mm 240x240 batch 8", 240, False),  # supervised only, as its run
        ("tiny 32x32 batch 4", 32, False),  # half warm-up, half adversarial
        ("tiny 32x32 batch 4", 32, True),
    ]
