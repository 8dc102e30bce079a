"""`pipeline` fixtures: one official generation call, stage by stage and end to end.

Stages, each fed from the saved arrays: (1) every conditioner head, including the bf16 omni path;
(2) the high/low-level assembly (exact); (3) DiT + CFG per step; (4) the Euler loop from the
saved noise; (5) the VAE decoder; then (6) the whole chain from the raw inputs through
`Pipeline.generate` and the API post-processing.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from aomni_jax.audio.mel import log_mel_spectrogram
from aomni_jax.config import Config, ModelConfig, SamplingConfig, from_official_json
from aomni_jax.models.conditioners import (ConditionerHeads, assemble, pack_qwen_features,
                                           rms_norm_bf16)
from aomni_jax.models.dit import DiTConditioning
from aomni_jax.models.transcript import tokenize
from aomni_jax.parity import CaseResult, compare, load_fixture, weights_path
from aomni_jax.inference.pipeline import (Pipeline, QwenPrompt, Request, build_inputs, from_state_dict,
                                postprocess_int16)
from aomni_jax.sampling import sample, velocity_fn
from aomni_jax.text import prompts
from aomni_jax.text.frontend import text_to_symbols
from aomni_jax.text.vocab import symbols_to_ids

COND_ATOL = 1e-4  # golden README: conditioner outputs
EXACT = 0.0  # assembled tensors, the bf16 omni intermediates, ids and prompt strings


def sampler_atol(ref: np.ndarray) -> float:
  """Golden README: 5e-5 · max|ref| for sampler arrays and the decoded waveform (CFG 7)."""
  return 5e-5 * float(np.abs(ref).max())


def config_from_manifest(manifest: dict) -> Config:
  """The official tiny config plus the sizes the fixture swapped in (`tiny_dims`)."""
  official = manifest["model_config_used"]
  tiny = manifest["tiny_dims"]
  cfg = from_official_json(official)
  model = cfg.model
  conditioners = {c["id"]: c["config"] for c in official["model"]["conditioning"]["configs"]}
  cond_dim = int(official["model"]["conditioning"]["cond_dim"])
  speech, mel = conditioners["speech_prompt"], conditioners["audio_input_prompt"]
  model = dataclasses.replace(
      model,
      omni=dataclasses.replace(model.omni, feature_dim=int(tiny["qwen_dim"]), out_dim=cond_dim),
      transcript=dataclasses.replace(model.transcript, text_dim=int(tiny["tts_text_dim"]),
                                     conv_layers=int(tiny["tts_conv_layers"]),
                                     seq_len=int(speech["seq_len"]),
                                     proj_seq_len=int(speech["proj_seq_len"]), out_dim=cond_dim),
      mel=dataclasses.replace(model.mel, n_fft=int(mel["n_fft"]),
                              hop_length=int(mel["hop_length"]),
                              win_length=int(mel["win_length"]),
                              n_mels=int(mel["n_mel_channels"]),
                              sample_rate=int(mel["target_sample_rate"]),
                              seq_len=int(mel["seq_len"]), out_dim=cond_dim),
      sync=dataclasses.replace(model.sync, out_dim=cond_dim),
      vae=dataclasses.replace(model.vae, dtype="float32", param_dtype="float32"))
  notes = manifest.get("model_config_notes", {})
  sampling = SamplingConfig(steps=int(notes.get("steps", 100)),
                            cfg_scale=float(notes.get("cfg_scale", 7.0)))
  return dataclasses.replace(cfg, model=model, sampling=sampling)


def _exact(name: str, ok: bool) -> CaseResult:
  return CaseResult(name, 0.0 if ok else np.inf, 0.0 if ok else np.inf, EXACT, ok)


def _ours(a) -> jax.Array:
  return jnp.swapaxes(jnp.asarray(a), 1, 2)  # [B, C, T] ↔ [B, T, C]


def _int16(a: np.ndarray) -> jax.Array:
  return jnp.asarray(a.astype(np.float32) / 32768.0)


def _requests(case: dict, arrays, prefix: str, sample_rate: int) -> list[Request]:
  """The fixture's items as our Requests (raw inputs, before any preparation)."""
  out = []
  for b, item in enumerate(case["items"]):
    task, text = item["task"], item["text_prompt"]
    audio, reference, sync = None, None, None
    if item["mel_waveform"] != "zeros":
      audio = np.asarray(_int16(arrays[prefix + "mel_waveform_int16"][b]))
    if task == "TTS":
      speech = item["speech_prompt"]
      reference = speech[:-len(text)] if text and speech.endswith(text) else None
      text = speech if reference is None else text
      if audio is not None:  # the fixture stores the Gradio-padded voice; give the raw 6 s
        audio = audio[:int(6 * sample_rate)]
    if item["sync_features"] != "zeros":
      sync = arrays[prefix + "sync_features"][b]
    if task in prompts.EDIT_TASKS:  # the edit's object is quoted in its instruction
      quoted = re.findall(r"'([^']*)'", text)
      text, source, target = quoted[0], quoted[0], quoted[-1]
    else:
      source = target = ""
    out.append(Request(task=task, prompt=text, source=source, target=target, audio=audio,
                       sample_rate=sample_rate, reference_text=reference, sync_features=sync))
  return out


