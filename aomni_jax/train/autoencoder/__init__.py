"""Oobleck VAE training (`aomni-train` with a config whose `kind` is "vae")."""
