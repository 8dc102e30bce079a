"""The CPU demo's preparation: trained VAE → demo model directory (random thinker, labelled as
such) → precomputed features, with the VAE's latent scale, each stage done once."""

import dataclasses

from flax import nnx

from aomni_jax.config import load_config
from aomni_jax.data import records
from aomni_jax.inference import model_dir as md
from aomni_jax.models.vae import OobleckVAE
from aomni_jax.train import demo
from tests.train.conftest import SMALL_VAE


def test_prepare_builds_the_model_dir_and_the_features_once(synthetic_dataset, tmp_path,
                                                             monkeypatch):
  config = load_config("configs/tiny.py", [*SMALL_VAE, "data.demo_vae_config=vae.py"])
  # Stands in for the VAE trainer's export (its own tests train it): weights + latent scale.
  vae_dir = str(tmp_path / "vae_export")
  scaled = dataclasses.replace(config, model=dataclasses.replace(
      config.model, vae=dataclasses.replace(config.model.vae, latent_scale=3.5)))
  md.save_model_dir(vae_dir, scaled, {"vae": OobleckVAE(config.model.vae, rngs=nnx.Rngs(1))})
  trained = []
  monkeypatch.setattr(demo, "train_demo_vae",
                      lambda path, workdir: trained.append(path) or (vae_dir, "summary"))
  workdir = str(tmp_path / "run")
  prepared = demo.prepare(config, workdir, synthetic_dataset)
  assert trained == ["vae.py"]
  assert prepared.data.precomputed and not prepared.data.demo_vae_config
  assert prepared.model.vae.latent_scale == 3.5
  manifest = md.read_manifest(prepared.data.model_dir)
  assert set(manifest["components"]) == {"vae", "qwen"} and "RANDOM" in manifest["source"]
  features = records.Manifest.load(prepared.data.root).features
  assert {"qwen_hidden", "qwen_mask", "latent_mean", "latent_std"} <= set(features)
  # A rerun (e.g. a resumed demo) neither retrains the VAE nor rebuilds anything.
  assert demo.prepare(config, workdir, synthetic_dataset) == prepared
  assert trained == ["vae.py"]
