"""tfsynth: one label-conditioned GAN that synthesises any of four brain MRI contrasts from any other.

After Dai et al., "Multimodal MRI synthesis using unified generative adversarial
networks", Med Phys 2020, with StarGAN (Choi et al. 2018) as the reference
architecture. Heavy modules (TensorFlow) are imported lazily by the submodules that
need them, so ``import tfsynth`` stays cheap.
"""

import os

# TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512 VNNI, BF16 or
# AMX; on AVX2-only CPUs it falls back to Eigen, whose convolution gradients train the default
# model 1.7x slower here (README, Speed). Every tfsynth module imports TensorFlow after this
# package, so setting the switch here reaches it; a user's own TF_ENABLE_ONEDNN_OPTS=0 wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
