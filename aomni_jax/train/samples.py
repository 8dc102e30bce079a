"""Periodic samples during training: fixed prompts and fixed edit inputs → wav + spectrogram PNG.

Uses `aomni_jax.inference.pipeline` with the EMA weights. The Qwen features are whatever training used: the
hashed stand-in (`features.hashed_text_features`) unless the batches carried real ones, in which
case a Qwen feature callable can be passed.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import numpy as np
from flax import nnx

from aomni_jax.config import Config
from aomni_jax.data import loader, records
from aomni_jax.train import features

GENERATION_PROMPTS = (("T2A", "A dog barking in a quiet park"),
                      ("T2M", "A calm piano melody with soft strings"),
                      ("TTS", "Hello, this is a sample from training."))
# Dataset task names → pipeline (official) task names, for the edit inputs.
_EDIT_TASK_NAMES = {"add": "Add", "remove": "Remove", "extract": "Extract"}


def edit_inputs(data_dir: str, count: int = 2) -> list[dict[str, Any]]:
  """The first `count` add/remove/extract examples of the dataset (unshuffled, so fixed)."""
  manifest = records.Manifest.load(data_dir)
  source = loader.ExampleSource(manifest.shard_paths(data_dir))
  decoder = loader.ExampleDecoder()
  found = []
  for index in range(len(source)):
    item = source[index]  # (record bytes, example slot, ...)
    example = records.decode_record(item[0])["examples"][item[1]]
    if example["task"] in _EDIT_TASK_NAMES and example["input"]:
      decoded = decoder(item)
      found.append({"task": _EDIT_TASK_NAMES[example["task"]], "label": example["label"],
                    "audio": decoded["mel_audio"]})
      if len(found) == count:
        break
  return found


def hashed_qwen(config: Config) -> Callable:
  """The pipeline's Qwen callable for the hashed stand-in features."""
  omni = config.model.omni
  return lambda qwen_prompts: features.hashed_text_features(
      [p.text for p in qwen_prompts], omni.pad_length, omni.feature_dim)


def write_sample(path_stem: str, audio: np.ndarray, sample_rate: int, title: str) -> None:
  """[samples, channels] float audio → `<stem>.wav` and `<stem>.png` (log-magnitude spectrogram)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import soundfile  # pylint: disable=g-import-not-at-top
  peak = float(np.max(np.abs(audio))) if audio.size else 0.0
  normalised = audio / peak if peak > 0 else audio
  soundfile.write(path_stem + ".wav", np.clip(normalised, -1, 1), sample_rate, subtype="PCM_16")
  fig, ax = plt.subplots(figsize=(6, 3))
  ax.specgram(normalised.mean(axis=-1), NFFT=1024, Fs=sample_rate, noverlap=768, cmap="magma")
  ax.set_title(title, fontsize=8)
  ax.set_xlabel("s")
  ax.set_ylabel("Hz")
  fig.tight_layout()
  fig.savefig(path_stem + ".png", dpi=80)
  plt.close(fig)


def generate_samples(config: Config, spec, state, vae: nnx.Module, out_dir: str,
                     edits: Sequence[dict[str, Any]], qwen: Callable | None = None,
                     seed: int = 0) -> list[str]:
  """Generates the fixed prompts and edits with the EMA weights of `state` (a TrainState);
  returns the written wav paths."""
  from aomni_jax.inference import pipeline  # pylint: disable=g-import-not-at-top
  ema, buffers = jax.device_get((state.ema_params, state.buffers))
  heads = nnx.merge(spec.graphdefs["heads"], ema["heads"], buffers["heads"])
  dit = nnx.merge(spec.graphdefs["dit"], ema["dit"], buffers["dit"])
  pipe = pipeline.Pipeline(config, heads, dit, vae)
  requests = [pipeline.Request(task, prompt=text) for task, text in GENERATION_PROMPTS]
  requests += [pipeline.Request(e["task"], prompt=e["label"], audio=e["audio"],
                                sample_rate=config.model.mel.sample_rate) for e in edits]
  audio = pipe.generate(requests, qwen or hashed_qwen(config), key=jax.random.PRNGKey(seed),
                        steps=config.train.num_sample_steps)
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for i, (request, clip) in enumerate(zip(requests, audio)):
    name = f"{i:02d}_{request.task.replace(' ', '_').lower()}"
    stem = os.path.join(out_dir, name)
    write_sample(stem, clip, config.model.sample_rate, f"{request.task}: {request.prompt}")
    if request.audio is not None:
      write_sample(stem + "_input", np.asarray(request.audio)[:, None], config.model.sample_rate,
                   f"input of {request.task}: {request.prompt}")
    paths.append(stem + ".wav")
  return paths
