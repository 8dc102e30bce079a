"""Config loading: Python configs, the official JSON format, overrides and validation errors."""

import json

import pytest

from aomni_jax.config import (Config, ConfigError, apply_overrides, from_official_json,
                              load_config)


def test_repository_configs_load_and_the_full_one_is_official():
  full = load_config("configs/audio_omni.py")
  architecture = lambda d: (d.io_channels, d.embed_dim, d.depth, d.num_heads, d.cond_token_dim,
                            d.global_cond_dim, d.timestep_features_dim, d.ff_mult)
  assert architecture(full.model.dit) == architecture(Config().model.dit)
  assert full.model.latent_length == 236
  assert (full.model.dit.embed_dim, full.model.dit.depth, full.model.dit.num_heads) == (2048, 36,
                                                                                      32)
  tiny = load_config("configs/tiny.py", ["dit.depth=3", "train.learning_rate=1e-4"])
  assert tiny.model.dit.depth == 3 and tiny.train.learning_rate == 1e-4


def test_official_json_sets_every_size_the_fixtures_use(golden_dir):
  official = json.loads((golden_dir / "pipeline" / "manifest.json").read_text())
  model = from_official_json(official["model_config_used"]).model
  assert (model.sample_size, model.latent_length) == (781, 24)
  assert (model.dit.embed_dim, model.dit.cond_token_dim) == (64, 32)
  assert (model.vae.channels, model.vae.strides, model.vae.latent_dim) == (8, (2, 4, 4), 8)
  assert (model.transcript.seq_len, model.transcript.proj_seq_len) == (40, 8)
  assert (model.mel.seq_len, model.sync.out_seq_len, model.omni.pad_length) == (10, 6, 64)
  assert {model.transcript.out_dim, model.mel.out_dim, model.sync.out_dim,
          model.omni.out_dim} == {32}


def test_official_json_file_is_a_config_source(tmp_path, golden_dir):
  official = json.loads((golden_dir / "pipeline" / "manifest.json").read_text())
  path = tmp_path / "Audio-Omni.json"
  path.write_text(json.dumps(official["model_config_used"]))
  assert load_config(str(path), ["dit.depth=3"]).model.dit.embed_dim == 64


@pytest.mark.parametrize("override, message", [
    ("dit.nonexistent=1", "unknown config key 'nonexistent'"),
    ("dit.depth=two", "expects int"),
    ("dit.num_heads=7", "not divisible"),
    ("dit.attention=flash", "expected one of"),
    ("train.on_nonfinite=ignore", "expected one of"),
    ("depth", "not of the form key=value"),
])
def test_bad_overrides_are_named(override, message):
  with pytest.raises(ConfigError, match=message):
    apply_overrides(Config(), [override])


def test_inconsistent_vae_json_is_rejected():
  bad = {"model": {"pretransform": {"config": {
      "encoder": {"config": {"latent_dim": 10, "channels": 8}},
      "decoder": {"config": {"latent_dim": 8, "channels": 8}}}}}}
  with pytest.raises(ConfigError, match="twice"):
    from_official_json(bad)


def test_missing_config_file_is_named(tmp_path):
  with pytest.raises(ConfigError, match="does not exist"):
    load_config(str(tmp_path / "nope.py"))
