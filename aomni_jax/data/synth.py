"""Synthetic branch: events mixed into backgrounds, style pairs rendered from one phrase with two
instruments, and single-clip generation examples.

Every item is a set of *stems* plus *examples* that name which stems sum to the input and which
to the target. The add/remove/extract triple of a mixture therefore shares two stored stems and
"mixture = residual + target" holds exactly, by construction, after any codec round trip.
All randomness comes from the `np.random.Generator` passed in, so a seed fixes the output.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from aomni_jax.audio import dsp
from aomni_jax.data import templates
from aomni_jax.text import prompts


@dataclasses.dataclass(frozen=True)
class SynthConfig:
  """Ranges follow the paper: SNR U(0, 3) dB, pitch U(-3, 3) semitones, stretch U(0.8, 1.2)."""
  rate: int = 44100
  clip_seconds: float = 11.0  # 485100 samples: the window the VAE and sampler use
  snr_db: tuple[float, float] = (0.0, 3.0)
  semitones: tuple[float, float] = (-3.0, 3.0)
  stretch: tuple[float, float] = (0.8, 1.2)  # duration multiplier of the event
  target_lufs: float = -23.0
  peak: float = 0.99
  max_event_seconds: float = 8.0

  @property
  def frames(self) -> int:
    return int(round(self.clip_seconds * self.rate))


@dataclasses.dataclass
class Item:
  """One stored record: stems [2, frames] float32, examples referencing them, and provenance."""
  item_id: str
  stems: dict[str, np.ndarray]
  examples: list[dict]
  meta: dict


def example(task: str, inputs: list[str], targets: list[str], *, desc: str = "",
            style_target: str = "", transcript: str = "", label: str = "") -> dict:
  """One training example: which stems form input and target, and its instruction text."""
  return {"task": task, "instruction": templates.user_text(task, desc, style_target),
          "input": inputs, "target": targets, "transcript": transcript, "label": label or desc}


# ---- events in backgrounds -------------------------------------------------------------------

def loop_to_length(audio: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
  """Tiles a background until it covers `frames`, then takes a random window."""
  repeats = -(-frames // audio.shape[-1]) + 1
  tiled = np.tile(audio, (1, repeats))
  start = int(rng.integers(0, tiled.shape[-1] - frames + 1))
  return tiled[:, start:start + frames]


def span_snr_db(event: np.ndarray, background: np.ndarray, start: int, stop: int) -> float:
  """SNR of the event over the span it occupies: the definition every mixture satisfies."""
  return dsp.snr_db(event[:, start:stop], background[:, start:stop])


def mix_event(background: np.ndarray, event: np.ndarray, rng: np.random.Generator,
              config: SynthConfig) -> tuple[dict[str, np.ndarray], dict]:
  """Places a pitch-shifted, time-stretched event into a background at a drawn SNR.

  Inputs are [channels, frames] at `config.rate`. Returns stems {"background", "event"} (stereo,
  `config.frames` long, loudness-normalised as a mixture, peak-safe) and the drawn parameters.
  """
  semitones = float(rng.uniform(*config.semitones))
  stretch = float(rng.uniform(*config.stretch))
  snr = float(rng.uniform(*config.snr_db))
  event = dsp.time_stretch(dsp.pitch_shift(event, semitones), stretch)
  event = dsp.to_channels(event, 2)[:, :int(config.max_event_seconds * config.rate)]
  background = dsp.to_channels(loop_to_length(background, config.frames, rng), 2)
  onset = int(rng.integers(0, config.frames - event.shape[-1] + 1))
  stop = onset + event.shape[-1]
  placed = np.zeros_like(background)
  placed[:, onset:stop] = event
  placed *= 10.0 ** ((snr - span_snr_db(placed, background, onset, stop)) / 20.0)
  stems = normalise_stems({"background": background, "event": placed}, config)
  return stems, {"snr_db": snr, "onset_s": onset / config.rate, "event_s": (stop - onset) /
                 config.rate, "semitones": semitones, "stretch": stretch}


def normalise_stems(stems: dict[str, np.ndarray], config: SynthConfig) -> dict[str, np.ndarray]:
  """One gain for all stems: the sum reaches the target loudness, and no stem or sum clips."""
  mixture = sum(stems.values())
  gain = dsp.gain_to_loudness(mixture, config.rate, config.target_lufs)
  peak = max(np.abs(x).max() for x in [mixture, *stems.values()]) * gain
  if peak > config.peak:
    gain *= config.peak / peak
  return {name: (stem * gain).astype(np.float32) for name, stem in stems.items()}


def mixture_item(item_id: str, background: np.ndarray, event: np.ndarray, bg_label: str,
                 event_label: str, rng: np.random.Generator, config: SynthConfig,
                 others: tuple[tuple[np.ndarray, str], ...] = ()) -> Item:
  """The add/remove/extract triple for one mixture, plus a text-to-audio example of it.

  `others`: further (event, label) pairs mixed into the background first (each at its own drawn
  SNR), so the edit acts on one sound among several and the residual keeps the rest.
  """
  other_params = []
  for other, _ in others:
    stems, drawn = mix_event(background, other, rng, config)
    background = stems["background"] + stems["event"]
    other_params.append(drawn)
  stems, params = mix_event(background, event, rng, config)
  other_labels = [label for _, label in others]
  caption = (" and ".join([event_label] + other_labels) +
             f" with {bg_label} in the background")
  examples = edit_triple(event_label) + [
      example("t2a", [], ["background", "event"], desc=caption, label=event_label)]
  meta = dict(params, labels=[event_label, *other_labels, bg_label])
  if others:
    meta["other_events"] = other_params
  return Item(item_id, stems, examples, meta)


def stems_item(item_id: str, residual: np.ndarray, target: np.ndarray, label: str,
               rng: np.random.Generator, config: SynthConfig) -> Item:
  """Edit pairs from separated stems of one recording (real branch): the same triple as a
  synthetic mixture, over one shared random window of both stems."""
  frames = min(residual.shape[-1], target.shape[-1])
  start = int(rng.integers(0, max(0, frames - config.frames) + 1))
  window = slice(start, start + min(frames, config.frames))
  stems = {"background": residual[:, window], "event": target[:, window]}
  stems = {name: dsp.fit_length(dsp.to_channels(stem, 2), config.frames)
           for name, stem in stems.items()}
  return Item(item_id, normalise_stems(stems, config), edit_triple(label),
              {"labels": [label], "window_start_s": start / config.rate})


def edit_triple(event_label: str) -> list[dict]:
  """Add / remove / extract over stems "background" (residual) and "event" (target)."""
  both = ["background", "event"]
  return [
      example("add", ["background"], both, desc=event_label),
      example("remove", both, ["background"], desc=event_label),
      example("extract", both, ["event"], desc=event_label),
  ]


# ---- single clips: text-to-audio, text-to-music, speech --------------------------------------

_CAPTIONS = ("the sound of {}", "{} sound", "a recording of {}", "{}")


def single_item(item_id: str, audio: np.ndarray, kind: str, label: str, caption: str,
                transcript: str, rng: np.random.Generator, config: SynthConfig) -> Item:
  """A generation example from one clip: T2A for events/backgrounds, T2M for music, TTS for
  speech. Long clips give a random window; short ones start at a random offset."""
  audio = dsp.to_channels(audio, 2)
  if audio.shape[-1] > config.frames:
    start = int(rng.integers(0, audio.shape[-1] - config.frames + 1))
    audio = audio[:, start:start + config.frames]
  elif kind != "speech":
    audio = np.roll(dsp.fit_length(audio, config.frames),
                    int(rng.integers(0, config.frames - audio.shape[-1] + 1)), axis=-1)
  stems = normalise_stems({"target": dsp.fit_length(audio, config.frames)}, config)
  if kind == "speech":
    item_example = example("tts", [], ["target"], transcript=transcript, label=label)
  else:
    text = caption or _CAPTIONS[int(rng.integers(len(_CAPTIONS)))].format(label)
    item_example = example("t2m" if kind == "music" else "t2a", [], ["target"], desc=text,
                           label=label)
  return Item(item_id, stems, [item_example], {"labels": [label]})


def video_item(item_id: str, audio: np.ndarray, kind: str, label: str, caption: str,
               video: str, rng: np.random.Generator, config: SynthConfig) -> Item:
  """A V2A (V2M for music) example: a window of the clip's sound and where it starts in the video.

  Unlike `single_item`, a short clip is not shifted: its sound must stay aligned with the video,
  whose frames the sync features are computed from (`data/video_features.py`) starting at
  `video_start` seconds.
  """
  audio = dsp.to_channels(audio, 2)
  start = 0
  if audio.shape[-1] > config.frames:
    start = int(rng.integers(0, audio.shape[-1] - config.frames + 1))
  stems = normalise_stems({"target": dsp.fit_length(audio[:, start:], config.frames)}, config)
  item_example = example("v2m" if kind == "music" else "v2a", [], ["target"], desc=caption,
                         label=label)
  item_example.update(video=video, video_start=start / config.rate)
  return Item(item_id, stems, [item_example], {"labels": [label]})


VOICE_PROMPT_SECONDS = 6.0  # inference keeps the last 6 s of a voice prompt (Gradio)


def voice_clone_item(item_id: str, prompt: np.ndarray, speech: np.ndarray, prompt_text: str,
                     speech_text: str, speaker: str, config: SynthConfig) -> Item:
  """TTS with a voice prompt (voice cloning), laid out as inference uses it: the mel path gets
  the prompt (its last 6 s, zero-padded), the transcript is "prompt text. new text", and the
  target is the prompt followed by the new utterance of the same speaker (inference then cuts
  the prompt's duration off the front of the output)."""
  prompt = dsp.to_channels(prompt, 2)[:, -int(VOICE_PROMPT_SECONDS * config.rate):]
  speech = dsp.to_channels(speech, 2)[:, :config.frames - prompt.shape[-1]]
  placed = np.zeros((2, config.frames), np.float32)
  placed[:, prompt.shape[-1]:prompt.shape[-1] + speech.shape[-1]] = speech
  stems = normalise_stems({"prompt": dsp.fit_length(prompt, config.frames), "speech": placed},
                          config)
  transcript = prompts.speech_transcript(speech_text, prompt_text)
  return Item(item_id, stems, [example("tts", ["prompt"], ["prompt", "speech"],
                                       transcript=transcript, label="speech")],
              {"labels": ["speech"], "speaker": speaker,
               "prompt_s": prompt.shape[-1] / config.rate})


# ---- style transfer: one phrase, two instruments ---------------------------------------------

# General MIDI program numbers of instruments that can play a melody in a middle register.
INSTRUMENTS = {
    "piano": 0, "electric piano": 4, "marimba": 12, "organ": 19, "acoustic guitar": 24,
    "electric guitar": 27, "violin": 40, "cello": 42, "harp": 46, "strings": 48, "trumpet": 56,
    "saxophone": 65, "clarinet": 71, "flute": 73, "synth lead": 80,
}
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


@dataclasses.dataclass(frozen=True)
class Phrase:
  """A monophonic melody: (midi pitch, onset s, duration s, velocity) per note."""
  notes: tuple[tuple[int, float, float, int], ...]
  description: str


def random_phrase(rng: np.random.Generator, max_seconds: float) -> Phrase:
  root = int(rng.integers(55, 67))
  mode = str(rng.choice(list(_SCALES)))
  tempo = int(rng.integers(70, 141))
  beat = 60.0 / tempo
  degree, time, notes = 0, 0.25, []
  while True:
    duration = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])) * beat
    if time + duration > max_seconds:
      break
    degree = int(np.clip(degree + rng.integers(-2, 3), -3, 9))
    octave, step = divmod(degree, 7)
    pitch = root + 12 * octave + _SCALES[mode][step]
    notes.append((pitch, time, duration * 0.9, int(rng.integers(70, 111))))
    time += duration
  return Phrase(tuple(notes), f"{tempo} bpm melody in {_KEYS[root % 12]} {mode}")


