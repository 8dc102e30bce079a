"""`aomni-understand --model DIR --question "..." [--audio a.wav] [--video v.mp4]`: print the answer.

DIR holds a Qwen2.5-Omni thinker (a save_pretrained thinker, a full Qwen2.5-Omni checkpoint, or
an Audio-Omni checkpoint next to a thinker config.json) plus the processor files. Only the new
tokens' text is printed, on stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from aomni_jax.models.qwen_omni.understand import SAMPLE_RATE, Understander


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


def load_video(path: str, fps: float) -> np.ndarray:
  """RGB uint8 frames [T, H, W, 3] sampled at `fps` (nearest earlier frame)."""
  import av
  frames, next_time = [], 0.0
  with av.open(path) as container:
    for frame in container.decode(video=0):
      if frame.time is None or frame.time + 1e-6 >= next_time:
        frames.append(frame.to_ndarray(format="rgb24"))
        next_time += 1.0 / fps
  if not frames:
    raise ValueError(f"no video frames could be decoded from {path!r}")
  return np.stack(frames)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="aomni-understand", description=__doc__.split("\n")[0])
  parser.add_argument("--model", required=True, help="checkpoint + config + processor directory")
  parser.add_argument("--question", required=True)
  parser.add_argument("--audio", help="an audio file (any rate; resampled to 16 kHz mono)")
  parser.add_argument("--video", help="a video file")
  parser.add_argument("--video-fps", type=float, default=2.0, help="frames sampled per second")
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
    video = load_video(args.video, args.video_fps) if args.video else None
    model = Understander.from_pretrained(args.model, dtype=args.dtype, param_dtype=args.dtype,
                                         attention=args.attention)
    answer = model(args.question, audio=audio, video=video,
                   video_fps=args.video_fps if video is not None else None,
                   max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                   top_p=args.top_p, seed=args.seed)
  except (FileNotFoundError, ValueError) as err:
    print(f"aomni-understand: {err}", file=sys.stderr)
    return 1
  print(answer)
  return 0


if __name__ == "__main__":
  sys.exit(main())
