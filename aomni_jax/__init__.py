"""aomni_jax: Audio-Omni in JAX/Flax.

A frozen Qwen2.5-Omni thinker understands text, audio and video; a trainable Diffusion Transformer
(rectified flow) generates Oobleck-VAE latents conditioned on it; the VAE decodes them to 44.1 kHz
stereo audio. See `architecture.md`-style notes in the README for the data flow.
"""

__version__ = "0.1.0"
