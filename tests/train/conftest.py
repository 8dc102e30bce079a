"""A small synthetic dataset in the loader's on-disk format, so train tests need no downloads."""

import os

import numpy as np
import pytest

from aomni_jax.data import records, templates

RATE = 44100
# A two-block VAE of ratio 256 (4× the tiny config's): far less to compile, a quarter of the frames.
SMALL_VAE = ("vae.channels=4", "vae.c_mults=[1,2]", "vae.strides=[16,16]")


def write_dataset(directory: str, num_records: int = 6, seconds: float = 1.6, seed: int = 0,
                  amplitude: float = 1.0) -> str:
  """Records of a background + a tone with add/remove/t2a/tts examples (lossless float audio),
  all samples scaled by `amplitude`."""
  rng = np.random.default_rng(seed)
  os.makedirs(directory, exist_ok=True)
  frames = int(seconds * RATE)
  t = np.arange(frames) / RATE
  shard = records.shard_name(0, 1)
  examples_total, per_task = 0, {}
  with records.ShardWriter(os.path.join(directory, shard)) as writer:
    for i in range(num_records):
      background = (0.05 * rng.standard_normal((2, frames))).astype(np.float32)
      tone = np.broadcast_to(0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t), (2, frames))
      label = f"tone {i}"
      examples = [
          {"task": "add", "instruction": templates.user_text("add", label), "input": ["bg"],
           "target": ["bg", "fg"], "transcript": "", "label": label},
          {"task": "remove", "instruction": templates.user_text("remove", label),
           "input": ["bg", "fg"], "target": ["bg"], "transcript": "", "label": label},
          {"task": "t2a", "instruction": templates.user_text("t2a", label), "input": [],
           "target": ["fg"], "transcript": "", "label": label},
          {"task": "tts", "instruction": templates.user_text("tts"), "input": [],
           "target": ["fg"], "transcript": f"number {i}", "label": "speech"},
      ]
      for ex in examples:
        per_task[ex["task"]] = per_task.get(ex["task"], 0) + 1
      examples_total += len(examples)
      stems = {"bg": amplitude * background, "fg": (amplitude * tone).astype(np.float32)}
      writer.write(records.encode_record(f"item{i}", stems,
                                         examples, {"synthetic": True}, RATE, "wav_f32"),
                   len(examples))
  records.Manifest(shards=[shard], records=num_records, examples=examples_total,
                   per_task=per_task, per_label={}, target_seconds=seconds * examples_total,
                   licences={"synthetic": examples_total}, dropped={}, config={}).save(directory)
  return directory


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> str:
  return write_dataset(str(tmp_path_factory.mktemp("train_data")))


@pytest.fixture(scope="package", autouse=True)
def compilation_cache(tmp_path_factory):
  """Every loop run builds new jitted functions; a persistent cache lets identical programs
  compile once instead of once per run (restored when the tests of this folder are done)."""
  import jax  # pylint: disable=g-import-not-at-top
  directory = str(tmp_path_factory.mktemp("jax_cache"))
  previous = (jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  yield directory
  jax.config.update("jax_compilation_cache_dir", previous[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> str:
  """A converted model directory for the tiny config with SMALL_VAE: random VAE and thinker
  (the demo's builder; fine for tests, which check the code path and not the sound)."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from aomni_jax.config import load_config  # pylint: disable=g-import-not-at-top
  from aomni_jax.models.vae import OobleckVAE  # pylint: disable=g-import-not-at-top
  from aomni_jax.train import demo  # pylint: disable=g-import-not-at-top
  config = load_config("configs/tiny.py", list(SMALL_VAE))
  directory = str(tmp_path_factory.mktemp("model") / "tiny")
  demo.build_demo_model_dir(directory, config, OobleckVAE(config.model.vae, rngs=nnx.Rngs(0)))
  return directory
