"""What one generated item leaves behind: `<id>.wav`, optionally `<id>.png`, then `<id>.json`.

The JSON sidecar is written last, atomically, so its presence means the item is complete (batch
mode resumes from it). All paths go through etils.epath (gs:// works).
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any, Mapping

import numpy as np
import soundfile
from etils import epath

# --wav-format → soundfile subtype. The integer formats are peak-normalised, as the official API
# writes its output; "float" keeps the values exactly as generated.
WAV_FORMATS = {"pcm16": "PCM_16", "pcm24": "PCM_24", "float": "FLOAT"}


def wav_bytes(audio: np.ndarray, sample_rate: int, wav_format: str = "pcm16") -> bytes:
  """[samples, channels] float audio → a wav file's bytes."""
  audio = np.asarray(audio, np.float32)
  if wav_format != "float":
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    audio = np.clip(audio / peak, -1.0, 1.0) if peak > 0 else audio
  buffer = io.BytesIO()
  soundfile.write(buffer, audio, sample_rate, format="WAV", subtype=WAV_FORMATS[wav_format])
  return buffer.getvalue()


def spectrogram_png(audio: np.ndarray, sample_rate: int, title: str) -> bytes:
  """A log-magnitude spectrogram of the channel mean, as PNG bytes."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(8, 3))
  ax.specgram(np.asarray(audio, np.float32).mean(axis=-1), NFFT=1024, Fs=sample_rate,
              noverlap=768, cmap="magma")
  ax.set_title(title[:120], fontsize=8)
  ax.set_xlabel("s")
  ax.set_ylabel("Hz")
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=80)
  plt.close(fig)
  return buffer.getvalue()


def write_atomically(path: epath.Path, data: bytes) -> None:
  tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
  tmp.write_bytes(data)
  tmp.replace(path)


def write_item(out_dir: epath.Path, stem: str, audio: np.ndarray, sample_rate: int,
               sidecar: Mapping[str, Any], *, wav_format: str = "pcm16",
               spectrogram: bool = False, wav_path: epath.Path | None = None) -> epath.Path:
  """Writes the wav (at `wav_path`, default `<out_dir>/<stem>.wav`), the png, then the sidecar."""
  wav_path = wav_path or out_dir / f"{stem}.wav"
  wav_path.parent.mkdir(parents=True, exist_ok=True)
  write_atomically(wav_path, wav_bytes(audio, sample_rate, wav_format))
  record = dict(sidecar, wav=wav_path.name)
  if spectrogram:
    png = wav_path.with_suffix(".png")
    write_atomically(png, spectrogram_png(audio, sample_rate, str(sidecar.get("prompt", ""))))
    record["png"] = png.name
  sidecar_path = wav_path.with_suffix(".json")
  write_atomically(sidecar_path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
  return sidecar_path


def is_complete(sidecar_path: epath.Path) -> bool:
  """True when the sidecar exists and says the item finished."""
  if not sidecar_path.exists():
    return False
  try:
    return json.loads(sidecar_path.read_text()).get("status") == "ok"
  except json.JSONDecodeError:
    return False
