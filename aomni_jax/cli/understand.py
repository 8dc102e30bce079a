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

from aomni_jax.models.qwen_omni.understand import SAMPLE_RATE, Understander

MAX_VIDEO_SECONDS = 600.0


def load_audio(path: str) -> np.ndarray:
  """Mono float32 at 16 kHz (channels averaged, polyphase resampling)."""
  import soundfile
  from scipy.signal import resample_poly
  samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
  mono = samples.mean(axis=1)
  if rate != SAMPLE_RATE:
    g = np.gcd(int(rate), SAMPLE_RATE)
    mono = resample_poly(mono, SAMPLE_RATE // g, int(rate) // g).astype(np.float32)
  return mono


def load_video(path: str, fps: float, *, with_audio: bool = True,
               max_seconds: float = MAX_VIDEO_SECONDS) -> tuple[np.ndarray, np.ndarray | None]:
  """(RGB uint8 frames [T, H, W, 3] at `fps`, the sound track as mono 16 kHz or None).

  The shared video decoder (`aomni_jax.video`), frames picked by presentation time over the whole
  clip (at most `max_seconds`); the sound track only when asked for and present.
  """
  from aomni_jax.video.decode import probe, read_audio_track, sample_frames
  info = probe(path)
  seconds = min(info.duration or max_seconds, max_seconds)
  (sampled,) = sample_frames(path, [fps], seconds)
  frames = sampled.frames[:max(1, len(sampled.frames) - sampled.num_padded)]
  audio = None
  if with_audio and info.has_audio:
    audio = read_audio_track(path, SAMPLE_RATE, seconds=seconds)[0]
  return frames, audio


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="aomni-understand", description=__doc__.split("\n")[0])
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
  args = parser.parse_args(argv)
  if args.video_fps <= 0:
    parser.error(f"--video-fps must be > 0, got {args.video_fps}")
  try:
    audio = load_audio(args.audio) if args.audio else None
    video, track = None, None
    if args.video:
      video, track = load_video(args.video, args.video_fps,
                                with_audio=not args.no_audio_in_video and audio is None)
    use_audio_in_video = track is not None
    audio = track if use_audio_in_video else audio
    model = Understander.from_pretrained(args.model, dtype=args.dtype, param_dtype=args.dtype,
                                         attention=args.attention)
    answer = model(args.question, audio=audio, video=video,
                   video_fps=args.video_fps if video is not None else None,
                   use_audio_in_video=use_audio_in_video,
                   max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                   top_p=args.top_p, seed=args.seed)
  except (FileNotFoundError, ValueError) as err:
    print(f"aomni-understand: {err}", file=sys.stderr)
    return 1
  print(answer)
  return 0


if __name__ == "__main__":
  sys.exit(main())
