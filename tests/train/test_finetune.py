"""Fine-tuning: DiT + heads start from a converted model directory (strictly checked), and LoRA
trains only its adapters, starting exactly at the base model, on 8 fake devices."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from aomni_jax import parallel
from aomni_jax.config import ConfigError, load_config
from aomni_jax.inference import model_dir as md
from aomni_jax.train import lora, model_io, state as state_lib, step as step_lib
from tests.train.test_step import BATCH, _batch


def _config(*overrides):
  return load_config("configs/tiny.py", ["train.warmup_steps=1", f"train.batch_size={BATCH}",
                                         *overrides])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """A model directory holding a DiT and heads (random, seed 5), as aomni-convert writes them."""
  config = _config()
  directory = str(tmp_path_factory.mktemp("converted") / "model")
  modules = state_lib.build_trainable(config, nnx.Rngs(5))
  md.save_model_dir(directory, config, modules)
  params = {k: nnx.to_pure_dict(nnx.state(m, nnx.Param)) for k, m in modules.items()}
  return directory, params


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_init_loads_the_weights_and_refuses_another_config(converted):
  directory, params = converted
  mesh = parallel.make_mesh(_config().mesh)
  loaded = model_io.load_trainable(directory, _config(), mesh)
  _assert_trees_equal(loaded, params)
  with pytest.raises(ConfigError, match=r"'dit' does not fit this config: .*(missing|mis-shaped)"):
    model_io.load_trainable(directory, _config("dit.embed_dim=96"), mesh)


def test_lora_trains_only_the_adapters_from_the_base_model(converted):
  directory, params = converted
  config = _config("train.lora_rank=2", "train.lora_alpha=4")
  mesh = parallel.make_mesh(config.mesh)
  spec = state_lib.make_state_spec(config, mesh)
  adapted = set(spec.abstract.params["dit"])
  assert adapted == set(lora.target_kernels(params["dit"]))
  assert any("self_attn" in k for k in adapted) and any("ff" in k for k in adapted)
  state = state_lib.init_state(config, spec, weights=model_io.load_trainable(directory, config,
                                                                               mesh))
  _assert_trees_equal(state_lib.module_params(state, config), params)  # B = 0 at the start
  train_step = step_lib.build_train_step(config, mesh, spec=spec)
  batch = parallel.shard_batch(_batch(config), train_step.batch_shardings)
  for _ in range(2):
    state, metrics = train_step.fn(state, batch, jax.random.PRNGKey(0))
    assert np.isfinite(float(metrics["loss"]))
  _assert_trees_equal(state.frozen, params)
  b = state.params["dit"]["blocks/self_attn/qkv/kernel"]["b"]
  assert float(np.abs(np.asarray(b)).max()) > 0
  merged = state_lib.module_params(state, config)["dit"]["blocks"]["self_attn"]["qkv"]["kernel"]
  assert not np.allclose(np.asarray(merged), params["dit"]["blocks"]["self_attn"]["qkv"]["kernel"])
  untouched = state_lib.module_params(state, config)["dit"]["project_in"]["kernel"]
  np.testing.assert_array_equal(np.asarray(untouched), params["dit"]["project_in"]["kernel"])


def test_lora_config_with_a_scale():
  config = _config("train.lora_rank=4", "train.lora_alpha=8")
  assert lora.scale(config.train) == 2.0
  assert lora.scale(dataclasses.replace(config.train, lora_alpha=0.0)) == 1.0
