"""The image-quality metrics behind `tfsynth.metrics`, one family per module.

* `tfsynth.quality.regions`: input checks and the evaluation regions.
* `tfsynth.quality.full_reference`: NMAE, PSNR and SSIM.
* `tfsynth.quality.vif`: visual information fidelity (pixel domain, multi-scale).
* `tfsynth.quality.niqe`: NIQE, the no-reference naturalness score.

`tfsynth.metrics` is the front: it names the metrics, scores a volume in every region
(`tfsynth.metrics.volume_metrics`) and re-exports these functions.
"""
