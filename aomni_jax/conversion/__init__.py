"""Checkpoints in (official Audio-Omni, Hugging Face Qwen) and out (Orbax)."""
