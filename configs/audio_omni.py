"""The official Audio-Omni model (defaults of `aomni_jax.config`): a 3.04 B-parameter DiT over
236 latent frames of 11 s 44.1 kHz stereo audio, trained with fp32 master weights and bf16
compute, scanned blocks with full rematerialisation, FSDP over every device.

  aomni-train --config configs/audio_omni.py --workdir /mnt/runs/run1
  aomni-train --config configs/audio_omni.py --set mesh.data=4 train.grad_accum_steps=2

Pick the attention kernel of the platform: `--set dit.attention=cudnn` (GPU) or `splash` (TPU).
The frozen features come from a converted model directory (`aomni-convert`): precompute them once
(`aomni-data precompute --data DATA --out FEATS --model CONVERTED`) and train with
`--set data.root=FEATS data.precomputed=true data.model_dir=CONVERTED`, or leave them to the loop
(same functions, computed on the fly). Fine-tune with `--init CONVERTED [--set train.lora_rank=16]`.
"""

from aomni_jax.config import Config, DiTConfig, ModelConfig


def get_config(arg=None) -> Config:
  del arg
  dit = DiTConfig(dtype="bfloat16", attention="auto", remat="full", scan_layers=True)
  return Config(name="audio_omni", model=ModelConfig(dit=dit))
