"""The Qwen thinker on the device: prompts → fixed-length token batches → features in the jit.

Generation and editing prompts are text only (a video reaches Qwen only in V2A / V2M), so the
tokenizer is all the host needs. Prompts are left-padded to a bucket length (a power of two), so
a batch run compiles once per bucket and never per item; the features
`hidden_states[layer_idx]` [B, length, F] never leave the device before the heads, which keep
`omni.pad_length` of them (longer prompts are resampled to that, as in the official code).
"""

from __future__ import annotations

import tempfile
from typing import Sequence

import numpy as np
from etils import epath

from aomni_jax.models.qwen_omni.config import ThinkerConfig
from aomni_jax.models.qwen_omni.processing import model_inputs
from aomni_jax.models.qwen_omni.thinker import ThinkerInputs

MIN_BUCKET = 32
MAX_PROMPT_TOKENS = 4096  # twice the real head's 2048 rows; more is almost surely a mistake


class PromptTooLong(ValueError):
  """A prompt longer than `max_prompt_tokens`."""


def load_tokenizer(directory: str | epath.Path):
  """The Qwen tokenizer from a model directory's `processor/` folder (local files only; a
  gs:// folder is copied to a local temporary folder first)."""
  from transformers import AutoTokenizer
  directory = epath.Path(directory)
  if "://" in str(directory):  # a cloud path: transformers reads local files only
    local = epath.Path(tempfile.mkdtemp(prefix="aomni_tokenizer_"))
    for file in directory.iterdir():
      file.copy(local / file.name)
    directory = local
  return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def token_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
  """Unpadded token ids per prompt, as the processor's tokenizer produces them."""
  return [list(ids) for ids in tokenizer(list(texts), padding=False)["input_ids"]]


def max_prompt_tokens(pad_length: int) -> int:
  return max(pad_length, MAX_PROMPT_TOKENS)


def bucket_length(num_tokens: int, pad_length: int) -> int:
  """The padded length for prompts of up to `num_tokens`: a power of two ≥ MIN_BUCKET, capped."""
  limit = max_prompt_tokens(pad_length)
  if num_tokens > limit:
    raise PromptTooLong(f"prompt too long: {num_tokens} Qwen tokens, at most {limit} are taken")
  return min(limit, max(MIN_BUCKET, 1 << max(num_tokens - 1, 0).bit_length()))


def pad_prompts(ids: Sequence[Sequence[int]], length: int, cfg: ThinkerConfig) -> ThinkerInputs:
  """Left-pads token ids to [B, length] (pad id, mask 0) and adds the text positions."""
  out = np.full((len(ids), length), cfg.pad_token_id, np.int32)
  mask = np.zeros((len(ids), length), np.int32)
  for row, tokens in enumerate(ids):
    if len(tokens) > length:
      raise PromptTooLong(f"prompt too long: {len(tokens)} tokens, the batch is padded to "
                          f"{length}")
    if tokens:
      out[row, length - len(tokens):] = tokens
      mask[row, length - len(tokens):] = 1
  return model_inputs({"input_ids": out, "attention_mask": mask}, cfg)
