"""tfsynth: one label-conditioned GAN that synthesises any of four brain MRI contrasts from any other.

After Dai et al., "Multimodal MRI synthesis using unified generative adversarial
networks", Med Phys 2020, with StarGAN (Choi et al. 2018) as the reference
architecture. Heavy modules (TensorFlow) are imported lazily by the submodules that
need them, so ``import tfsynth`` stays cheap. Importing it changes no process-wide setting;
the commands turn on TensorFlow's oneDNN CPU kernels (`tfsynth.onednn.prefer_onednn`).
"""

__version__ = "0.2.0"
