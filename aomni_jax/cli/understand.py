"""`aomni-understand --model DIR --question "..." [--audio a.wav] [--video v.mp4]`: print the answer.

DIR holds a Qwen2.5-Omni thinker (a save_pretrained thinker, a full Qwen2.5-Omni checkpoint, or
an Audio-Omni checkpoint next to a thinker config.json) plus the processor files. Only the new
tokens' text is printed, on stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import av
import numpy as np
from etils import epath

from aomni_jax.audio import dsp
from aomni_jax.audio import io as audio_io
from aomni_jax.cli import logs
from aomni_jax.cli.errors import ArgumentParser, UserError, console
from aomni_jax.models.qwen_omni.understand import SAMPLE_RATE, Understander


def load_audio(path: str) -> np.ndarray:
  """Mono float32 at 16 kHz (channels averaged, polyphase resampling) from any audio or video file.

  A missing, empty or corrupt file raises `AudioReadError` naming it.
  """
  audio, rate = audio_io.read_audio(path)
  return dsp.resample(audio.mean(axis=0), rate, SAMPLE_RATE)


def load_video(path: str, fps: float) -> np.ndarray:
  """RGB uint8 frames [T, H, W, 3] sampled at `fps` (nearest earlier frame)."""
  if not epath.Path(path).is_file():
    raise UserError(f"video file {path!r} does not exist; check the path")
  frames, next_time = [], 0.0
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise UserError(f"video file {path!r} has no video stream (for audio only, use --audio)")
      for frame in container.decode(video=0):
        if frame.time is None or frame.time + 1e-6 >= next_time:
          frames.append(frame.to_ndarray(format="rgb24"))
          next_time += 1.0 / fps
  except av.FFmpegError as err:
    raise UserError(f"video file {path!r} is not readable video ({err})") from err
  if not frames:
    raise UserError(f"video file {path!r}: no video frames could be decoded")
  return np.stack(frames)


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
  video = load_video(args.video, args.video_fps) if args.video else None
  model = Understander.from_pretrained(args.model, dtype=args.dtype, param_dtype=args.dtype,
                                       attention=args.attention)
  answer = model(args.question, audio=audio, video=video,
                 video_fps=args.video_fps if video is not None else None,
                 max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                 top_p=args.top_p, seed=args.seed)
  print(answer)
  return 0


if __name__ == "__main__":
  sys.exit(main())
