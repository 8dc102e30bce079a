"""VAE training: the step learns, the discriminator joins on schedule, resume is exact, and the
export is a converted model directory with the measured latent scale."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aomni_jax import parallel
from aomni_jax.config import load_config
from aomni_jax.inference import model_dir
from aomni_jax.data import crops
from aomni_jax.train.autoencoder import loop, step as step_lib
from aomni_jax.train.state import init_state

# A smaller VAE than configs/tiny.py's, short crops and few STFT resolutions: small compiles.
SMALL = ["vae.channels=4", "vae.c_mults=[1,2]", "vae.strides=[16,16]", "autoencoder.crop_samples=4096", "autoencoder.stft_fft_sizes=(512, 64)",
         "autoencoder.eval_samples=8192", "autoencoder.eval_clips=2", "train.batch_size=2",
         "data.num_workers=0", "train.log_every=1"]


def _tone_batch(batch: int = 2, samples: int = 4096) -> dict:
  t = np.arange(samples) / 44100
  left = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.1 * np.sin(2 * np.pi * 990 * t)
  right = 0.3 * np.sin(2 * np.pi * 440 * t)
  audio = np.broadcast_to(np.stack([left, right], -1), (batch, samples, 2))
  return {step_lib.AUDIO: jnp.asarray(audio, jnp.float32)}


def test_steps_reduce_the_loss_and_the_discriminator_joins_on_schedule():
  config = load_config("configs/vae_tiny.py", SMALL + [
      "autoencoder.discriminator=True", "autoencoder.disc_fft_sizes=(64,)",
      "autoencoder.disc_filters=4", "autoencoder.discriminator_start=4",
      "train.learning_rate=0.003", "train.warmup_steps=1"])
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  train_step = step_lib.build_step(config, mesh)
  state = init_state(config, train_step.spec, step_lib.build_modules)
  batch, key = _tone_batch(), jnp.zeros(2, jnp.uint32)
  history, disc = [], []
  for _ in range(6):
    disc.append(jax.device_get(state.params[step_lib.DISCRIMINATOR]))
    state, metrics = train_step.fn(state, batch, key)
    history.append(jax.device_get(metrics))
  assert all(np.isfinite(m[k]) for m in history for k in ("loss", "adversarial",
                                                           "feature_matching", "discriminator"))
  assert history[3]["stft"] < 0.9 * history[0]["stft"]
  unchanged = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a),
                                                                     jax.tree.leaves(b)))
  assert unchanged(disc[0], disc[4])  # steps 0-3: the discriminator sits out
  assert not unchanged(disc[4], disc[5])  # step 4 trains it
  assert history[3]["loss"] == pytest.approx(  # and the adversarial terms are off until then
      history[3]["stft"] + config.autoencoder.kl_weight * history[3]["kl"], rel=1e-5)


def _losses(workdir) -> dict[int, float]:
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {int(r["step"]): r["loss"] for r in rows}


def test_resume_is_exact_and_export_is_a_model_dir(synthetic_dataset, tmp_path):
  # On the 8 fake devices, with the batch split over them.
  config = load_config("configs/vae_tiny.py", SMALL + [
      f"data.root={synthetic_dataset}", "train.batch_size=8", "autoencoder.crop_samples=2048",
      "train.num_steps=4", "train.checkpoint_every=2",
      "train.sample_every=0"])
  whole, resumed = tmp_path / "whole", tmp_path / "resumed"
  result = loop.train(config, str(whole))
  loop.train(config, str(resumed), stop_at=2)
  loop.train(config, str(resumed))
  assert sorted(_losses(whole)) == [0, 1, 2, 3]
  assert _losses(resumed) == _losses(whole)  # bit for bit

  summary = json.loads((whole / "summary.json").read_text())
  for entry in summary["random_init"], summary["trained"]:  # scored, or unscored with the reason
    assert (entry["mel_distance"] > 0 and np.isfinite(entry["si_sdr_db"])
            if entry["scored_clips"] else "silent" in entry["why"])
  exported = model_dir.read_config(result.export_dir)
  assert exported.model.vae.latent_scale == summary["latent_scale"] > 0
  assert model_dir.has_component(result.export_dir, "vae")
  assert "reconstruction" in loop.summary_line(str(whole))
  assert sorted(p.name for p in (whole / "reconstructions" / "step_4").iterdir())[:2] == [
      "00_input.png", "00_input.wav"]


def test_weight_norm_training_exports_plain_kernels(synthetic_dataset, tmp_path):
  """Trained as g · v / ‖v‖, exported folded: the model directory loads into the plain VAE that
  inference uses (strict shapes), and reconstructs as the trained weights do."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from aomni_jax.models.vae import OobleckVAE  # pylint: disable=g-import-not-at-top
  from aomni_jax.train import checkpoint  # pylint: disable=g-import-not-at-top
  config = load_config("configs/vae_tiny.py", SMALL + [
      f"data.root={synthetic_dataset}", "autoencoder.weight_norm=True", "train.batch_size=8",
      "autoencoder.crop_samples=2048", "train.num_steps=1", "train.checkpoint_every=1",
      "train.sample_every=0"])
  result = loop.train(config, str(tmp_path))
  plain = model_dir.load_component(result.export_dir, "vae",
                                   lambda: OobleckVAE(config.model.vae, rngs=nnx.Rngs(0)))
  spec = step_lib.make_spec(config, parallel.make_mesh(config.mesh, jax.devices()[:1]))
  state = checkpoint.restore(checkpoint.make_manager(str(tmp_path / "checkpoints"), config),
                             spec.abstract, None)
  trained = nnx.merge(spec.graphdefs[step_lib.VAE], *jax.device_get(
      (state.ema_params[step_lib.VAE], state.buffers[step_lib.VAE])))
  assert "kernel_v" in str(nnx.to_flat_state(nnx.state(trained, nnx.Param)))
  audio = _tone_batch()[step_lib.AUDIO]
  np.testing.assert_allclose(plain.decoder(plain.posterior(audio).mean),
                             trained.decoder(trained.posterior(audio).mean), rtol=1e-4, atol=1e-6)


def test_split_holds_out_whole_records_and_crops_skip_silence(synthetic_dataset):
  split = crops.split_signals(synthetic_dataset, holdout_every=4)
  held = {s.record for s in split.heldout}
  assert held == {0, 4} and not held & {s.record for s in split.train}
  assert {s.stems for s in split.train} == {("bg",), ("bg", "fg"), ("fg",)}
  source = crops.SignalSource(synthetic_dataset, split.train)
  audio = crops.decode_signal(source[0], 2)
  assert audio.shape[0] == 2 and np.all(np.max(np.abs(audio[:, [0, -1]]), axis=0) > 1e-4)
  batch = next(crops.make_crop_iterator(synthetic_dataset, split.train, 3, 1000, 2, seed=1))
  assert batch["audio"].shape == (3, 1000, 2) and batch["audio"].dtype == np.float32