def render_phrase(soundfont: str, program: int, phrase: Phrase, config: SynthConfig) -> np.ndarray:
  """Renders a phrase with one General MIDI instrument; returns [2, config.frames] float32."""
  import tinysoundfont  # pylint: disable=g-import-not-at-top  (optional: only style/music needs it)
  synth = tinysoundfont.Synth(samplerate=config.rate)
  synth.program_select(0, synth.sfload(soundfont), 0, program)
  events = sorted([(on, 1, pitch, vel) for pitch, on, _, vel in phrase.notes] +
                  [(on + dur, 0, pitch, 0) for pitch, on, dur, _ in phrase.notes])
  chunks, rendered = [], 0
  for time, is_on, pitch, velocity in events:
    frames = int(round(time * config.rate)) - rendered
    if frames > 0:
      chunks.append(np.frombuffer(synth.generate(frames), np.float32))
      rendered += frames
    if is_on:
      synth.noteon(0, pitch, velocity)
    else:
      synth.noteoff(0, pitch)
  chunks.append(np.frombuffer(synth.generate(config.frames - rendered), np.float32))
  return np.concatenate(chunks).reshape(-1, 2).T.copy()


def style_item(item_id: str, soundfont: str, rng: np.random.Generator,
               config: SynthConfig) -> Item:
  """Two renderings of one phrase (same pitches and timing) → style pairs both ways + T2M."""
  names = list(INSTRUMENTS)
  first, second = (names[i] for i in rng.choice(len(names), size=2, replace=False))
  phrase = random_phrase(rng, max_seconds=min(8.0, config.clip_seconds - 1.5))
  stems = {}
  for name in (first, second):
    rendered = {"target": render_phrase(soundfont, INSTRUMENTS[name], phrase, config)}
    stems[name] = normalise_stems(rendered, config)["target"]
  examples = [
      example("style", [first], [second], desc=first, style_target=second, label=second),
      example("style", [second], [first], desc=second, style_target=first, label=first),
      example("t2m", [], [first], desc=f"A {first} playing a {phrase.description}", label=first),
  ]
  return Item(item_id, stems, examples, {"labels": [first, second], "notes": list(phrase.notes),
                                         "phrase": phrase.description})
