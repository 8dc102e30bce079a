"""`transcript` fixtures: text front end, ids and the ConvNeXtV2 encoder, stage by stage."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from aomni_jax.config import TranscriptConfig
from aomni_jax.conversion.common import build_loaded
from aomni_jax.conversion.official import convert_head
from aomni_jax.layers.norms import rms_norm
from aomni_jax.models.transcript import TranscriptEncoder, tokenize
from aomni_jax.parity import CaseResult, compare, load_fixture, weights_path
from aomni_jax.text.frontend import text_to_symbols
from aomni_jax.text.vocab import symbols_to_ids

ATOL = 1e-4  # golden README: transcript atol = rtol = 1e-4 (f32 vs f64 was 1.1e-6)


def config_from_manifest(manifest: dict) -> TranscriptConfig:
  tiny = manifest.get("tiny_config", manifest.get("real_config", {}))
  out_dim = next((v for k, v in tiny.items() if k.startswith("out_dim")), 768)
  return TranscriptConfig(vocab_size=int(tiny.get("vocab_size", 2545)),
                          text_dim=int(tiny["text_dim"]), conv_layers=int(tiny["conv_layers"]),
                          conv_mult=int(tiny.get("conv_mult", 2)), seq_len=int(tiny["seq_len"]),
                          proj_seq_len=int(tiny["proj_seq_len"]), out_dim=int(out_dim))


def load_encoder(fixture_dir: pathlib.Path, cfg: TranscriptConfig,
                 manifest: dict) -> TranscriptEncoder:
  make = lambda: TranscriptEncoder(cfg, rngs=nnx.Rngs(0))  # noqa: E731
  state = load_file(weights_path(fixture_dir, manifest))
  return build_loaded(make, convert_head("transcript", state, nnx.eval_shape(make)))


def _exact(name: str, ok: bool) -> CaseResult:
  return CaseResult(name, 0.0 if ok else np.inf, 0.0 if ok else np.inf, 0.0, ok)


def _front_end(batch: str, spec: dict) -> list[CaseResult]:
  results = []
  for i, text in enumerate(spec["texts"]):
    if text is None:
      continue
    symbols = text_to_symbols(text)
    results.append(_exact(f"{batch}[{i}] symbols",
                          symbols == spec["char_lists_after_convert_char_to_pinyin"][i]))
    results.append(_exact(f"{batch}[{i}] ids",
                          symbols_to_ids(symbols) == spec["token_ids_unpadded"][i]))
  return results


@nnx.jit
def _stages(encoder: TranscriptEncoder, ids: jax.Array,
            has_text: jax.Array) -> dict[str, jax.Array]:
  """Our values of the fixture's intermediates (names as in cases.npz, torch layouts)."""
  x = encoder.embed(ids)
  out = {"intermediate_token_embedding": jnp.take(encoder.embedding[...], ids, axis=0),
         "intermediate_blocks_input": x}
  for i, block in enumerate(encoder.blocks):
    out[f"intermediate_block{i}_raw_out"] = block(x)
    x = jnp.where((ids != 0)[..., None], out[f"intermediate_block{i}_raw_out"], 0.0)
  out["intermediate_text_embedding_out"] = encoder.text_features(ids)
  normed = rms_norm(out["intermediate_text_embedding_out"], eps=1e-6)
  out["intermediate_after_norm_features"] = normed
  projected = encoder.proj(normed)
  out["intermediate_after_proj_features"] = projected
  over_time = jnp.swapaxes(projected, 1, 2)
  out["intermediate_after_proj_seq_len"] = (over_time if encoder.seq_proj is None
                                            else encoder.seq_proj(over_time))
  out["output"] = encoder(ids, has_text)
  return out


def run(fixture_dir: pathlib.Path) -> list[CaseResult]:
  fixture_dir = pathlib.Path(fixture_dir)
  manifest, arrays = load_fixture(fixture_dir)
  cfg = config_from_manifest(manifest)
  results = []
  with jax.default_matmul_precision("highest"):
    encoder = load_encoder(fixture_dir, cfg, manifest)
    for batch, spec in manifest["texts"].items():
      results += _front_end(batch, spec)
      ids, has_text = tokenize(spec["texts"], cfg.seq_len)
      ref_ids = arrays[f"{batch}_intermediate_embedding_input_ids"]
      results.append(_exact(f"{batch} embedding ids", np.array_equal(ids, ref_ids)))
      ours = _stages(encoder, jnp.asarray(ids), jnp.asarray(has_text))
      for name, value in ours.items():
        key = f"{batch}_{name}"
        if key in arrays:
          results.append(compare(key, value, arrays[key], atol=ATOL, rtol=ATOL))
  return results
