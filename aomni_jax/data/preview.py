"""Human check of a built dataset: a text summary of the manifest, and for a few examples the
input and target as wav files plus one PNG with both spectrograms."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402
from etils import epath  # noqa: E402

from aomni_jax.audio import io as audio_io  # noqa: E402
from aomni_jax.data import loader  # noqa: E402
from aomni_jax.data import records  # noqa: E402
from aomni_jax.data import storage  # noqa: E402
from aomni_jax.data import templates  # noqa: E402

_RATE = 44100


def summary(manifest: records.Manifest) -> str:
  """Counts per task and label, hours of target audio, licences and drop reasons."""
  lines = [f"records {manifest.records}, examples {manifest.examples}, target audio "
           f"{manifest.target_seconds / 3600:.2f} h, features {manifest.features or 'none'}"]
  for title, counts in (("tasks", manifest.per_task), ("licences", manifest.licences),
                        ("dropped", manifest.dropped), ("labels", manifest.per_label)):
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    lines.append(f"{title}: " + (", ".join(f"{k}={v}" for k, v in ordered) or "none"))
  return "\n".join(lines)


def write_examples(data_dir: str, out_dir: str, count: int) -> list[str]:
  """Writes `count` examples spread over the dataset (`out_dir` may be a URI); returns the PNG
  paths."""
  manifest = records.Manifest.load(data_dir)
  source = loader.ExampleSource(manifest.shard_paths(data_dir))
  decoder = loader.ExampleDecoder()
  epath.Path(out_dir).mkdir(parents=True, exist_ok=True)
  pngs = []
  for index in np.linspace(0, len(source) - 1, min(count, len(source))).astype(int):
    example = decoder(source[int(index)])
    stem = storage.join(out_dir, f"{index:06d}-{templates.TASKS[example['task_id']]}")
    for role, audio in (("input", example["mel_audio"][None]), ("target", example["target_audio"])):
      with storage.local_file(f"{stem}-{role}.wav") as path:
        audio_io.write_audio(path, audio, _RATE)
    with storage.local_file(f"{stem}.png") as path:
      _plot(example, path)
    pngs.append(f"{stem}.png")
  return pngs


def _plot(example: dict[str, np.ndarray], path: str) -> None:
  figure, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
  for axis, (name, audio) in zip(axes, (("input (mel path)", example["mel_audio"]),
                                        ("target", example["target_audio"].mean(axis=0)))):
    freqs, times, power = scipy.signal.spectrogram(audio, _RATE, nperseg=1024, noverlap=768)
    axis.pcolormesh(times, freqs / 1000, 10 * np.log10(power + 1e-12), vmin=-120, vmax=-30,
                    shading="auto")
    axis.set_ylabel("kHz")
    axis.set_title(name)
  axes[-1].set_xlabel("s")
  title = str(example["instruction"]) or f"TTS: {example['transcript']}"
  figure.suptitle(f"{templates.TASKS[example['task_id']]}: {title}", fontsize=9)
  figure.savefig(path, dpi=80)
  plt.close(figure)
