"""The VAE converter folds weight norm correctly, is strict, and covers every official VAE key."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from aomni_jax.config import VAEConfig
from aomni_jax.conversion.common import ConversionError, conv1d, conv_transpose1d
from aomni_jax.conversion.vae import convert_vae, official_shapes, target_shapes
from aomni_jax.parity.vae import vae_config_from_manifest

PREFIX = "pretransform.model."


@pytest.fixture(scope="module")
def fixture(golden_dir):
  d = golden_dir / "vae"
  manifest = json.loads((d / "manifest.json").read_text())
  return (load_file(str(d / "weights.safetensors")),
          load_file(str(d / "weights_folded_reference.safetensors")),
          vae_config_from_manifest(manifest))


def test_real_checkpoint_vae_keys_shapes_and_counts(golden_dir):
  entries = json.loads((golden_dir / "keys" / "keys.json").read_text())
  entries = entries["keys"] if isinstance(entries, dict) else entries
  official = {e["key"]: tuple(e["shape"]) for e in entries
              if e["component"] in ("vae_encoder", "vae_decoder")}
  expected = official_shapes(VAEConfig())
  assert expected == official
  counts = {part: sum(int(np.prod(s)) for k, s in expected.items() if k.startswith(PREFIX + part))
            for part in ("encoder", "decoder")}
  assert counts == {"encoder": 77_989_888, "decoder": 78_122_626}
  # Folding drops one gain per output (Conv1d) or input (ConvTranspose1d) channel, nothing else.
  gains = sum(s[0] for k, s in expected.items() if k.endswith(".weight_g"))
  assert sum(int(np.prod(s)) for s in target_shapes(VAEConfig()).values()) == (
      77_989_888 + 78_122_626 - gains)


def test_folding_matches_the_reference(fixture):
  weights, folded, cfg = fixture
  ours = convert_vae(weights, cfg)
  # The already-folded reference converts too, and to the same arrays.
  from_reference = convert_vae(folded, cfg)
  assert ours.keys() == from_reference.keys()
  for path in ours:
    np.testing.assert_allclose(ours[path], from_reference[path], atol=1e-6, rtol=1e-6)
  # Spot-check both layouts against the reference directly.
  np.testing.assert_allclose(ours[("encoder", "conv_in", "kernel")],
                             conv1d(folded[PREFIX + "encoder.layers.0.weight"]), atol=1e-6)
  np.testing.assert_allclose(ours[("decoder", "blocks", 0, "up", "kernel")],
                             conv_transpose1d(folded[PREFIX + "decoder.layers.1.layers.1.weight"]),
                             atol=1e-6)


def test_transposed_conv_gain_is_per_input_channel(fixture):
  weights, folded, _ = fixture
  key = PREFIX + "decoder.layers.1.layers.1"
  v, g = weights[key + ".weight_v"], weights[key + ".weight_g"]
  assert g.shape == (v.shape[0], 1, 1) and v.shape[0] != v.shape[1]  # [in, out, k], in != out
  per_input = g * v / np.sqrt(np.sum(np.square(v), axis=(1, 2), keepdims=True))
  np.testing.assert_allclose(folded[key + ".weight"], per_input, atol=1e-6)


def test_problems_are_all_reported_and_other_prefixes_ignored(fixture):
  weights, _, cfg = fixture
  broken = dict(weights)
  del broken[PREFIX + "decoder.layers.2.layers.3.layers.1.bias"]
  broken[PREFIX + "encoder.layers.0.bias"] = np.zeros(3, np.float32)
  broken[PREFIX + "encoder.layers.9.alpha"] = np.zeros(3, np.float32)
  broken["model.model.something.weight"] = np.zeros(3, np.float32)  # not ours: ignored
  with pytest.raises(ConversionError) as err:
    convert_vae(broken, cfg)
  message = str(err.value)
  assert "decoder/blocks/1/res_units/1/conv_dilated/bias" in message
  assert "encoder/conv_in/bias" in message and "mis-shaped" in message
  assert PREFIX + "encoder.layers.9.alpha" in message
  assert "model.model.something" not in message


def test_unpaired_weight_norm_is_an_error(fixture):
  weights, _, cfg = fixture
  broken = dict(weights)
  del broken[PREFIX + "encoder.layers.0.weight_v"]
  with pytest.raises(ConversionError, match="encoder.layers.0.weight_g"):
    convert_vae(broken, cfg)
