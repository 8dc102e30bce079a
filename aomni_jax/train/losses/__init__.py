"""Training losses that are not the flow objective: spectral reconstruction and adversarial."""
