"""A tiny Qwen2.5-Omni-shaped thinker and a byte-level tokenizer, built locally (no hub access).

For the CPU demo and the tests only: the architecture is the real one at toy sizes, the weights
are random, and the tokenizer maps every UTF-8 byte to one token (ids 0–255) followed by the
Qwen special tokens (256–266). Nothing built here is Qwen2.5-Omni; say so wherever it is used.
"""

from __future__ import annotations

import copy
from typing import Any

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>",
                  "<|audio_eos|>", "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>",
                  "<|IMAGE|>", "<|VIDEO|>")

# An HF thinker config (`Qwen2_5OmniThinkerConfig` fields) at toy sizes; special-token ids match
# `byte_tokenizer`.
HF_CONFIG: dict[str, Any] = {
    "model_type": "qwen2_5_omni_thinker",
    "audio_token_index": 259, "image_token_index": 265, "video_token_index": 266,
    "audio_start_token_id": 260, "audio_end_token_id": 261,
    "vision_start_token_id": 262, "vision_end_token_id": 263, "vision_token_id": 264,
    "bos_token_id": 257, "eos_token_id": 258, "pad_token_id": 256, "user_token_id": 872,
    "position_id_per_seconds": 25, "seconds_per_chunk": 2, "tie_word_embeddings": False,
    "text_config": {
        "model_type": "qwen2_5_omni_text", "vocab_size": 320, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6, "use_sliding_window": False, "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                            "mrope_section": [2, 3, 3]}},
    "audio_config": {
        "model_type": "qwen2_5_omni_audio_encoder", "num_mel_bins": 128, "encoder_layers": 2,
        "encoder_attention_heads": 4, "encoder_ffn_dim": 64, "d_model": 32,
        "max_source_positions": 1500, "n_window": 100, "output_dim": 64,
        "activation_function": "gelu", "scale_embedding": False},
    "vision_config": {
        "model_type": "qwen2_5_omni_vision_encoder", "depth": 3, "hidden_size": 32,
        "intermediate_size": 64, "num_heads": 4, "in_channels": 3, "patch_size": 14,
        "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
        "out_hidden_size": 64, "fullatt_block_indexes": [1], "hidden_act": "silu"},
}


def hf_config(hidden_size: int = 64) -> dict[str, Any]:
  """HF_CONFIG with the text width (and the towers' output width) set to `hidden_size`, a
  multiple of 64 (4 heads whose rotary half, hidden/8, splits 2:3:3 over the M-RoPE sections)."""
  if hidden_size % 64:
    raise ValueError(f"hidden_size {hidden_size} must be a multiple of 64")
  cfg = copy.deepcopy(HF_CONFIG)
  part = hidden_size // 64
  cfg["text_config"].update(hidden_size=hidden_size, intermediate_size=2 * hidden_size)
  cfg["text_config"]["rope_parameters"]["mrope_section"] = [2 * part, 3 * part, 3 * part]
  cfg["audio_config"]["output_dim"] = hidden_size
  cfg["vision_config"]["out_hidden_size"] = hidden_size
  return cfg


def byte_vocab() -> dict[str, int]:
  """GPT-2's byte→unicode table as the vocab (ids 0–255), then the specials (256–266)."""
  from transformers.convert_slow_tokenizer import (  # pylint: disable=g-import-not-at-top
      bytes_to_unicode)
  vocab = {ch: i for i, ch in enumerate(bytes_to_unicode()[b] for b in range(256))}
  vocab.update({tok: 256 + i for i, tok in enumerate(SPECIAL_TOKENS)})
  return vocab


def byte_tokenizer():
  """A Qwen2Tokenizer with one token per UTF-8 byte and the Qwen special tokens."""
  from transformers import Qwen2Tokenizer  # pylint: disable=g-import-not-at-top
  tokenizer = Qwen2Tokenizer(
      vocab=byte_vocab(), merges=[], eos_token="<|im_end|>", pad_token="<|endoftext|>",
      extra_special_tokens={"image_token": "<|IMAGE|>", "audio_token": "<|AUDIO|>",
                            "video_token": "<|VIDEO|>", "vision_bos_token": "<|vision_bos|>",
                            "vision_eos_token": "<|vision_eos|>",
                            "audio_bos_token": "<|audio_bos|>",
                            "audio_eos_token": "<|audio_eos|>"})
  tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
  return tokenizer
