"""The whole-checkpoint converter: key set at the real size, strictness, model-dir round trip, CLI."""

import json

import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from aomni_jax.cli import convert as convert_cli
from aomni_jax.config import ModelConfig, load_config
from aomni_jax.conversion import official
from aomni_jax.conversion.common import ConversionError
from aomni_jax.inference import model_dir
from aomni_jax.models.conditioners import ConditionerHeads
from aomni_jax.parity.pipeline import config_from_manifest


@pytest.fixture(scope="module")
def real_keys(golden_dir):
  return {e["key"]: tuple(e["shape"]) for e in json.loads(
      (golden_dir / "keys" / "keys.json").read_text())}


def test_expected_key_set_equals_the_real_checkpoint(real_keys):
  expected = official.expected_keys(ModelConfig())
  union = set()
  for component, keys in expected.items():
    assert keys is not None, f"{component} converter unavailable"
    assert {official.component_of(k) for k in keys} == {component}
    union |= keys
  missing, extra = set(real_keys) - union, union - set(real_keys)
  assert not missing and not extra, (sorted(missing)[:10], sorted(extra)[:10])


def test_heads_convert_at_real_shapes(real_keys):
  heads = {k: np.zeros(s, np.float32) for k, s in real_keys.items()
           if official.component_of(k) == "heads"}
  assert len(heads) == 59
  arrays = official.convert_heads(heads, ModelConfig())
  assert arrays[("transcript", "seq_proj", "kernel")].shape == (2584, 256)
  assert arrays[("mel", "empty_feature")].shape == (236, 768)


@pytest.fixture(scope="module")
def pipeline_fixture(golden_dir):
  manifest = json.loads((golden_dir / "pipeline" / "manifest.json").read_text())
  return load_file(golden_dir / "pipeline" / "weights.safetensors"), config_from_manifest(manifest)


def test_strict_errors_name_every_bad_key(pipeline_fixture):
  state, cfg = pipeline_fixture
  broken = dict(state)
  del broken["conditioner.conditioners.sync_feature.proj.bias"]
  broken["conditioner.conditioners.speech_prompt.extra"] = np.zeros(3, np.float32)
  broken["model.model.to_cond_embed.0.weight"] = np.zeros((1, 1), np.float32)
  broken["somewhere.else"] = np.zeros(1, np.float32)
  with pytest.raises(ConversionError) as info:
    official.convert_official(lambda keys: {k: broken[k] for k in keys}, broken, cfg.model,
                              lambda *_: None)
  message = str(info.value)
  for needle in ("missing heads key: conditioner.conditioners.sync_feature.proj.bias",
                 "unexpected heads key: conditioner.conditioners.speech_prompt.extra",
                 "somewhere.else"):
    assert needle in message
  del broken["conditioner.conditioners.speech_prompt.extra"]
  broken["conditioner.conditioners.sync_feature.proj.bias"] = np.zeros(5, np.float32)
  del broken["somewhere.else"]
  with pytest.raises(ConversionError) as info:  # names fine: shapes are checked per component
    official.convert_official(lambda keys: {k: broken[k] for k in keys}, broken, cfg.model,
                              lambda *_: None, skip=["qwen"])
  assert "to_cond/fc1/kernel" in str(info.value) and "sync/proj/bias" in str(info.value)


def test_orbax_round_trip_and_qwen_routing(pipeline_fixture, tmp_path, monkeypatch):
  state, cfg = pipeline_fixture
  state = dict(state)
  thinker_key = official.THINKER_PREFIX + "model.embed_tokens.weight"
  state[thinker_key] = np.zeros((4, 2), np.float32)
  monkeypatch.setattr(official, "_qwen_module", lambda: None)
  saved = {}

  def sink(component, arrays):
    saved[component] = arrays
    model_dir.save_component(tmp_path, component, arrays)

  report = official.convert_official(lambda keys: {k: state[k] for k in keys}, state, cfg.model,
                                     sink)
  assert sum(report.converted.values()) == 308
  assert report.not_converted == {official.QWEN_UNAVAILABLE: [thinker_key]}
  heads = model_dir.load_component(tmp_path, "heads", lambda: ConditionerHeads(
      cfg.model, rngs=nnx.Rngs(0)))
  restored = model_dir.flat_params(heads)
  assert restored.keys() == saved["heads"].keys()
  for path, value in saved["heads"].items():
    np.testing.assert_array_equal(restored[path], value)


CONFIG = """
import json, pathlib
from aomni_jax.parity.pipeline import config_from_manifest

def get_config(manifest):
  return config_from_manifest(json.loads(pathlib.Path(manifest).read_text()))
"""


def test_cli_converts_a_checkpoint_without_qwen(golden_dir, tmp_path, capsys):
  config = tmp_path / "fixture_config.py"
  config.write_text(CONFIG)
  spec = f"{config}:{golden_dir / 'pipeline' / 'manifest.json'}"
  weights = str(golden_dir / "pipeline" / "weights.safetensors")
  assert convert_cli.main([weights, str(tmp_path / "out"), "--config", spec]) == 2
  error = capsys.readouterr().err  # strict: the thinker is missing, nothing gets written
  assert error.startswith("aomni-convert: ")
  assert "missing qwen key: " + official.THINKER_PREFIX in error
  assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
  assert convert_cli.main([weights, str(tmp_path / "out"), "--config", spec,
                           "--skip", "qwen"]) == 0
  printed = capsys.readouterr().out
  for line in ("dit: 44 keys converted", "vae: 225 keys converted", "heads: 39 keys converted"):
    assert line in printed  # 308 keys in all
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
      "config.json", "dit", "heads", "manifest.json", "vae"]
  assert model_dir.read_config(tmp_path / "out") == load_config(spec)
  manifest = model_dir.read_manifest(tmp_path / "out")
  assert manifest["source"] == "weights.safetensors"
  assert manifest["components"]["dit"]["params"] == sum(  # rotary inv_freq is recomputed
      int(np.prod(np.shape(v))) for k, v in load_file(weights).items()
      if k.startswith("model.model.") and not k.endswith("inv_freq"))


def test_cli_reports_bad_inputs(tmp_path, capsys):
  assert convert_cli.main([str(tmp_path / "missing.ckpt"), str(tmp_path / "out")]) == 2
  assert "does not exist" in capsys.readouterr().err
  bogus = tmp_path / "bogus.safetensors"
  save_file({"model.model.unknown": np.zeros(2, np.float32)}, str(bogus))
  assert convert_cli.main([str(bogus), str(tmp_path / "out")]) == 2
  assert "model.model.unknown" in capsys.readouterr().err
  assert convert_cli.main([str(bogus), str(tmp_path / "out"), "--qwen-processor",
                           str(tmp_path / "nowhere")]) == 2
  assert "is not a folder" in capsys.readouterr().err