@nnx.jit(static_argnums=(1, 2))
def _head_outputs(heads: ConditionerHeads, pad_length: int, mel_cfg, hidden, mask, sync, ids,
                  has_text, wave, omni_padded) -> dict[str, jax.Array]:
  """Every head's output and the saved-array intermediates, in one compiled call."""
  log_mel = log_mel_spectrogram(wave, mel_cfg)
  omni, omni_mask = heads.omni(hidden, mask)
  return {"omni_padded_bf16": pack_qwen_features(hidden, mask, pad_length)[0],
          "omni_after_rmsnorm_bf16": rms_norm_bf16(omni_padded),
          "cond_omni_prompt": omni, "cond_omni_prompt_mask": omni_mask,
          "cond_sync_feature": heads.sync(sync),
          "cond_speech_prompt": heads.transcript(ids, has_text),
          "mel_after_proj_sequence_features": heads.mel.seq_proj(jnp.swapaxes(log_mel, 1, 2)),
          "cond_audio_input_prompt": heads.mel(log_mel)}


def _conditioner_stage(heads: ConditionerHeads, cfg: ModelConfig, p: str, case: dict,
                       arrays) -> list[CaseResult]:
  """Stage 1: each head from the saved inputs, plus the front end and the bf16 omni internals."""
  texts = [item["speech_prompt"] for item in case["items"]]
  results = []
  for i, symbols in enumerate(case.get("speech_prompt_char_lists") or []):
    ours = text_to_symbols(texts[i])
    results.append(_exact(f"{p}speech_prompt[{i}] symbols", ours == symbols))
    results.append(_exact(f"{p}speech_prompt[{i}] ids",
                          symbols_to_ids(ours) == case["speech_prompt_token_ids"][i]))
  ids, has_text = tokenize(texts, cfg.transcript.seq_len)
  outputs = _head_outputs(heads, cfg.omni.pad_length, cfg.mel,
                          jnp.asarray(arrays[p + "qwen_hidden_states"]),
                          jnp.asarray(arrays[p + "qwen_attention_mask"]),
                          jnp.asarray(arrays[p + "sync_features"]), jnp.asarray(ids),
                          jnp.asarray(has_text), _int16(arrays[p + "mel_waveform_int16"]),
                          jnp.asarray(arrays[p + "omni_padded_bf16"]))
  for name, value in outputs.items():
    exact = "bf16" in name or name.endswith("_mask")
    results.append(compare(p + name, value, arrays[p + name], atol=EXACT if exact else COND_ATOL,
                           rtol=EXACT if exact else COND_ATOL))
  return results


def _saved_conditioning(p: str, arrays) -> DiTConditioning:
  return DiTConditioning(jnp.asarray(arrays[p + "cross_attn_cond"]),
                         jnp.asarray(arrays[p + "cross_attn_mask"]).astype(bool),
                         jnp.asarray(arrays[p + "global_cond"]))


