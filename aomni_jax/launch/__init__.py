"""Launching training: Cloud TPU slice facts, gcloud command lines, multi-process GPU start-up."""
