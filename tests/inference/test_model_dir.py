"""The converted model directory: round trip, manifest, strictness, shardings, dtype, processor."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from aomni_jax import parallel
from aomni_jax.config import Config, MeshConfig, SamplingConfig
from aomni_jax.conversion.common import ConversionError
from aomni_jax.inference import model_dir
from aomni_jax.layers.linear import Buffer, Dense
from aomni_jax.models.qwen_omni.config import ThinkerConfig


class Toy(nnx.Module):
  """Two dense layers in a list (integer path parts) and a buffer."""

  def __init__(self, width: int = 16, *, rngs: nnx.Rngs, extra: bool = False):
    self.layers = nnx.List([Dense(width, width, rngs=rngs, axes=("embed", "mlp"))
                            for _ in range(2)])
    self.table = Buffer(jax.random.normal(rngs.params(), (4, width)))
    if extra:
      self.gate = Dense(width, 2, rngs=rngs, axes=("embed", None))


def _values(module) -> dict:
  return {k: np.asarray(v) for k, v in model_dir.flat_params(module).items()}


def test_round_trip_manifest_and_config(tmp_path):
  cfg = dataclasses.replace(Config(), sampling=SamplingConfig(steps=17, cfg_scale=4.5))
  toy = Toy(rngs=nnx.Rngs(1))
  thinker = dataclasses.replace(ThinkerConfig(), audio_token_id=7)
  model_dir.save_model_dir(tmp_path, cfg, {"dit": toy, "qwen": model_dir.flat_params(toy)},
                           source="model.ckpt", component_configs={"qwen": thinker})
  assert model_dir.read_config(tmp_path) == cfg
  manifest = json.loads((tmp_path / "manifest.json").read_text())
  assert manifest["format"] == 1 and manifest["source"] == "model.ckpt"
  entry = manifest["components"]["dit"]
  assert entry["params"] == 2 * (16 * 16 + 16) + 4 * 16 and entry["dtype"] == "float32"
  assert model_dir.component_config(tmp_path, "qwen", ThinkerConfig) == thinker
  assert model_dir.has_component(tmp_path, "dit") and not model_dir.has_component(tmp_path, "vae")
  loaded = model_dir.load_component(tmp_path, "dit", lambda: Toy(rngs=nnx.Rngs(2)))
  for path, value in _values(toy).items():
    np.testing.assert_array_equal(_values(loaded)[path], value)
  assert model_dir.checksum(loaded) == entry["checksum"]
  assert manifest["components"]["qwen"]["checksum"] == entry["checksum"]
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no tmp left over


def test_checksum_sees_one_changed_element_and_a_swap():
  toy = Toy(rngs=nnx.Rngs(1))
  flat = _values(toy)
  base = model_dir.checksum(flat)
  changed = dict(flat)
  changed[("table",)] = flat[("table",)].copy()
  changed[("table",)][2, 3] = np.nextafter(changed[("table",)][2, 3], np.float32(10))
  swapped = dict(flat)
  swapped[("table",)] = flat[("table",)][::-1].copy()
  assert len({base, model_dir.checksum(changed), model_dir.checksum(swapped)}) == 3


def test_strict_load_lists_every_problem(tmp_path):
  model_dir.save_component(tmp_path, "heads", Toy(rngs=nnx.Rngs(1)))
  with pytest.raises(ConversionError) as info:
    model_dir.load_component(tmp_path, "heads", lambda: Toy(8, rngs=nnx.Rngs(0), extra=True))
  message = str(info.value)
  assert "7 problem(s)" in message  # 2 missing, 5 mis-shaped
  for needle in ("missing: heads checkpoint lacks gate/kernel (8, 2)",
                 "missing: heads checkpoint lacks gate/bias (2,)",
                 "mis-shaped: layers/0/kernel expects (8, 8), heads checkpoint gives (16, 16)",
                 "mis-shaped: table expects (4, 8)"):
    assert needle in message
  with pytest.raises(ConversionError, match="no 'vae' component"):
    model_dir.load_component(tmp_path, "vae", lambda: Toy(rngs=nnx.Rngs(0)))


def test_non_strict_load_reports_what_stayed_at_init(tmp_path):
  toy = Toy(rngs=nnx.Rngs(1))
  model_dir.save_component(tmp_path, "heads", toy)
  module, left = model_dir.load_component(
      tmp_path, "heads", lambda: Toy(rngs=nnx.Rngs(5), extra=True), strict=False)
  assert left == ["gate/bias", "gate/kernel"]
  np.testing.assert_array_equal(module.table[...], toy.table[...])
  fresh = Toy(rngs=nnx.Rngs(5), extra=True)
  np.testing.assert_array_equal(module.gate.kernel[...], fresh.gate.kernel[...])


def test_restores_into_shardings_and_dtype(tmp_path):
  toy = Toy(rngs=nnx.Rngs(1))
  model_dir.save_component(tmp_path, "dit", toy)
  mesh = parallel.make_mesh(MeshConfig(data=2, fsdp=4), jax.devices()[:8])
  abstract = nnx.state(nnx.eval_shape(lambda: Toy(rngs=nnx.Rngs(0))))
  shardings = parallel.state_shardings(abstract, mesh, MeshConfig().rules)
  module = model_dir.load_component(tmp_path, "dit", lambda: Toy(rngs=nnx.Rngs(0)),
                                    shardings=shardings, dtype="bfloat16")
  kernel = module.layers[0].kernel[...]
  assert kernel.dtype == jnp.bfloat16 and kernel.sharding.spec == jax.sharding.PartitionSpec(
      "fsdp", None)
  np.testing.assert_array_equal(np.asarray(kernel),
                                np.asarray(toy.layers[0].kernel[...]).astype(ml_dtypes.bfloat16))


def test_processor_files_are_copied_without_weights(tmp_path):
  source = tmp_path / "Qwen2.5-Omni-3B"
  source.mkdir()
  for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json",
               "model-00001-of-00002.safetensors"):
    (source / name).write_text("{}")
  model_dir.copy_processor(source, tmp_path / "out")
  copied = sorted(p.name for p in model_dir.processor_path(tmp_path / "out").iterdir())
  assert copied == ["preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"]
  (tmp_path / "empty").mkdir()
  with pytest.raises(ConversionError, match="no tokenizer files"):
    model_dir.copy_processor(tmp_path / "empty", tmp_path / "out")


def test_reading_a_folder_that_is_not_a_model_dir(tmp_path):
  with pytest.raises(ConversionError, match="not a converted model directory.*aomni-convert"):
    model_dir.read_config(tmp_path)
