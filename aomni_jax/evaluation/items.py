"""What is evaluated: generated clips (audio + JSON sidecar) and a reference manifest (JSONL).

Generated folder (what `aomni-generate` writes): every `*.wav` / `*.flac` with an optional
`<stem>.json` sidecar. The reader is tolerant: it uses `id` (or `item_id`) and `task` from the
sidecar when present (ours, "t2a", or the official "T2A", "Style Transfer", …; "vc" is scored as
tts), else the file stem as id and the reference's task; every other field (prompt, seed,
checkpoint, seconds, …) is kept as `meta`. Clips whose sidecar has a `status` other than "ok"
are left out. Several clips may share an id (seeds).

Reference manifest, one JSON object per line; paths are relative to the manifest's folder and may
be `gs://` URIs:

  id          matches the generated clip's id
  task        t2a | t2m | tts | add | remove | extract | style
  path        reference audio: the real recording (t2a/t2m), real speech (tts), the edit target
  prompt      the text prompt (optional)
  labels      class names the prompt asks for, e.g. ["dog barking"] (t2a/t2m label score)
  transcript  the text to be spoken (tts; `reference_text`, aomni-generate's name, works too)
  input       the edit's input audio (editing tasks)
  residual    input minus target, i.e. what an edit must leave out (remove / extract; optional)
"""

from __future__ import annotations

import dataclasses
import io
import json

from etils import epath
import numpy as np
import soundfile as sf
import tqdm

from aomni_jax.audio import dsp
from aomni_jax.audio import io as audio_io
from aomni_jax.data import templates
from aomni_jax.evaluation import evaluate

AUDIO_SUFFIXES = (".wav", ".flac")


class ItemsError(ValueError):
  """A manifest or generated folder that cannot be read; the message names the file and fix."""


@dataclasses.dataclass(frozen=True)
class Reference:
  id: str
  task: str
  path: epath.Path | None = None
  prompt: str = ""
  labels: tuple[str, ...] = ()
  transcript: str = ""
  input: epath.Path | None = None
  residual: epath.Path | None = None


@dataclasses.dataclass(frozen=True)
class Generated:
  id: str
  path: epath.Path
  task: str = ""
  meta: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)


def read_manifest(manifest: str | epath.Path) -> list[Reference]:
  """Parses the JSONL reference manifest, resolving paths against its folder."""
  manifest = epath.Path(manifest)
  if not manifest.exists():
    raise ItemsError(f"reference manifest {manifest} does not exist")
  folder = manifest.parent
  references, seen = [], set()
  for number, line in enumerate(manifest.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as error:
      raise ItemsError(f"{manifest}:{number}: not JSON ({error.msg})") from error
    if not isinstance(row, dict) or "id" not in row or row.get("task") not in templates.TASKS:
      raise ItemsError(f"{manifest}:{number}: needs an `id` and a `task` in {templates.TASKS}")
    if row["id"] in seen:
      raise ItemsError(f"{manifest}:{number}: duplicate id {row['id']!r}")
    seen.add(row["id"])
    labels = row.get("labels", ())
    references.append(Reference(
        id=str(row["id"]), task=row["task"], prompt=row.get("prompt", ""),
        labels=(labels,) if isinstance(labels, str) else tuple(labels),
        transcript=row.get("transcript", row.get("reference_text", "")),
        **{key: folder / row[key] if row.get(key) else None
           for key in ("path", "input", "residual")}))
  return references


def read_generated(folder: str | epath.Path) -> list[Generated]:
  """Every audio file under `folder` (recursively) with its sidecar, sorted by path."""
  folder = epath.Path(folder)
  if not folder.is_dir():
    raise ItemsError(f"generated folder {folder} does not exist")
  items = []
  for path in sorted(_audio_files(folder)):
    sidecar = path.with_suffix(".json")
    meta = {}
    if sidecar.exists():
      try:
        meta = json.loads(sidecar.read_text())
      except json.JSONDecodeError as error:
        raise ItemsError(f"{sidecar}: not JSON ({error.msg})") from error
    if meta.get("status", "ok") != "ok":
      continue
    item_id = str(meta.get("id", meta.get("item_id", path.stem)))
    items.append(Generated(id=item_id, path=path, task=_task(meta.get("task", "")), meta=meta))
  if not items:
    raise ItemsError(f"no {'/'.join(AUDIO_SUFFIXES)} files under {folder}")
  return items


def _task(name: str) -> str:
  """Our task name for a sidecar's task (ours or the official one); "" when we cannot score it
  (v2a, v2m: no video references), so the manifest's task decides."""
  official = {value.lower(): key for key, value in templates.PROMPT_TASKS.items()}
  name = str(name).lower()
  name = {"vc": "tts"}.get(name, name)
  return name if name in templates.TASKS else official.get(name, "")


def _audio_files(folder: epath.Path):
  """Audio files under `folder`, recursively (epath has no recursive glob on gs://)."""
  for path in folder.iterdir():
    if path.is_dir():
      yield from _audio_files(path)
    elif path.suffix.lower() in AUDIO_SUFFIXES:
      yield path


def pair(generated: list[Generated],
         references: list[Reference]) -> tuple[list[tuple[Generated, Reference]], list[str]]:
  """Matches generated clips to references by id; returns the pairs and the unmatched ids."""
  by_id = {r.id: r for r in references}
  pairs = [(g, by_id[g.id]) for g in generated if g.id in by_id]
  unmatched = sorted({g.id for g in generated if g.id not in by_id})
  return pairs, unmatched


def load_samples(pairs: list[tuple[Generated, Reference]],
                 progress: bool = False) -> list[evaluate.Sample]:
  """Reads every pair's audio; references are brought to the generated clip's rate (mono)."""
  samples = []
  for generated, reference in tqdm.tqdm(pairs, desc="reading audio", disable=not progress):
    audio, rate = read_mono(generated.path)
    others = {key: read_mono(getattr(reference, key), rate)[0] if getattr(reference, key) else None
              for key in ("path", "input", "residual")}
    samples.append(evaluate.Sample(
        id=generated.id, task=generated.task or reference.task, audio=audio, rate=rate,
        reference=others["path"], labels=reference.labels, transcript=reference.transcript,
        input=others["input"], residual=others["residual"]))
  return samples


def read_mono(path: epath.Path, rate: int | None = None) -> tuple[np.ndarray, int]:
  """(mono float32 [frames], rate): at the file's own rate unless `rate` is given. Local files
  may use any codec FFmpeg reads; remote ones (gs://…) those libsndfile reads."""
  path = epath.Path(path)
  try:
    if "://" in str(path):
      data, file_rate = sf.read(io.BytesIO(path.read_bytes()), dtype="float32", always_2d=True)
      audio = data.T
    else:
      audio, file_rate = audio_io.read_audio(str(path))
  except (audio_io.AudioReadError, sf.LibsndfileError, FileNotFoundError) as error:
    raise ItemsError(f"cannot read audio {path}: {error}") from error
  rate = rate or file_rate
  return dsp.resample(dsp.to_channels(audio, 1), file_rate, rate)[0], rate
