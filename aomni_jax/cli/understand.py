"""`aomni-understand --model DIR --question "..." [--audio a.wav] [--video v.mp4]`: print the answer.

DIR holds a Qwen2.5-Omni thinker (a save_pretrained thinker, a full Qwen2.5-Omni checkpoint, or
an Audio-Omni checkpoint next to a thinker config.json) plus the processor files. Only the new
tokens' text is printed, on stdout. A video is read by the shared decoder (`aomni_jax.video`), and
its own sound is heard with it (`use_audio_in_video`, as the official path) unless
--no-audio-in-video or --audio is given.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np
from etils import epath

from aomni_jax.audio import dsp
from aomni_jax.audio import io as audio_io
from aomni_jax.cli import logs
from aomni_jax.cli.errors import ArgumentParser, UserError, console
from aomni_jax.models.qwen_omni.understand import SAMPLE_RATE, Understander
from aomni_jax.video.decode import VideoReadError

MAX_VIDEO_SECONDS = 600.0


def load_audio(path: str) -> np.ndarray:
  """Mono float32 at 16 kHz (channels averaged, polyphase resampling) from any audio or video file.

  A missing, empty or corrupt file raises `AudioReadError` naming it.
  """
  audio, rate = audio_io.read_audio(path)
  return dsp.resample(audio.mean(axis=0), rate, SAMPLE_RATE)


def load_video(path: str, fps: float, *, with_audio: bool = True,
               max_seconds: float = MAX_VIDEO_SECONDS) -> tuple[np.ndarray, np.ndarray | None]:
  """(RGB uint8 frames [T, H, W, 3] at `fps`, the sound track as mono 16 kHz or None).

  The shared video decoder (`aomni_jax.video`), frames picked by presentation time over the whole
  clip (at most `max_seconds`); the sound track only when asked for and present.
  """
  from aomni_jax.video.decode import probe, read_audio_track, sample_frames  # pylint: disable=g-import-not-at-top
  info = probe(path)
  seconds = min(info.duration or max_seconds, max_seconds)
  (sampled,) = sample_frames(path, [fps], seconds)
  frames = sampled.frames[:max(1, len(sampled.frames) - sampled.num_padded)]
  audio = None
  if with_audio and info.has_audio:
    audio = read_audio_track(path, SAMPLE_RATE, seconds=seconds)[0]
  return frames, audio


def _check_model_dir(path: str) -> None:
  """Fails fast, before any audio is decoded or weights are read, on a wrong --model."""
  directory = epath.Path(path)
  if not directory.is_dir():
    raise UserError(f"--model {path!r} is not a directory; give the folder holding the "
                    "Qwen2.5-Omni thinker weights, config.json and the processor files")
  if not (directory / "config.json").exists():
    raise UserError(f"--model {path!r} has no config.json; give the folder holding the "
                    "Qwen2.5-Omni thinker weights, config.json and the processor files")


@console("aomni-understand")
def main(argv: Sequence[str] | None = None) -> int:
  parser = ArgumentParser(prog="aomni-understand", description=__doc__.split("\n")[0])
  parser.add_argument("--model", required=True, help="checkpoint + config + processor directory")
  parser.add_argument("--question", required=True)
  parser.add_argument("--audio", help="an audio file (any rate; resampled to 16 kHz mono)")
  parser.add_argument("--video", help="a video file")
  parser.add_argument("--video-fps", type=float, default=2.0, help="frames sampled per second")
  parser.add_argument("--no-audio-in-video", action="store_true",
                      help="ignore the video's own sound (by default Qwen hears it, interleaved "
                           "with the frames, as the official understanding path does)")
  parser.add_argument("--max-new-tokens", type=int, default=256)
  parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
  parser.add_argument("--top-p", type=float, default=1.0)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
  parser.add_argument("--attention", default="auto", choices=("auto", "xla", "cudnn"))
  logs.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  logs.configure(args.verbose)
  if not args.question.strip():
    raise UserError("--question is empty; ask something about the audio or video")
  if args.video_fps <= 0:
    raise UserError(f"--video-fps must be > 0, got {args.video_fps}")
  if args.max_new_tokens < 1:
    raise UserError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
  _check_model_dir(args.model)
  audio = load_audio(args.audio) if args.audio else None
  video, track = None, None
  if args.video:
    try:
      video, track = load_video(args.video, args.video_fps,
                                with_audio=not args.no_audio_in_video and audio is None)
    except VideoReadError as err:
      raise UserError(str(err)) from err
  use_audio_in_video = track is not None
  audio = track if use_audio_in_video else audio
  model = Understander.from_pretrained(args.model, dtype=args.dtype, param_dtype=args.dtype,
                                       attention=args.attention)
  answer = model(args.question, audio=audio, video=video,
                 video_fps=args.video_fps if video is not None else None,
                 use_audio_in_video=use_audio_in_video,
                 max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                 top_p=args.top_p, seed=args.seed)
  print(answer)
  return 0


if __name__ == "__main__":
  sys.exit(main())
