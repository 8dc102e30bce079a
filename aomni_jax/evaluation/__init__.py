"""Offline evaluation: embedding distances, label scores, ASR error rates and editing fidelity."""
