"""Periodic samples during training: fixed prompts and fixed edit inputs → wav + spectrogram PNG.

Uses `aomni_jax.inference.pipeline` with the EMA weights, the Qwen features of the same frozen
thinker that made the training features, and the model directory's VAE to decode.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from etils import epath
from flax import nnx

from aomni_jax.config import Config
from aomni_jax.data import loader, records
from aomni_jax.train.state import module_params

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


def write_sample(path_stem: epath.Path, audio: np.ndarray, sample_rate: int, title: str) -> None:
  """[samples, channels] float audio → `<stem>.wav` (peak-normalised) and `<stem>.png`
  (log-magnitude spectrogram), with aomni-generate's encoders; the folder may be a bucket."""
  from aomni_jax.inference import outputs  # pylint: disable=g-import-not-at-top
  path_stem.with_name(path_stem.name + ".wav").write_bytes(outputs.wav_bytes(audio, sample_rate))
  path_stem.with_name(path_stem.name + ".png").write_bytes(
      outputs.spectrogram_png(audio, sample_rate, title))


def generate_samples(config: Config, spec, state, vae: nnx.Module, out_dir: epath.Path,
                     edits: Sequence[dict[str, Any]], qwen: Callable[[list[str]], tuple],
                     seed: int = 0) -> list[str]:
  """Generates the fixed prompts and edits with the EMA weights of `state` (a TrainState);
  `qwen` maps chat prompts to (qwen_hidden, qwen_mask). Returns the written wav paths."""
  from aomni_jax.inference import pipeline  # pylint: disable=g-import-not-at-top
  ema, buffers = jax.device_get((module_params(state, config, ema=True), state.buffers))
  heads = nnx.merge(spec.graphdefs["heads"], ema["heads"], buffers["heads"])
  dit = nnx.merge(spec.graphdefs["dit"], ema["dit"], buffers["dit"])
  pipe = pipeline.Pipeline(config, heads, dit, vae)
  requests = [pipeline.Request(task, prompt=text) for task, text in GENERATION_PROMPTS]
  requests += [pipeline.Request(e["task"], prompt=e["label"], audio=e["audio"],
                                sample_rate=config.model.mel.sample_rate) for e in edits]
  audio = pipe.generate(requests, lambda prompts: qwen([p.text for p in prompts]),
                        key=jax.random.PRNGKey(seed),
                        steps=config.train.num_sample_steps)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = []
  for i, (request, clip) in enumerate(zip(requests, audio)):
    name = f"{i:02d}_{request.task.replace(' ', '_').lower()}"
    stem = out_dir / name
    write_sample(stem, clip, config.model.sample_rate, f"{request.task}: {request.prompt}")
    if request.audio is not None:
      write_sample(stem.with_name(name + "_input"), np.asarray(request.audio)[:, None],
                   config.model.sample_rate, f"input of {request.task}: {request.prompt}")
    paths.append(f"{stem}.wav")
  return paths
