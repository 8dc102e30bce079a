"""V2A end to end on the tiny converted model: aomni-convert --synchformer, aomni-generate --task
v2a --video --mux, and what the engine feeds Qwen and the sync head."""

import json

import av
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from aomni_jax.cli import convert as convert_cli, generate as generate_cli
from aomni_jax.config import SynchformerConfig
from aomni_jax.inference import thinker as thinker_lib
from aomni_jax.inference.engine import AudioOmni
from aomni_jax.inference.pipeline import Request
from aomni_jax.inference.video import VideoFrontEnd
from aomni_jax.models.synchformer import encode_video
from aomni_jax.video.inputs import read_video_inputs
from tests.video.conftest import NTSC, write_video

# 768 wide (the sync head's input), but one block over 32×32 frames: 4 patches per frame.
TINY_SYNCHFORMER = SynchformerConfig(depth=1, image_size=32, patch_size=16)
SYNCHFORMER_SET = ["synchformer.depth=1", "synchformer.image_size=32", "synchformer.patch_size=16"]


def official_synchformer_state(cfg: SynchformerConfig, seed: int = 0) -> dict[str, np.ndarray]:
  """Random weights under MMAudio's key names (what synchformer_state_dict.pth holds)."""
  rng = np.random.default_rng(seed)
  d, p, g = cfg.embed_dim, cfg.patch_size, cfg.grid
  shapes = {"cls_token": (1, 1, d), "pos_embed": (1, 1 + g * g, d),
            "temp_embed": (1, cfg.time_tokens, d), "patch_embed.proj.weight": (d, 3, p, p),
            "patch_embed.proj.bias": (d,), "patch_embed_3d.proj.weight": (d, 3, 2, p, p),
            "patch_embed_3d.proj.bias": (d,), "norm.weight": (d,), "norm.bias": (d,),
            "spatial_attn_agg.cls_token": (1, 1, d),
            "spatial_attn_agg.self_attn.in_proj_weight": (3 * d, d),
            "spatial_attn_agg.self_attn.in_proj_bias": (3 * d,)}
  linears = {"spatial_attn_agg.self_attn.out_proj": (d, d),
             "spatial_attn_agg.linear1": (4 * d, d), "spatial_attn_agg.linear2": (d, 4 * d)}
  norms = ["spatial_attn_agg.norm1", "spatial_attn_agg.norm2"]
  for i in range(cfg.depth):
    for attn in ("attn", "timeattn"):
      linears.update({f"blocks.{i}.{attn}.qkv": (3 * d, d), f"blocks.{i}.{attn}.proj": (d, d)})
    linears.update({f"blocks.{i}.mlp.fc1": (4 * d, d), f"blocks.{i}.mlp.fc2": (d, 4 * d)})
    norms += [f"blocks.{i}.norm{k}" for k in (1, 2, 3)]
  for name, (out, fan_in) in linears.items():
    shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, fan_in), (out,)
  state = {}
  for name, shape in shapes.items():
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 and "token" not in name else 1
    state[name] = rng.standard_normal(shape).astype(np.float32) / np.sqrt(fan_in)
  for name in norms:
    state[f"{name}.weight"] = 1 + 0.1 * rng.standard_normal(d).astype(np.float32)
    state[f"{name}.bias"] = 0.1 * rng.standard_normal(d).astype(np.float32)
  return {f"vfeat_extractor.{k}": v for k, v in state.items()}


@pytest.fixture(scope="module")
def video_model(official_tiny, tmp_path_factory):
  root = tmp_path_factory.mktemp("v2a")
  synchformer = root / "synchformer.safetensors"
  save_file(official_synchformer_state(TINY_SYNCHFORMER), str(synchformer))
  out = root / "model"
  assert convert_cli.main([str(official_tiny.checkpoint), str(out), "--config",
                           official_tiny.config_spec, "--qwen-processor",
                           str(official_tiny.processor), "--synchformer", str(synchformer),
                           "--set", *SYNCHFORMER_SET]) == 0
  clip = write_video(root / "clip.mp4", np.arange(60) * 1001 / 30000, NTSC)
  return out, clip


@pytest.mark.slow
def test_v2a_with_mux_from_the_command_line(video_model, tmp_path):
  model_dir, clip = video_model
  manifest = json.loads((model_dir / "manifest.json").read_text())
  assert "synchformer" in manifest["components"]
  wav = tmp_path / "foley.wav"
  assert generate_cli.main(["--checkpoint", str(model_dir), "--task", "v2a", "--video",
                            str(clip), "--out", str(wav), "--mux", "--dtype", "float32",
                            "--steps", "1"]) == 0
  sidecar = json.loads(wav.with_suffix(".json").read_text())
  assert sidecar["mp4"] == "foley.mp4" and sidecar["video"] == str(clip)
  with av.open(str(wav.with_suffix(".mp4"))) as container:
    assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
    assert container.streams.audio[0].rate == 44100


def test_engine_feeds_synchformer_features_and_the_video_to_qwen(video_model):
  model_dir, clip = video_model
  model = AudioOmni.load(str(model_dir), dtype="float32")
  (request,) = model.video.prepare([Request("V2A", video=str(clip))])
  decoded = read_video_inputs(str(clip), seconds=10.0, sync_size=32)
  synchformer = nnx.merge(*model.video.synchformer)
  np.testing.assert_allclose(request.sync_features,
                             encode_video(synchformer, decoded.sync_frames[None])[0], atol=1e-4)
  assert request.sync_features.shape == (240, 768) and np.abs(request.sync_features).max() > 0
  np.testing.assert_array_equal(request.video_frames, decoded.qwen_frames)
  tokens = model.prompt_tokens(request)
  video_tokens = 25 * 16 * 16 // 4  # 50 frames of 224×224: grid 25×16×16, 2×2 merge
  assert tokens.count(model.thinker_cfg.video_token_id) == video_tokens
  text_only = model.prompt_tokens(Request("V2A", sync_features=request.sync_features))
  assert text_only.count(model.thinker_cfg.video_token_id) == 1  # the bare placeholder
  assert model.batch_key(request) != model.batch_key(Request("V2A", sync_features=np.zeros(1)))
  inputs = thinker_lib.pad_prompts([tokens, model.prompt_tokens(Request("T2A", prompt="rain"))],
                                   2048, model.thinker_cfg, videos=[request.video_frames, None])
  assert inputs.video is not None and len(inputs.video.pixels) == 4 * video_tokens
  # TMRoPE over the video tokens: 25 grid steps of 1 s (the processor's default fps) at 25
  # positions per second in time, an 8×8 merged grid in height and width.
  positions = inputs.position_ids[:, 0][:, inputs.input_ids[0] == model.thinker_cfg.video_token_id]
  assert [int(np.ptp(p)) for p in positions] == [24 * 25, 7, 7]


def test_a_video_without_the_synchformer_component_says_what_to_do(video_model):
  from aomni_jax.cli.errors import UserError
  from aomni_jax.config import ModelConfig
  _, clip = video_model
  front_end = VideoFrontEnd(ModelConfig(), None)
  assert front_end.prepare([Request("T2A", prompt="rain")])[0].video_frames is None
  with pytest.raises(UserError, match="aomni-convert --synchformer"):
    front_end.prepare([Request("V2A", video=str(clip))])
