"""Oobleck VAE training (`aomni-train` with a config whose `kind` is "vae", e.g.
configs/vae_tiny.py).

step.py      the jitted step: VAE (+ optional MS-STFT discriminator), losses in train/losses/
loop.py      crops (data/crops.py) → step → checkpoints, TensorBoard, held-out reconstructions
evaluate.py  SI-SDR and multi-resolution mel distance of held-out clips, wav + PNG
export.py    the EMA weights as the `vae` component of a converted model directory

The latent scale: the DiT trains on latents / `vae.latent_scale` (`OobleckVAE.encode`). At the
end of training it is measured as the standard deviation of posterior samples over training
crops and written into the exported directory's config.json, so the DiT's targets have about
unit variance whatever the VAE learned; configs that use the trained VAE read it from there.
"""
