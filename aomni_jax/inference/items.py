"""One generation item as a user writes it (a manifest line or the CLI flags) → a `Request`.

An item is a JSON object: {"task": "t2a", "prompt": "...", "audio": "in.wav", "reference_text":
"...", "source": "...", "target": "...", "video": "clip.mp4", "seconds": 30, "seed": 3, "id":
"rain"}. Only "task" is always required. Relative paths are resolved against the manifest's
folder; any path may be a gs:// URI. Everything that can be wrong with an item raises `BadItem`
with a one-line reason, which batch mode records and single mode prints.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

import numpy as np
from etils import epath

from aomni_jax.audio.io import AudioReadError, decode_audio, read_audio
from aomni_jax.inference.pipeline import MAX_SECONDS, Request
from aomni_jax.text import prompts

# Command-line / manifest task names → the official task names.
TASKS = {"t2a": "T2A", "t2m": "T2M", "tts": "TTS", "vc": "TTS", "v2a": "V2A", "v2m": "V2M",
         "add": "Add", "remove": "Remove", "extract": "Extract", "style": "Style Transfer"}
MIN_SAMPLE_RATE = 8000
FIELDS = ("id", "task", "prompt", "audio", "reference_text", "source", "target", "video",
          "seconds", "seed")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BadItem(ValueError):
  """An item that cannot be generated; the message is the one-line reason."""


@dataclasses.dataclass(frozen=True)
class Item:
  """A parsed item: its output name, the request and its seed."""

  id: str
  request: Request
  seed: int
  audio_path: str | None = None  # as the user wrote it (for the sidecar)


def task_name(name: Any) -> str:
  """A CLI / manifest task name (or an official one) → the official name."""
  if isinstance(name, str):
    if name.lower() in TASKS:
      return TASKS[name.lower()]
    if name in prompts.GENERATION_TASKS + prompts.EDIT_TASKS:
      return name
  raise BadItem(f"unknown task {name!r} (expected one of {', '.join(TASKS)})")


def load_audio(path: epath.Path) -> tuple[np.ndarray, int]:
  """[channels, samples] float32 and the rate; local files through PyAV too, URIs via bytes."""
  try:
    if "://" in str(path):
      if not path.exists():
        raise AudioReadError(str(path), "missing")
      return decode_audio(path.read_bytes())
    return read_audio(str(path))
  except AudioReadError as error:
    raise BadItem(f"audio file {path} is {error.reason}") from error
  except Exception as error:  # soundfile raises its own types for undecodable bytes
    raise BadItem(f"audio file {path} is corrupt ({type(error).__name__})") from error


def _text(spec: Mapping[str, Any], key: str) -> str:
  value = spec.get(key, "")
  if value is None:
    return ""
  if not isinstance(value, str):
    raise BadItem(f"{key!r} must be a string, got {type(value).__name__}")
  return value.strip()


def _seconds(spec: Mapping[str, Any]) -> float | None:
  value = spec.get("seconds")
  if value is None:
    return None
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
      0 < value <= MAX_SECONDS):
    raise BadItem(f"seconds={value!r}: expected a number in (0, {MAX_SECONDS:g}]")
  return float(value)


def parse_item(spec: Mapping[str, Any], *, index: int, base_seed: int,
               base_dir: epath.Path) -> Item:
  """Checks one item and reads its audio; the seed defaults to base_seed + its index."""
  if not isinstance(spec, Mapping):
    raise BadItem(f"item {index} is not a JSON object")
  unknown = sorted(set(spec) - set(FIELDS))
  if unknown:
    raise BadItem(f"unknown field(s) {unknown} (known: {', '.join(FIELDS)})")
  item_id = str(spec.get("id", f"{index:06d}"))
  if not _ID.match(item_id):
    raise BadItem(f"id {item_id!r} is not a plain file name (letters, digits, . _ -)")
  task = task_name(spec.get("task"))
  prompt, source, target = _text(spec, "prompt"), _text(spec, "source"), _text(spec, "target")
  if task == "Style Transfer":
    if not source or not target:
      raise BadItem("empty prompt: style transfer needs both 'source' and 'target' sounds")
  elif not prompt and task not in ("V2A", "V2M"):
    raise BadItem(f"empty prompt: task {task} needs a text prompt")
  seed = spec.get("seed", base_seed + index)
  if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
    raise BadItem(f"seed={seed!r}: expected an integer in [0, 2^32)")
  audio = rate = None
  if spec.get("audio"):
    if task not in prompts.EDIT_TASKS + ("TTS",):
      raise BadItem(f"task {task} takes no input audio (got audio={spec['audio']!r})")
    audio, rate = load_audio(base_dir / str(spec["audio"]))
    if rate < MIN_SAMPLE_RATE:
      raise BadItem(f"audio file {spec['audio']} has sample rate {rate} Hz; at least "
                    f"{MIN_SAMPLE_RATE} Hz is needed (44.1 kHz is the model's rate)")
  elif task in prompts.EDIT_TASKS:
    raise BadItem(f"task {task} needs the source audio to edit ('audio')")
  video = spec.get("video")
  try:
    request = Request(task=task, prompt=prompt, source=source, target=target, audio=audio,
                      sample_rate=rate, reference_text=_text(spec, "reference_text") or None,
                      video=None if not video else str(base_dir / str(video)),
                      seconds=_seconds(spec))
  except ValueError as error:
    raise BadItem(str(error)) from error
  return Item(item_id, request, seed, str(spec["audio"]) if spec.get("audio") else None)
