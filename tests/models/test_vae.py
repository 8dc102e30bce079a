"""Oobleck VAE: golden parity, layer semantics, lengths, chunking, numerics modes and bad input."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import save_file

from aomni_jax.config import VAEConfig
from aomni_jax.conversion.common import conv1d, conv_transpose1d
from aomni_jax.conversion.vae import load_vae, official_shapes, random_vae
from aomni_jax.models import vae as vae_lib
from aomni_jax.parity import vae as vae_parity

# Small enough to compile in seconds; strides (2, 4) give 8 samples per latent frame.
TINY = VAEConfig(audio_channels=2, channels=4, c_mults=(1, 2), strides=(2, 4), latent_dim=3)


@pytest.fixture(scope="module")
def tiny():
  return random_vae(TINY)


def audio_of(num_samples: int, batch: int = 1, seed: int = 1) -> np.ndarray:
  return np.random.default_rng(seed).uniform(-0.8, 0.8, (batch, num_samples, 2)).astype(np.float32)


def test_golden_fixture_every_case_within_tolerance(golden_dir):
  results = vae_parity.run(golden_dir / "vae")
  names = {r.name for r in results}
  assert {"pre_bottleneck", "mean", "scale_raw", "std", "kl", "pretransform_encode_sample",
          "decoded_from_mean", "pretransform_decode_of_sample", "pretransform_decode_of_mean",
          "ragged_pre_bottleneck", "ragged_decoded_from_mean"} <= names
  assert all(r.atol == 1e-4 for r in results)
  failed = [r.line() for r in results if not r.passed]
  assert not failed, "\n".join(failed)


def test_snake_beta_formula():
  rng = np.random.default_rng(0)
  x, a, b = rng.normal(size=(2, 5, 3)), rng.normal(size=3), rng.normal(size=3)
  expected = x + np.sin(np.exp(a) * x) ** 2 / (np.exp(b) + 1e-9)
  got = vae_lib.snake_beta(jnp.asarray(x, jnp.float32), jnp.asarray(a), jnp.asarray(b))
  np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("stride", [2, 3])
def test_convs_match_pytorch(stride):
  """Strided, dilated and transposed convs (odd stride included) against torch itself."""
  rng = np.random.default_rng(stride)
  x = rng.normal(size=(2, 3, 11)).astype(np.float32)  # PyTorch [B, C, T]
  pad = -(-stride // 2)

  def layers():
    numerics = dict(rngs=nnx.Rngs(0), dtype=jnp.float32, param_dtype=jnp.float32)
    return nnx.List([
        vae_lib.Conv1d(3, 5, 2 * stride, stride=stride, padding=pad, **numerics),
        vae_lib.Conv1d(3, 5, 7, dilation=stride, padding=3 * stride, **numerics),
        vae_lib.ConvTranspose1d(3, 5, 2 * stride, stride=stride, padding=pad, **numerics),
        vae_lib.ConvTranspose1d(3, 5, 5, stride=stride, padding=1, **numerics)])

  ours = nnx.eval_shape(layers)
  references = [torch.nn.Conv1d(3, 5, 2 * stride, stride=stride, padding=pad),
                torch.nn.Conv1d(3, 5, 7, dilation=stride, padding=3 * stride),
                torch.nn.ConvTranspose1d(3, 5, 2 * stride, stride=stride, padding=pad),
                torch.nn.ConvTranspose1d(3, 5, 5, stride=stride, padding=1)]  # k not a multiple
  layouts = (conv1d, conv1d, conv_transpose1d, conv_transpose1d)
  for layer, reference, layout in zip(ours, references, layouts):
    layer.kernel.set_value(jnp.asarray(layout(reference.weight.detach().numpy())))
    layer.bias.set_value(jnp.asarray(reference.bias.detach().numpy()))
  with jax.default_matmul_precision("highest"):
    got = nnx.jit(lambda layers, h: [layer(h) for layer in layers])(
        ours, jnp.swapaxes(jnp.asarray(x), 1, 2))
  for out, reference in zip(got, references):
    expected = reference(torch.from_numpy(x)).detach().numpy()
    out = np.swapaxes(np.asarray(out), 1, 2)
    assert out.shape == expected.shape, type(reference).__name__
    np.testing.assert_allclose(out, expected, atol=1e-5, err_msg=type(reference).__name__)


def test_weight_norm_convs_match_pytorch_weight_norm():
  """g · v / ‖v‖ with PyTorch's norm axes: per output channel for Conv1d, per input channel for
  ConvTranspose1d (weight_norm's default dim 0 of [out, in, k] and of [in, out, k])."""
  wn = torch.nn.utils.parametrizations.weight_norm
  torch.manual_seed(0)
  references = [wn(torch.nn.Conv1d(3, 5, 4, stride=2, padding=1)),
                wn(torch.nn.ConvTranspose1d(3, 5, 4, stride=2, padding=1))]
  numerics = dict(rngs=nnx.Rngs(0), dtype=jnp.float32, param_dtype=jnp.float32, weight_norm=True)
  ours = [vae_lib.Conv1d(3, 5, 4, stride=2, padding=1, **numerics),
          vae_lib.ConvTranspose1d(3, 5, 4, stride=2, padding=1, **numerics)]
  layouts = (conv1d, conv_transpose1d)
  x = np.random.default_rng(0).normal(size=(2, 3, 9)).astype(np.float32)
  for layer, reference, layout in zip(ours, references, layouts):
    with torch.no_grad():  # a gain that is not ‖v‖, so the normalisation is exercised
      reference.parametrizations.weight.original0.mul_(torch.linspace(0.5, 2.0, 5 if isinstance(
          reference, torch.nn.Conv1d) else 3).reshape(-1, 1, 1))
    original = reference.parametrizations.weight
    layer.kernel_v.set_value(jnp.asarray(layout(original.original1.detach().numpy())))
    layer.kernel_g.set_value(jnp.asarray(original.original0.detach().numpy().reshape(-1)))
    layer.bias.set_value(jnp.asarray(reference.bias.detach().numpy()))
    np.testing.assert_allclose(layer.kernel_value(), layout(reference.weight.detach().numpy()),
                               rtol=1e-6, atol=1e-7, err_msg=type(reference).__name__)
    with jax.default_matmul_precision("highest"):
      out = np.swapaxes(np.asarray(layer(jnp.swapaxes(jnp.asarray(x), 1, 2))), 1, 2)
    np.testing.assert_allclose(out, reference(torch.from_numpy(x)).detach().numpy(), atol=1e-5,
                               err_msg=type(reference).__name__)


def test_weight_norm_starts_at_the_plain_init_and_folds_to_the_same_function():
  reconstruct = nnx.jit(lambda vae, audio: vae.decoder(vae.posterior(audio).mean))
  plain = vae_lib.OobleckVAE(TINY, rngs=nnx.Rngs(3))
  normed = vae_lib.OobleckVAE(TINY, rngs=nnx.Rngs(3), weight_norm=True)
  audio = jnp.asarray(audio_of(64, batch=2))
  np.testing.assert_allclose(reconstruct(normed, audio), reconstruct(plain, audio), rtol=1e-5,
                             atol=1e-7)
  params = nnx.state(normed, nnx.Param)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(0), len(leaves))
  nnx.update(normed, jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape)
                                               for x, k in zip(leaves, keys)]))
  folded = vae_lib.fold_weight_norm(normed)
  names = {path[-1] for path, _ in nnx.to_flat_state(nnx.state(folded, nnx.Param))}
  assert names == {"kernel", "bias", "alpha", "beta"}
  want = reconstruct(normed, audio)
  assert float(jnp.max(jnp.abs(want - reconstruct(plain, audio)))) > 1e-3
  np.testing.assert_allclose(reconstruct(folded, audio), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strides", [(2, 4), (3, 2)])
def test_length_formulas_match_the_model(strides):
  cfg = dataclasses.replace(TINY, strides=strides)
  model = nnx.eval_shape(lambda: vae_lib.OobleckVAE(cfg, rngs=nnx.Rngs(0)))
  for num_samples in (cfg.downsampling_ratio, 61, 100):
    out = nnx.eval_shape(lambda m, a: m.encoder(a), model,
                         jax.ShapeDtypeStruct((1, num_samples, 2), jnp.float32))
    assert out.shape == (1, vae_lib.encoded_length(cfg, num_samples), 2 * cfg.latent_dim)
  for frames in (1, 7):
    out = nnx.eval_shape(lambda m, z: m.decode(z), model,
                         jax.ShapeDtypeStruct((1, frames, 3), jnp.float32))
    assert out.shape == (1, vae_lib.decoded_length(cfg, frames), 2)


def test_every_parameter_has_logical_axes():
  state = nnx.state(nnx.eval_shape(lambda: vae_lib.OobleckVAE(TINY, rngs=nnx.Rngs(0))))
  for path, var in nnx.to_flat_state(state):
    axes = var.get_metadata().get("out_sharding")
    assert axes is not None and len(axes) == len(var.shape), path
    expected = {"kernel": (None, "conv_in", "conv_out"), "bias": ("conv_out",),
                "alpha": ("channels",), "beta": ("channels",)}[path[-1]]
    assert tuple(axes) == expected, path


def test_stochastic_encode_and_kl(tiny):
  audio = jnp.asarray(audio_of(80, batch=2))

  def run(model, audio, key):
    post = model.posterior(audio)
    noise = jax.random.normal(key, post.mean.shape)
    return dict(sample=model.encode(audio, key), injected=model.encode_with_noise(audio, noise),
                zero_noise=model.encode_with_noise(audio, jnp.zeros_like(noise)),
                mean=model.encode_mean(audio), other=model.encode(audio, jax.random.key(4)),
                post_mean=post.mean, std=post.std, kl=post.kl())

  out = {k: np.asarray(v) for k, v in nnx.jit(run)(tiny, audio, jax.random.key(3)).items()}
  np.testing.assert_array_equal(out["sample"], out["injected"])
  np.testing.assert_array_equal(out["zero_noise"], out["mean"])
  assert not np.allclose(out["sample"], out["other"])
  mean, var = out["post_mean"].astype(np.float64), out["std"].astype(np.float64) ** 2
  expected_kl = np.mean(np.sum(mean ** 2 + var - np.log(var) - 1, axis=-1))
  np.testing.assert_allclose(out["kl"], expected_kl, rtol=1e-5)


def test_latent_scale_divides_encode_and_multiplies_decode(tiny):
  scaled = random_vae(dataclasses.replace(TINY, latent_scale=2.0))
  audio, latents = jnp.asarray(audio_of(64)), jnp.ones((1, 4, 3))
  run = nnx.jit(lambda m, a, z: (m.encode_mean(a), m.decode(z)))
  plain_mean, plain_audio = run(tiny, audio, latents * 2)
  scaled_mean, scaled_audio = run(scaled, audio, latents)
  np.testing.assert_allclose(scaled_mean, plain_mean / 2, atol=1e-6)
  np.testing.assert_allclose(scaled_audio, plain_audio, atol=1e-6)


# Chunked equals unchunked: default overlap, a ragged length, a last window not on the hop grid.
CHUNK_ATOL = 1e-5


def test_decode_chunked_equals_decode(tiny):
  latents = jnp.asarray(np.random.default_rng(2).normal(size=(2, 150, 3)), jnp.float32)
  short = latents[:, :10]

  def run(model, latents, short):
    return dict(full=model.decode(latents), chunked=model.decode_chunked(latents, chunk=48),
                seamed=model.decode_chunked(latents, chunk=48, overlap=0),
                short_full=model.decode(short), short_chunked=model.decode_chunked(short, 48))

  with jax.default_matmul_precision("highest"):
    out = {k: np.asarray(v) for k, v in nnx.jit(run)(tiny, latents, short).items()}
  assert out["chunked"].shape == out["full"].shape == (2, 1200, 2)
  np.testing.assert_allclose(out["chunked"], out["full"], atol=CHUNK_ATOL)
  # Without overlap the window edges show: the comparison above can see a bad stitch.
  assert np.abs(out["seamed"] - out["full"]).max() > 100 * CHUNK_ATOL
  np.testing.assert_array_equal(out["short_chunked"], out["short_full"])  # one window: no chunks


def test_encode_chunked_equals_encode(tiny):
  audio = jnp.asarray(audio_of(150 * 8 + 5))  # not a whole number of latent hops

  def run(model, audio, key):
    return model.encode(audio, key), model.encode_chunked(audio, key, chunk=48)

  with jax.default_matmul_precision("highest"):
    full, chunked = nnx.jit(run)(tiny, audio, jax.random.key(0))
  assert chunked.shape == full.shape == (1, 150, 3)
  np.testing.assert_allclose(chunked, full, atol=CHUNK_ATOL)


def test_bf16_compute_is_close_to_float32(tiny):
  bf16 = random_vae(dataclasses.replace(TINY, dtype="bfloat16"))  # the same weights as `tiny`
  audio = jnp.asarray(audio_of(256))
  run = nnx.jit(lambda m, a: (m.encode_mean(a), m.decode(m.encode_mean(a))))
  with jax.default_matmul_precision("highest"):
    _, ref = run(tiny, audio)
  fast_latents, fast = run(bf16, audio)
  assert fast_latents.dtype == fast.dtype == jnp.float32
  assert bf16.encoder.conv_in.kernel[...].dtype == jnp.float32  # parameters stay float32
  err = np.linalg.norm(np.asarray(fast) - np.asarray(ref)) / np.linalg.norm(np.asarray(ref))
  assert 0 < err < 5e-2  # relative RMS error; ~2e-2 observed through ~40 bf16 layers


# Bad input.
@pytest.mark.parametrize("shape, message", [
    ((1, 64, 1), "expected 2 channels"),
    ((1, 2, 64), "expected 2 channels"),  # PyTorch [B, C, T] layout passed by mistake
    ((64, 2), "expected \\[batch, samples, 2\\]"),
    ((1, 7, 2), "7 samples is shorter than one latent hop \\(8 samples\\)"),
])
def test_bad_audio_shapes_are_named(tiny, shape, message):
  with pytest.raises(ValueError, match="audio: " + message):
    tiny.encode(jnp.zeros(shape), jax.random.key(0))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_audio_is_rejected(tiny, bad):
  audio = audio_of(64)
  audio[0, 10, 1] = bad
  with pytest.raises(ValueError, match="audio: contains NaN or infinite"):
    tiny.encode_mean(audio)


def test_bad_latents_and_chunking_arguments(tiny):
  with pytest.raises(ValueError, match="latents: expected \\[batch, frames >= 1, 3\\]"):
    tiny.decode(jnp.zeros((1, 10, 4)))
  with pytest.raises(ValueError, match="overlap"):
    tiny.decode_chunked(jnp.zeros((1, 100, 3)), chunk=16, overlap=16)


def test_parity_runner_builds_from_the_manifest_config(tmp_path):
  """A fixture of another size and key prefix in the official format runs through `run`."""
  cfg = dataclasses.replace(TINY, strides=(2, 2), latent_dim=2)
  rng = np.random.default_rng(5)
  weights = {}
  for key, shape in official_shapes(cfg, prefix="vae.model.").items():
    weights[key] = rng.normal(0, 0.2, shape).astype(np.float32)
    if key.endswith(".weight_v"):
      norm = np.sqrt(np.sum(weights[key] ** 2, axis=(1, 2), keepdims=True))
      weights[key[:-1] + "g"] = (0.75 * norm / np.sqrt(shape[1] * shape[2])).astype(np.float32)
  save_file(weights, str(tmp_path / "weights.safetensors"))
  block = {"in_channels": 2, "channels": cfg.channels, "c_mults": list(cfg.c_mults),
           "strides": list(cfg.strides)}
  manifest = {"fixture": "vae", "weights": {"key_prefix": "vae."},
              "pretransform_config": {"type": "autoencoder", "config": {
                  "encoder": {"config": {**block, "latent_dim": 4}},
                  "decoder": {"config": {**block, "latent_dim": 2, "out_channels": 2}},
                  "bottleneck": {"type": "vae"}, "latent_dim": 2}}}
  (tmp_path / "manifest.json").write_text(json.dumps(manifest))
  # Expected values from the model itself: this checks the runner's plumbing, not the model.
  model = load_vae(weights, cfg, prefix="vae.model.")
  waveform = audio_of(32, batch=2)
  noise = rng.normal(size=(2, 8, 2)).astype(np.float32)

  def expected(model, waveform, noise):
    post = model.posterior(waveform)
    return {"waveform": waveform, "mean": post.mean, "std": post.std,
            "pretransform_encode_noise": noise,
            "pretransform_encode_sample": model.encode_with_noise(waveform, noise),
            "decoded_from_mean": model.decode(post.mean), "kl": post.kl()}

  cases = {k: np.swapaxes(np.asarray(v), 1, 2) if v.ndim == 3 else np.reshape(v, (1,))
           for k, v in nnx.jit(expected)(model, waveform, noise).items()}
  np.savez(tmp_path / "cases.npz", **cases)
  results = vae_parity.run(tmp_path)
  assert {r.name for r in results} == set(cases) - {"waveform", "pretransform_encode_noise"}
  assert all(r.passed for r in results), [r.line() for r in results]
  cases["std"] = cases["std"] + 1e-3
  np.savez(tmp_path / "cases.npz", **cases)
  failed = {r.name for r in vae_parity.run(tmp_path) if not r.passed}
  assert failed == {"std"}