def _assembly_stage(pipe: Pipeline, p: str, requests: list[Request], arrays) -> list[CaseResult]:
  """Stage 2: concatenation of the saved head outputs (exact), and the production path."""
  saved = assemble(*(jnp.asarray(arrays[p + k]) for k in (
      "cond_omni_prompt", "cond_omni_prompt_mask", "cond_speech_prompt", "cond_sync_feature",
      "cond_audio_input_prompt")))
  results = [compare(p + "cross_attn_cond", saved.cross_cond, arrays[p + "cross_attn_cond"],
                     atol=EXACT),
             compare(p + "cross_attn_mask", saved.cross_mask, arrays[p + "cross_attn_mask"],
                     atol=EXACT),
             compare(p + "global_cond", saved.global_cond, arrays[p + "global_cond"], atol=EXACT)]
  inputs = build_inputs(requests, arrays[p + "qwen_hidden_states"],
                        arrays[p + "qwen_attention_mask"], pipe.cfg.model)
  ours = pipe.condition(inputs)
  tag = " (requests → build_inputs → heads)"
  results += [compare(p + "cross_attn_cond" + tag, ours.cross_cond, arrays[p + "cross_attn_cond"],
                      atol=COND_ATOL, rtol=COND_ATOL),
              compare(p + "cross_attn_mask" + tag, ours.cross_mask, arrays[p + "cross_attn_mask"],
                      atol=EXACT),
              compare(p + "global_cond" + tag, ours.global_cond, arrays[p + "global_cond"],
                      atol=COND_ATOL, rtol=COND_ATOL)]
  return results


def _sampler_stages(pipe: Pipeline, p: str, arrays) -> list[CaseResult]:
  """Stages 3–5: DiT + CFG per step, the Euler loop from the noise, the decoder."""
  s = pipe.cfg.sampling
  cond = _saved_conditioning(p, arrays)
  results = []
  velocity = jax.jit(velocity_fn(nnx.merge(*pipe.dit), cond, guided=True, cached_context=False))
  xs, ts = arrays[p + "x_before_each_step"], arrays[p + "t_each_step"]
  ours = np.stack([np.asarray(_ours(velocity(_ours(xs[k]), jnp.asarray(ts[k]),
                                             jnp.float32(s.cfg_scale), jnp.float32(0.0))))
                   for k in range(len(xs))])
  ref = arrays[p + "v_cfg_each_step"]
  results.append(compare(p + "v_cfg_each_step", ours, ref, atol=sampler_atol(ref)))
  # The plain path here; Pipeline.generate (stage 6) takes the cached-context path.
  final = sample(*pipe.dit, _ours(arrays[p + "noise"]), cond, steps=s.steps,
                 cfg_scale=s.cfg_scale, cached_context=False)
  ref = arrays[p + "final_latent"]
  results.append(compare(p + "final_latent", _ours(final), ref, atol=sampler_atol(ref)))
  ref = arrays[p + "decoded_waveform"]
  results.append(compare(p + "decoded_waveform (from saved final_latent)",
                         _ours(pipe.decode(_ours(arrays[p + "final_latent"]))), ref,
                         atol=sampler_atol(ref)))
  return results


def _end_to_end(pipe: Pipeline, p: str, case: dict, requests: list[Request],
                arrays) -> list[CaseResult]:
  """Stage 6: raw inputs → Pipeline.generate with the injected noise → audio and int16."""
  seen = []

  def qwen(prompts: list[QwenPrompt]):
    seen.extend(q.text for q in prompts)
    return arrays[p + "qwen_hidden_states"], arrays[p + "qwen_attention_mask"]

  audio = pipe.generate(requests, qwen, noise=_ours(arrays[p + "noise"]))
  ref = arrays[p + "decoded_waveform"]
  return [_exact(p + "qwen prompts", seen == [item["qwen_prompt"] for item in case["items"]]),
          compare(p + "decoded_waveform (end to end)", _ours(audio), ref, atol=sampler_atol(ref)),
          compare(p + "api_postprocessed_int16 (end to end)", postprocess_int16(audio),
                  arrays[p + "api_postprocessed_int16"], atol=1.0)]


def run(fixture_dir: pathlib.Path, cases: tuple[str, ...] | None = None) -> list[CaseResult]:
  """Every stage for every case of the fixture (or only the named `cases`)."""
  fixture_dir = pathlib.Path(fixture_dir)
  manifest, arrays = load_fixture(fixture_dir)
  cfg = config_from_manifest(manifest)
  results = []
  with jax.default_matmul_precision("highest"):
    pipe = from_state_dict(load_file(weights_path(fixture_dir, manifest)), cfg)
    heads = nnx.merge(*pipe.heads)
    for name, case in manifest["cases"].items():
      if cases is not None and name not in cases:
        continue
      p = f"{name}_"
      requests = _requests(case, arrays, p, cfg.model.mel.sample_rate)
      results += _conditioner_stage(heads, cfg.model, p, case, arrays)
      results += _assembly_stage(pipe, p, requests, arrays)
      results += _sampler_stages(pipe, p, arrays)
      results += _end_to_end(pipe, p, case, requests, arrays)
  return results
