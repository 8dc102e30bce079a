"""Host-side 3-D (TMRoPE) position ids of a Qwen2.5-Omni prompt: transformers' `get_rope_index`.

Every batch row is walked over its unpadded tokens: text runs count up on all three rows, audio
blocks count up (25 per second), image/video blocks get (t, h, w) over the merged grid, and with
audio-in-video the video and audio tokens are interleaved in 2-second chunks sharing one
timeline. Each new piece starts at (max of the previous piece) + 1, exactly as in HF. Padded
slots get position 1. Data-dependent loops, so numpy on the host; the result feeds jit.
"""

from __future__ import annotations

import numpy as np

from aomni_jax.models.qwen_omni.audio import output_lengths
from aomni_jax.models.qwen_omni.config import ThinkerConfig


def _run(length: int, start: int) -> np.ndarray:
  return np.tile(np.arange(length, dtype=np.int64)[None] + start, (3, 1))


def _vision(start: int, t_index: np.ndarray, grid_hw: tuple[int, int], merge: int) -> np.ndarray:
  gh, gw = grid_hw[0] // merge, grid_hw[1] // merge
  t = np.repeat(t_index, gh * gw)
  h = np.tile(np.repeat(np.arange(gh), gw), len(t_index))
  w = np.tile(np.arange(gw), len(t_index) * gh)
  return np.stack([t, h, w]).astype(np.int64) + start


def _video_t_index(grid_t: int, second_per_grid: float, per_second: int) -> np.ndarray:
  # float32 product truncated to int, as torch computes it.
  scaled = (np.arange(grid_t, dtype=np.float32) * np.float32(second_per_grid)
            * np.float32(per_second))
  return scaled.astype(np.int64)


def _chunk_bounds(values: np.ndarray, per_chunk: int, origin: int) -> list[tuple[int, int]]:
  """Splits a non-decreasing index row where (value − origin) crosses k·per_chunk (HF's walk)."""
  bounds, start, chunk = [], 0, 1
  for i, value in enumerate(values.tolist()):
    if value - origin >= chunk * per_chunk:
      bounds.append((start, i))
      start, chunk = i, chunk + 1
  bounds.append((start, len(values)))
  return bounds


def rope_index(input_ids: np.ndarray, attention_mask: np.ndarray | None, cfg: ThinkerConfig, *,
               image_grid_thw: np.ndarray | None = None,
               video_grid_thw: np.ndarray | None = None,
               audio_lengths: np.ndarray | None = None,
               video_second_per_grid: np.ndarray | None = None,
               use_audio_in_video: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Position ids [3, B, L] and rope deltas [B] (max position + 1 − unpadded length).

  audio_lengths are the clips' valid mel-frame counts (the processor's feature mask sums).
  """
  input_ids = np.asarray(input_ids)
  mask = (np.ones_like(input_ids, bool) if attention_mask is None
          else np.asarray(attention_mask) == 1)
  if image_grid_thw is None and video_grid_thw is None:
    pos = np.cumsum(mask, axis=-1) - 1
    pos[~mask] = 1
    deltas = pos.max(axis=-1) + 1 - mask.sum(axis=-1)
    return np.tile(pos[None], (3, 1, 1)).astype(np.int32), deltas.astype(np.int32)

  merge, per_second = cfg.vision.spatial_merge_size, cfg.position_id_per_seconds
  images = None if image_grid_thw is None else np.asarray(image_grid_thw).reshape(-1, 3)
  videos = None if video_grid_thw is None else np.asarray(video_grid_thw).reshape(-1, 3)
  audio_tokens = None if audio_lengths is None else output_lengths(np.asarray(audio_lengths))
  positions = np.ones((3, *input_ids.shape), np.int64)
  deltas = np.zeros((input_ids.shape[0],), np.int64)
  counters = {"image": 0, "video": 0, "audio": 0}
  for row in range(input_ids.shape[0]):
    tokens = input_ids[row][mask[row]].tolist()
    pieces: list[np.ndarray] = []
    next_start = lambda: int(pieces[-1].max()) + 1 if pieces else 0
    arr = np.asarray(tokens)
    after_vision_bos = arr[np.flatnonzero(arr == cfg.vision_start_token_id) + 1]
    remain = {
        "audio": int(np.sum(arr == cfg.audio_start_token_id)),
        "image": int(np.sum(after_vision_bos == cfg.image_token_id)),
        "video": int(np.sum(after_vision_bos == (cfg.audio_start_token_id if use_audio_in_video
                                                   else cfg.video_token_id))),
    }
    blocks = remain["image"] + remain["audio"] + (0 if use_audio_in_video else remain["video"])
    token_of = {"image": cfg.image_token_id, "video": cfg.video_token_id,
                "audio": cfg.audio_token_id}
    st = 0
    for _ in range(blocks):
      found = {kind: (tokens.index(token_of[kind], st)
                      if remain[kind] > 0 and token_of[kind] in tokens else len(tokens) + 1)
               for kind in ("image", "video", "audio")}
      first = min(found.values())
      # Ties resolve audio, then image, then video, as in HF.
      kind = next(k for k in ("audio", "image", "video") if found[k] == first)
      interleaved = kind == "video" and use_audio_in_video
      text_len = first - st - (2 if interleaved else 1)
      if text_len:
        pieces.append(_run(text_len, next_start()))
      bos = next_start()
      pieces.append(_run(1, bos))
      if interleaved:
        pieces.append(_run(1, bos))
      start = next_start()
      if kind == "audio":
        n_tok = int(audio_tokens[counters["audio"]])
        pieces.append(_run(n_tok, start))
      else:
        grids = images if kind == "image" else videos
        t, h, w = (int(g) for g in grids[counters[kind]])
        if kind == "image":
          t_index = np.arange(t, dtype=np.int64) * per_second
        else:
          t_index = _video_t_index(t, float(video_second_per_grid[counters["video"]]), per_second)
        vis = _vision(start, t_index, (h, w), merge)
        n_tok = t * h * w // merge ** 2
        if interleaved:
          aud = _run(int(audio_tokens[counters["audio"]]), start)
          per_chunk = int(per_second * cfg.seconds_per_chunk)
          v_chunks = _chunk_bounds(vis[0], per_chunk, start)
          a_chunks = _chunk_bounds(aud[0], per_chunk, start)
          for j in range(max(len(v_chunks), len(a_chunks))):
            if j < len(v_chunks):
              pieces.append(vis[:, v_chunks[j][0]:v_chunks[j][1]])
            if j < len(a_chunks):
              pieces.append(aud[:, a_chunks[j][0]:a_chunks[j][1]])
          n_tok += aud.shape[1]
        else:
          pieces.append(vis)
      eos = next_start()
      pieces.append(_run(1, eos))
      if interleaved:
        pieces.append(_run(1, eos))
      st += text_len + n_tok + (4 if interleaved else 2)
      counters[kind] += 1
      remain[kind] -= 1
      if interleaved:
        counters["audio"] += 1
        remain["audio"] -= 1
    if st < len(tokens):
      pieces.append(_run(len(tokens) - st, next_start()))
    row_positions = np.concatenate(pieces, axis=1)
    positions[:, row, mask[row]] = row_positions
    deltas[row] = row_positions.max() + 1 - len(tokens)
  return positions.astype(np.int32), deltas.astype(np.int32)
