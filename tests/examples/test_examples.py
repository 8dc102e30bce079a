"""Every script in examples/ runs at tiny size and does what its docstring says."""

import jax
import numpy as np
import pytest
from flax import nnx

from aomni_jax.config import load_config
from aomni_jax.models import registry

_TINY = load_config("configs/tiny.py").model
FRAMES = _TINY.sample_size // _TINY.vae.downsampling_ratio  # latent frames of a tiny clip


def _finite(tree) -> bool:
  return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(tree))


@pytest.mark.slow  # compiles the full train step and the guided sampler
def test_custom_attention_trains_loads_official_weights_and_samples():
  from examples import custom_attention
  out = custom_attention.main(["--train-steps", "2", "--sample-steps", "1"])
  assert len(out["losses"]) == 2 and _finite(out["losses"])
  assert out["latents"].shape == (1, FRAMES, _TINY.vae.latent_dim) and _finite(out["latents"])
  # The swapped DiT really uses the custom function, and holds the official weights.
  dit = out["swapped"]
  assert dit.blocks.self_attn.attention_fn is custom_attention.cosine_attention
  for ours, theirs in zip(jax.tree.leaves(nnx.state(dit, nnx.Param)),
                          jax.tree.leaves(out["official"]), strict=True):
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.slow  # compiles the full train step
def test_new_conditioner_head_is_trained_and_adds_a_token():
  from examples import new_conditioner_head
  out = new_conditioner_head.main(["--train-steps", "2"])
  assert _finite(out["losses"])
  assert np.abs(out["kernel"]).max() > 0  # zero at init: the head received gradients
  cond = out["conditioning"]
  assert cond.global_cond.shape == (2, 8 + 16 + 1, 64) and _finite(cond.global_cond)


def test_heun_sampling_is_closer_to_the_reference_than_euler_at_equal_cost():
  from examples import heun_sampling
  out = heun_sampling.main(["--steps", "6", "--reference-steps", "48"])
  assert out["latents"].shape == (2, FRAMES, _TINY.vae.latent_dim) and _finite(out["latents"])
  assert 0 < out["errors"]["heun"] < out["errors"]["euler_same_evals"]


def test_finetune_heads_changes_only_the_heads():
  from examples import finetune_heads
  out = finetune_heads.main(["--steps", "2"])
  assert _finite(out["losses"])
  jax.tree.map(np.testing.assert_array_equal, out["dit_before"], out["dit_after"])
  before, after = out["heads_before"], out["heads_after"]
  # Adam moves every weight with a non-zero gradient (a zero-initialised projection still blocks
  # the gradient of what feeds it at the first steps, e.g. the sync head's time projection).
  for path in (("omni", "proj", "kernel"), ("mel", "proj", "kernel"), ("sync", "proj", "kernel")):
    a, b = before, after
    for key in path:
      a, b = a[key], b[key]
    assert np.any(a != b), path


def test_intercepted_block_outputs_are_the_blocks_activations():
  from examples import intercept_activations
  out = intercept_activations.main([])
  blocks = out["block_outputs"]
  assert blocks.shape == (2, 2, 8 + 16 + FRAMES, 64) and _finite(blocks)
  assert not np.allclose(blocks[0], blocks[1])  # the layers do something
  np.testing.assert_array_equal(out["velocity"], out["plain"])  # capturing changes nothing
  assert out["timestep"].shape == (2, 64)


def test_unknown_builder_names_say_what_is_known():
  from aomni_jax.config import ModelConfig, ModulesConfig
  with pytest.raises(ValueError, match="neither registered"):
    registry.build("dit", ModelConfig(modules=ModulesConfig(dit="nope")), nnx.Rngs(0))
  with pytest.raises(ValueError, match="cannot be imported"):
    registry.builder("heads", "no_such_module_xyz:build")


def test_import_path_builder_needs_no_registration():
  builder = registry.builder("dit", "examples.custom_attention:build_dit")
  from examples import custom_attention
  assert builder is custom_attention.build_dit


def test_official_heads_load_into_the_new_head_strictly_refused_or_listed(tmp_path):
  """docs/research.md §5: strict by default; strict=False names what was left at init."""
  from aomni_jax.conversion.common import ConversionError
  from aomni_jax.inference import model_dir
  from examples import common, new_conditioner_head
  model = common.tiny_config().model
  official = registry.build_heads(model, nnx.Rngs(3))
  model_dir.save_component(tmp_path, "heads", official)
  factory = lambda: new_conditioner_head.build_heads(model, nnx.Rngs(0))
  with pytest.raises(ConversionError, match="pooled_text"):
    model_dir.load_component(tmp_path, "heads", factory)
  heads, fresh = model_dir.load_component(tmp_path, "heads", factory, strict=False)
  assert fresh == ["pooled_text/bias", "pooled_text/kernel"]
  np.testing.assert_array_equal(heads.omni.proj.kernel[...], official.omni.proj.kernel[...])
