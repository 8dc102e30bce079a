"""CPU-sized Audio-Omni: every network shrunk so that `aomni-train --config configs/tiny.py` trains
in a few minutes on a laptop CPU, on the embedded dataset, and the tests run in seconds.

Shapes: 1.49 s of 44.1 kHz stereo → VAE (ratio 64) → 1024 latent frames × 32 channels; 1 s of
mono for the mel path; 128 high-level + 16 transcript cross-attention tokens; 8 sync + 16 mel
prepended tokens. The DiT keeps head_dim = 32 (the official rotary needs ≥ 32).
"""

from aomni_jax.config import (Config, DataConfig, DiTConfig, MelConfig, MeshConfig, ModelConfig,
                              OmniConfig, SamplingConfig, SyncConfig, TrainConfig,
                              TranscriptConfig, VAEConfig)


def get_config(arg=None) -> Config:
  del arg
  cond = 64
  model = ModelConfig(
      sample_rate=44100,
      sample_size=65536,
      dit=DiTConfig(io_channels=32, embed_dim=64, depth=2, num_heads=2, cond_token_dim=cond,
                    global_cond_dim=cond, timestep_features_dim=32),
      # Training takes the scale of the model directory's VAE: aomni-train --config
      # configs/vae_tiny.py measures its posterior-sample std and exports it with the VAE.
      # Compression 4× (64 stereo samples → 32 channels; the official VAE: 64×): at 64× a VAE
      # this small learns only loudness envelopes in CPU minutes, at 4× it already passes
      # pitch and timbre (benchmarks/vae_convergence.py measures both).
      vae=VAEConfig(channels=8, c_mults=(1, 2, 4), strides=(2, 4, 8), latent_dim=32,
                    latent_scale=1.0),
      transcript=TranscriptConfig(text_dim=32, conv_layers=1, seq_len=128, proj_seq_len=16,
                                  out_dim=cond),
      mel=MelConfig(n_mels=32, num_frames=173, seq_len=16, out_dim=cond, window_seconds=1.0),
      sync=SyncConfig(input_dim=32, seq_len=16, out_seq_len=8, out_dim=cond),
      omni=OmniConfig(feature_dim=64, pad_length=128, out_dim=cond),
  )
  train = TrainConfig(workdir="runs/tiny", batch_size=8, num_steps=100, learning_rate=1e-3,
                      warmup_steps=10, ema_decay=0.99, checkpoint_every=50, keep_checkpoints=2,
                      log_every=1, sample_every=0, num_sample_steps=10, eval_every=50,
                      eval_fraction=0.1, eval_batches=2)
  # Norm scales and biases are a large share of so small a model; allow them to be replicated.
  mesh = MeshConfig(replication_tolerance=0.1)
  return Config(name="tiny", model=model, train=train, mesh=mesh,
                sampling=SamplingConfig(steps=10, cfg_scale=3.0),
                # The demo trains the VAE, builds the frozen "converted model" and precomputes
                # the features first (aomni_jax.train.demo); tests set data.model_dir instead.
                data=DataConfig(num_workers=1, demo_vae_config="configs/vae_tiny.py"))
