"""Clip tables: which real recordings exist, what they are, and under which licence.

A clip table is a list of `Clip`s, read either from a user folder with a CSV table or from the
Debian packages listed in `DEBIAN_SOURCES` (real recordings that ship with labels). The
synthesis stage only ever sees clip tables, so a user corpus and the embedded default go through
identical code.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import gzip
import io
import os
import re
from typing import Callable

from etils import epath

from aomni_jax.data import debian
from aomni_jax.data import qt_rcc
from aomni_jax.data import storage
from aomni_jax.train.paths import run_path

KINDS = ("event", "background", "speech", "music")
CSV_COLUMNS = ("path", "label", "kind", "caption", "transcript", "licence", "source", "speaker",
               "video")


@dataclasses.dataclass(frozen=True)
class Clip:
  """One recording. `caption` is the text-to-audio/music prompt; `transcript` only for speech."""
  path: str
  label: str
  kind: str
  caption: str = ""
  transcript: str = ""
  licence: str = "unknown"
  source: str = "user"
  speaker: str = ""  # speech: who speaks; two clips of one speaker make a voice-cloning pair
  video: str = ""  # the clip's video (its sound is `path`): makes a V2A / V2M example


def write_table(clips: list[Clip], path: str) -> None:
  """Writes a clip CSV (`path` may be a URI)."""
  text = io.StringIO(newline="")
  writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS)
  writer.writeheader()
  for clip in clips:
    writer.writerow(dataclasses.asdict(clip))
  epath.Path(path).write_text(text.getvalue())


def read_table(path: str, folder: str | None = None) -> list[Clip]:
  """Reads a clip CSV (`path` may be a URI). Required columns: path, label; kind defaults to
  "event".

  Relative paths are resolved against `folder` (default: the CSV's own directory), so a table in
  a bucket names the clips next to it.
  """
  folder = folder or os.fspath(run_path(path).parent)
  clips = []
  rows = csv.DictReader(io.StringIO(epath.Path(path).read_text(), newline=""))
  for row_number, row in enumerate(rows, start=2):
    if not row.get("path") or not row.get("label"):
      raise ValueError(f"{path}:{row_number}: every row needs 'path' and 'label'")
    kind = row.get("kind") or "event"
    if kind not in KINDS:
      raise ValueError(f"{path}:{row_number}: kind {kind!r} is not one of {KINDS}")
    clips.append(Clip(
        path=storage.join(folder, row["path"]), label=row["label"], kind=kind,
        caption=row.get("caption") or "", transcript=row.get("transcript") or "",
        licence=row.get("licence") or "unknown", source=row.get("source") or "user",
        speaker=row.get("speaker") or "",
        video=storage.join(folder, row["video"]) if row.get("video") else ""))
  return clips


def scan_folder(folder: str, kind: str = "event") -> list[Clip]:
  """Clips from a folder without a table: the label is the parent folder name (ESC-50 style)."""
  clips = []
  for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
    if os.path.splitext(path)[1].lower() in (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus"):
      label = os.path.basename(os.path.dirname(path)).replace("_", " ")
      clips.append(Clip(path=path, label=label, kind=kind))
  return clips


# ---- Debian packages -------------------------------------------------------------------------

# Sonic Pi file-name prefix → (kind, label). Loops and drones serve as backgrounds.
_SONIC_PI = {
    "ambi_glass_hum": ("background", "glass hum"), "ambi_haunted_hum": ("background", "eerie hum"),
    "ambi_sauna": ("background", "sauna ambience"), "ambi_drone": ("background", "drone"),
    "vinyl_hiss": ("background", "vinyl hiss"), "loop_safari": ("background", "percussion loop"),
    "loop_tabla": ("background", "tabla loop"), "loop_3d_printer": ("background", "3d printer"),
    "perc_bell": ("event", "bell"), "perc_door": ("event", "door"), "perc_snap": ("event", "snap"),
    "perc_impact": ("event", "impact"), "perc_till": ("event", "cash register"),
    "perc_swoosh": ("event", "swoosh"), "misc_burp": ("event", "burp"),
    "misc_crow": ("event", "crow"), "misc_cineboom": ("event", "boom"),
    "drum_cowbell": ("event", "cowbell"), "drum_roll": ("event", "drum roll"),
    "drum_snare": ("event", "snare drum"), "drum_cymbal": ("event", "cymbal"),
    "mehackit_phone": ("event", "phone ringing"), "mehackit_robot": ("event", "robot voice"),
    "elec_chime": ("event", "chime"), "elec_bell": ("event", "electronic bell"),
    "vinyl_scratch": ("event", "vinyl scratch"), "glitch_robot": ("event", "glitchy robot"),
}

_FREEDESKTOP = {
    "alarm-clock-elapsed": "alarm clock", "bell": "bell", "camera-shutter": "camera shutter",
    "complete": "chime", "dialog-warning": "warning beep", "message-new-instant": "message tone",
    "phone-incoming-call": "phone ringing", "phone-outgoing-busy": "busy signal",
    "trash-empty": "crumpling paper",
    "device-added": "click", "power-plug": "plug click", "screen-capture": "camera shutter",
}

# GCompris memory-sound file-name fragment → (kind, label).
_GCOMPRIS_MEMORY = {
    "Applauses": ("event", "applause"), "Bark": ("event", "dog barking"),
    "Buddhist_gong": ("event", "gong"), "Door_Open": ("event", "door opening"),
    "Factory_noise": ("background", "factory noise"), "Fireballs": ("event", "fireball"),
    "FrogsInPondDuringStorm": ("background", "frogs in a pond during a storm"),
    "Heart_beat": ("event", "heartbeat"), "Hits": ("event", "hits"),
    "Object_falling": ("event", "object falling"), "Rain_in_garden": ("background", "rain"),
    "Ring_01": ("event", "telephone ringing"), "StartAndStopCarEngine": ("event", "car engine"),
    "Train_slowing_down": ("background", "train slowing down"),
}

_GCOMPRIS_BUNDLES = ("memory-sound", "explore_farm_animals", "instruments", "explore_world_music")


def _sonic_pi(root: str, copyright_text: str, unused_cache_dir: str) -> list[Clip]:
  clips = []
  for path in sorted(glob.glob(os.path.join(root, "usr/share/sonic-pi/samples/*.flac"))):
    name = os.path.basename(path)
    for prefix, (kind, label) in _SONIC_PI.items():
      if name.startswith(prefix):
        clips.append(Clip(path, label, kind, licence=debian.licence_for(copyright_text, name),
                          source="sonic-pi-samples"))
        break
  return clips


def _freedesktop(root: str, copyright_text: str, unused_cache_dir: str) -> list[Clip]:
  clips = []
  for path in sorted(glob.glob(os.path.join(root, "usr/share/sounds/freedesktop/stereo/*.oga"))):
    stem = os.path.splitext(os.path.basename(path))[0]
    licence = debian.licence_for(copyright_text, os.path.basename(path))
    if stem.startswith("audio-channel-"):
      words = stem.removeprefix("audio-channel-").replace("-", " ").capitalize()
      clips.append(Clip(path, "speech", "speech", transcript=f"{words}.", licence=licence,
                        source="sound-theme-freedesktop", speaker="sound-theme-freedesktop"))
    elif stem in _FREEDESKTOP:
      clips.append(Clip(path, _FREEDESKTOP[stem], "event", licence=licence,
                        source="sound-theme-freedesktop"))
  return clips


def _alsa(root: str, copyright_text: str, unused_cache_dir: str) -> list[Clip]:
  clips = []
  for path in sorted(glob.glob(os.path.join(root, "usr/share/sounds/alsa/*.wav"))):
    stem = os.path.splitext(os.path.basename(path))[0]
    licence = debian.licence_for(copyright_text, os.path.basename(path))
    if stem == "Noise":
      clips.append(Clip(path, "noise", "background", licence=licence, source="alsa-utils"))
    else:
      clips.append(Clip(path, "speech", "speech", transcript=stem.replace("_", " ") + ".",
                        licence=licence, source="alsa-utils", speaker="alsa-utils"))
  return clips


def _asterisk(root: str, copyright_text: str, unused_cache_dir: str,
              max_words: int = 25) -> list[Clip]:
  """Asterisk IVR prompts read by one speaker; transcripts from core-sounds-en.txt.gz."""
  transcript_file = os.path.join(root, "usr/share/doc/asterisk-core-sounds-en",
                                 "core-sounds-en.txt.gz")
  if not os.path.exists(transcript_file):
    return []
  with gzip.open(transcript_file, "rt", encoding="utf-8", errors="replace") as handle:
    lines = [line.split(":", 1) for line in handle if ":" in line and not line.startswith(";")]
  transcripts = {name.strip(): text.strip() for name, text in lines}
  clips = []
  folder = os.path.join(root, "usr/share/asterisk/sounds/en_US_f_Allison")
  for name, text in sorted(transcripts.items()):
    path = os.path.join(folder, f"{name}.g722")
    usable = text and "[" not in text and not re.search(r"\d", text)
    if usable and 2 <= len(text.split()) <= max_words and os.path.exists(path):
      clips.append(Clip(path, "speech", "speech", transcript=text, source="asterisk-core-sounds-en",
                        licence=debian.licence_for(copyright_text, os.path.basename(path)),
                        speaker="Allison (asterisk-core-sounds-en)"))
  return clips


def _gcompris(root: str, copyright_text: str, cache_dir: str) -> list[Clip]:
  """Extracts the labelled recordings of four GCompris activities from their Qt bundles."""
  clips = []
  licence = debian.licence_for(copyright_text, "memory-sound.rcc")
  for bundle_name in _GCOMPRIS_BUNDLES:
    bundle_path = os.path.join(root, "usr/share/gcompris-qt/rcc", f"{bundle_name}.rcc")
    if not os.path.exists(bundle_path):
      continue
    bundle = qt_rcc.RccBundle(bundle_path)
    descriptions = _world_music_descriptions(bundle) if bundle_name == "explore_world_music" else {}
    for name in bundle.names():
      if not name.endswith(".ogg"):
        continue
      stem = os.path.splitext(os.path.basename(name))[0]
      kind_label = _gcompris_kind_label(bundle_name, stem)
      if kind_label is None:
        continue
      path = bundle.extract(name, os.path.join(cache_dir, "gcompris"))
      kind, label = kind_label
      clips.append(Clip(path, label, kind, caption=descriptions.get(stem, ""), licence=licence,
                        source=f"gcompris-qt-data/{bundle_name}"))
  return clips


def _gcompris_kind_label(bundle_name: str, stem: str) -> tuple[str, str] | None:
  if bundle_name == "memory-sound":
    return next((v for k, v in _GCOMPRIS_MEMORY.items() if k in stem), None)
  if bundle_name == "explore_farm_animals":
    return "event", stem.rstrip("s")
  if bundle_name == "instruments":
    return "music", stem.replace("_traversiere", "").replace("_", " ")
  return "music", f"{stem} music"


def _world_music_descriptions(bundle: qt_rcc.RccBundle) -> dict[str, str]:
  """Maps clip stem → the paragraph GCompris shows for it (from board1.qml)."""
  board = next((n for n in bundle.names() if n.endswith("board/board1.qml")), None)
  if board is None:
    return {}
  text = bundle.read(board).decode("utf-8", errors="replace")
  pairs = re.findall(r'"text": qsTr\("(.*?)"\),\s*"audio":[^\n]*/music/(\w+)\.', text)
  return {stem: description for description, stem in pairs}


@dataclasses.dataclass(frozen=True)
class DebianSource:
  """Packages to fetch and the scanner that turns their files into clips."""
  packages: tuple[str, ...]
  scan: Callable[[str, str, str], list[Clip]]  # (unpacked root, copyright text, cache dir)


DEBIAN_SOURCES = {
    "sonic-pi": DebianSource(("sonic-pi-samples",), _sonic_pi),
    "freedesktop": DebianSource(("sound-theme-freedesktop",), _freedesktop),
    "alsa": DebianSource(("alsa-utils",), _alsa),
    "asterisk": DebianSource(("asterisk-core-sounds-en", "asterisk-core-sounds-en-g722"),
                             _asterisk),
    "gcompris": DebianSource(("gcompris-qt-data",), _gcompris),
}
SOUNDFONT_PACKAGE = "timgm6mb-soundfont"
SOUNDFONT_PATH = "usr/share/sounds/sf2/TimGM6mb.sf2"


def debian_clips(names: list[str], cache_dir: str) -> list[Clip]:
  """Fetches the named `DEBIAN_SOURCES` into `cache_dir` and returns their clips."""
  packages = [p for name in names for p in DEBIAN_SOURCES[name].packages]
  root = debian.fetch_packages(packages, cache_dir)
  clips = []
  for name in names:
    source = DEBIAN_SOURCES[name]
    copyright_text = debian.read_copyright(root, source.packages[-1])
    clips += source.scan(root, copyright_text, cache_dir)
  return clips


def debian_soundfont(cache_dir: str) -> Clip:
  """A General MIDI soundfont (TimGM6mb, 6 MB) for rendering music and style pairs; returned as
  a `Clip` so that its licence travels with the items rendered from it."""
  root = debian.fetch_packages([SOUNDFONT_PACKAGE], cache_dir)
  licence = debian.licence_for(debian.read_copyright(root, SOUNDFONT_PACKAGE), "TimGM6mb.sf2")
  return Clip(os.path.join(root, SOUNDFONT_PATH), "soundfont", "music", licence=licence,
              source=SOUNDFONT_PACKAGE)
