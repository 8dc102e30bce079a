"""The CPU demo on the pod code path: a converted model directory of tiny frozen modules.

`aomni-train --config configs/tiny.py` (with `data.demo_vae_config`) runs the same three stages a
real run does, only at toy sizes:
  1. the tiny VAE is trained on the embedded real recordings (`configs/vae_tiny.py`), and a
     *random* tiny Qwen-shaped thinker with a byte-level tokenizer is built
     (`models.qwen_omni.tiny`); both are saved once as `<workdir>/demo_model`, a converted model
     directory like the one `aomni-convert` writes;
  2. the frozen features are precomputed from it into `<workdir>/features` (`aomni-data
     precompute --model` does the same);
  3. the DiT trains on exactly those features, and its samples are decoded by that VAE.
Each stage is skipped when its output already exists, so a rerun resumes.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from typing import Any

import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from aomni_jax.config import Config

_log = logging.getLogger(__name__)

RANDOM_THINKER_NOTE = ("RANDOM tiny Qwen-shaped thinker (3 layers, byte tokenizer, untrained): "
                       "not Qwen2.5-Omni; its features only tell prompts apart")
SOURCE = f"aomni_jax CPU demo: {RANDOM_THINKER_NOTE}; tiny VAE trained on the embedded recordings"


def _random_value(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
  """Biases 0, norm scales 1, embeddings N(0, 0.02²), kernels N(0, 1/fan_in): well-scaled
  activations through every layer, drawn in numpy (no compilation, unlike nnx initialisers)."""
  if "bias" in name:
    return np.zeros(shape, np.float32)
  if "norm" in name or name.endswith("scale"):
    return np.ones(shape, np.float32)
  if "embed" in name:
    return 0.02 * rng.standard_normal(shape, np.float32)
  fan_in = int(np.prod(shape[:-1])) if "conv" in name or len(shape) == 2 else shape[-2]
  return rng.standard_normal(shape, np.float32) / np.sqrt(fan_in)


def random_thinker(config: Config, seed: int = 0):
  """(Thinker, ThinkerConfig): the tiny architecture at omni.feature_dim, random weights."""
  from aomni_jax.models.qwen_omni import tiny  # pylint: disable=g-import-not-at-top
  from aomni_jax.models.qwen_omni.config import from_hf_dict  # pylint: disable=g-import-not-at-top
  from aomni_jax.models.qwen_omni.thinker import Thinker  # pylint: disable=g-import-not-at-top
  cfg = from_hf_dict(tiny.hf_config(config.model.omni.feature_dim), dtype="float32",
                     param_dtype="float32")
  graphdef, state = nnx.split(nnx.eval_shape(lambda: Thinker(cfg, rngs=nnx.Rngs(0))))
  rng = np.random.default_rng(seed)
  flat = list(nnx.to_flat_state(state))
  for path, var in flat:
    var.set_value(jnp.asarray(_random_value(str(path[-1]), tuple(var.shape), rng)))
  return nnx.merge(graphdef, nnx.from_flat_state(flat)), cfg


def build_demo_model_dir(directory: str, config: Config, vae_params: Any, seed: int = 0) -> None:
  """Writes the demo's converted model directory: `vae` (given) + a random tiny `qwen`."""
  from aomni_jax.inference import model_dir as md  # pylint: disable=g-import-not-at-top
  from aomni_jax.models.qwen_omni import tiny  # pylint: disable=g-import-not-at-top
  thinker, thinker_cfg = random_thinker(config, seed)
  with tempfile.TemporaryDirectory() as processor_dir:
    tiny.byte_tokenizer().save_pretrained(processor_dir)
    md.save_model_dir(directory, config, {"vae": vae_params, "qwen": thinker},
                      processor_dir=processor_dir, source=SOURCE,
                      component_configs={"qwen": thinker_cfg})
  _log.warning("demo model directory %s: %s", directory, RANDOM_THINKER_NOTE)


def is_complete(directory: str) -> bool:
  from aomni_jax.inference import model_dir as md  # pylint: disable=g-import-not-at-top
  return (epath.Path(directory) / md.MANIFEST_FILE).exists() and all(
      md.has_component(directory, name) for name in ("vae", "qwen"))


def train_demo_vae(vae_config_path: str, workdir: str) -> tuple[str, str]:
  """Trains the VAE config (e.g. configs/vae_tiny.py) in `<workdir>/vae` (resumable); returns
  (its exported model directory, the held-out reconstruction summary line)."""
  from aomni_jax.config import load_config  # pylint: disable=g-import-not-at-top
  from aomni_jax.train.autoencoder import loop as vae_loop  # pylint: disable=g-import-not-at-top
  vae_workdir = str(epath.Path(workdir) / "vae")
  result = vae_loop.train(load_config(vae_config_path), vae_workdir)
  return result.export_dir, vae_loop.summary_line(vae_workdir)


def prepare(config: Config, workdir: str, data_dir: str) -> Config:
  """Stages 1–2 above; returns the config that trains on the precomputed features."""
  from aomni_jax.data import loader, precompute  # pylint: disable=g-import-not-at-top
  from aomni_jax.inference import model_dir as md  # pylint: disable=g-import-not-at-top
  from aomni_jax.models.vae import OobleckVAE  # pylint: disable=g-import-not-at-top
  from aomni_jax.train import frozen  # pylint: disable=g-import-not-at-top
  model_dir = str(epath.Path(workdir) / "demo_model")
  if not is_complete(model_dir):
    vae_dir, summary = train_demo_vae(config.data.demo_vae_config, workdir)
    _log.warning("demo VAE: %s", summary)
    config = frozen.with_model_dir_latent_scale(config, vae_dir)
    vae = md.load_component(vae_dir, "vae", lambda: OobleckVAE(config.model.vae,
                                                               rngs=nnx.Rngs(0)))
    build_demo_model_dir(model_dir, config, vae, config.train.seed)
  config = frozen.with_model_dir_latent_scale(config, model_dir)
  features_dir = str(epath.Path(workdir) / "features")
  modules = frozen.load_frozen(model_dir, config)
  _log.warning("training features come from %s", modules.description)
  stage = frozen.FrozenFeatures(modules, config)
  precompute.precompute(data_dir, features_dir,
                        precompute.model_features(config, stage, list(precompute.FEATURES)),
                        shapes=loader.Shapes.for_model(config.model))
  return dataclasses.replace(config, data=dataclasses.replace(
      config.data, root=features_dir, model_dir=model_dir, precomputed=True, demo_vae_config=""))
