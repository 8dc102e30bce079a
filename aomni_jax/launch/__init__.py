"""Launching training: Cloud TPU slice facts (slices.py), gcloud command lines (tpu.py), the
scripts the TPU workers run (remote.py, check.py), multi-process GPU start-up (gpu.py)."""
