"""The frozen features of a converted model directory: Qwen hidden states of the chat prompt
(padding-invariant, the configured layer, packed as the omni head packs them), the VAE posterior,
and `precompute --model` storing exactly what the training stage computes on the fly, resumably."""

import os

import jax
import numpy as np
import pytest

from aomni_jax import parallel
from aomni_jax.config import load_config
from aomni_jax.data import loader, precompute, records, templates
from aomni_jax.models.conditioners import round_to_bf16
from aomni_jax.models.qwen_omni.processing import model_inputs
from aomni_jax.models.qwen_omni.thinker import resolve_layer_index
from aomni_jax.train import features, frozen
from tests.train.conftest import SMALL_VAE

# Shorter than the tiny pad_length (128) in bytes, which is what the byte tokenizer counts.
PROMPTS = ["<|im_start|>user\nA dog barks.<|im_end|>",
           "<|im_start|>system\nEdit.<|im_end|>\n<|im_start|>user\nAdd rain.<|im_end|>"]


@pytest.fixture(scope="module")
def config(model_dir):
  return load_config("configs/tiny.py", [*SMALL_VAE, f"data.model_dir={model_dir}"])


@pytest.fixture(scope="module")
def stage(config, model_dir):
  modules = frozen.load_frozen(model_dir, config)
  assert "RANDOM tiny Qwen-shaped thinker" in modules.description  # never passed off as Qwen
  return frozen.FrozenFeatures(modules, config)


def test_qwen_features_are_the_layer_of_each_prompt_alone(config, stage):
  """Batched, left-padded to a bucket and packed == the thinker run on each prompt unpadded."""
  hidden, mask = stage.qwen(PROMPTS)
  thinker, tokenizer = stage.modules.thinker, stage.modules.tokenizer
  assert hidden.shape == (2, config.model.omni.pad_length, config.model.omni.feature_dim)
  layer = resolve_layer_index(config.model.omni.layer_idx, thinker.cfg.text.num_layers)
  for i, prompt in enumerate(PROMPTS):
    ids = tokenizer([prompt], return_tensors="np")
    alone = np.asarray(thinker.hidden_states(model_inputs(ids, thinker.cfg))[layer])[0]
    count = ids["input_ids"].shape[1]
    assert mask[i].sum() == count and mask[i, :count].all()
    # The stored features hold bf16 values (the official conditioner's Qwen runs in bf16): equal
    # to the rounded reference up to one bf16 ulp (2^-8 relative) where rounding tips over.
    np.testing.assert_allclose(hidden[i, :count], np.asarray(round_to_bf16(alone)),
                               rtol=2**-8, atol=1e-6)
    assert not np.any(hidden[i, count:])
  assert not np.allclose(hidden[0, :8], hidden[1, :8])
  # A chat prompt longer than pad_length is resampled to fill it, as the omni conditioner does.
  long_hidden, long_mask = stage.qwen([templates.chat_prompt("t2a", "A dog barks.")])
  assert long_mask.all() and np.all(np.any(long_hidden[0] != 0, axis=-1))


def test_vae_posterior_is_the_scaled_encoder_posterior(config, stage):
  audio = 0.1 * np.random.default_rng(0).standard_normal((2, 2, 40000)).astype(np.float32)
  mean, std = stage.posterior(audio)
  vae = stage.modules.vae
  padded = np.pad(audio, ((0, 0), (0, 0), (0, config.model.sample_size - 40000)))
  posterior = vae.posterior(np.swapaxes(padded, 1, 2))
  scale = config.model.vae.latent_scale
  np.testing.assert_allclose(mean, np.asarray(posterior.mean) / scale, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(std, np.asarray(posterior.std) / scale, rtol=1e-5, atol=1e-6)
  assert mean.shape == (2, config.model.latent_length, config.model.vae.latent_dim)


def _examples(data_dir, shapes):
  source = loader.ExampleSource(records.Manifest.load(data_dir).shard_paths(data_dir))
  decoder = loader.ExampleDecoder(shapes)
  return [decoder(source[i]) for i in range(len(source))]


def test_precompute_stores_what_the_stage_computes_and_resumes(config, stage, synthetic_dataset,
                                                               tmp_path):
  shapes = loader.Shapes.for_model(config.model)
  out = str(tmp_path / "features")
  fns = precompute.model_features(config, stage, list(precompute.FEATURES))
  manifest = precompute.precompute(synthetic_dataset, out, fns, batch_size=4, shapes=shapes,
                                   progress=False)
  assert set(manifest.features) == {"qwen_hidden", "qwen_mask", "latent_mean", "latent_std",
                                    "sync_features", "transcript_ids", "log_mel"}
  stored = _examples(out, shapes)[:4]
  assert not any(ex["sync_features"].any() for ex in stored)  # no videos: zero sync features
  batch = {k: np.stack([ex[k] for ex in stored]) for k in stored[0]}
  # The training stage on the raw audio (on-the-fly route) gives the same arrays.
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  on_the_fly = features.FrozenStage(config, mesh, stage.modules, 4)(
      {k: v for k, v in batch.items() if k not in manifest.features})
  for name in ("qwen_hidden", "qwen_mask", "latent_mean", "latent_std", "transcript_ids"):
    np.testing.assert_allclose(np.asarray(on_the_fly[name]), batch[name], rtol=1e-5, atol=1e-6,
                               err_msg=name)
  # Resume: finished shards are skipped; a shard without its counts file is done again, the same.
  calls = []
  counting = {"count": lambda b: calls.append(len(b["task_id"])) or {}, **fns}
  precompute.precompute(synthetic_dataset, out, counting, batch_size=4, shapes=shapes,
                        progress=False)
  assert not calls
  shard = manifest.shards[0]
  with open(os.path.join(out, shard), "rb") as handle:
    before = handle.read()
  os.remove(records.counts_path(os.path.join(out, shard)))
  precompute.precompute(synthetic_dataset, out, counting, batch_size=4, shapes=shapes,
                        progress=False)
  assert sum(calls) >= manifest.examples
  with open(os.path.join(out, shard), "rb") as handle:
    assert handle.read() == before


def test_a_model_dir_for_other_shapes_is_refused(model_dir):
  from aomni_jax.conversion.common import ConversionError  # pylint: disable=g-import-not-at-top
  other = load_config("configs/tiny.py", [*SMALL_VAE, "vae.channels=8"])
  with pytest.raises(ConversionError, match="mis-shaped"):
    frozen.load_frozen(model_dir, other)
