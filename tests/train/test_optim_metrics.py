"""Optimiser pieces (decay mask, schedule) and the metrics side (FLOP count, one-step-late log)."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from aomni_jax.config import Config, TrainConfig
from aomni_jax.train import metrics, optim


class _Axes:
  def __init__(self, axes):
    self.axes = axes


def test_weight_decay_mask_skips_norms_biases_and_vectors():
  params = {"blocks": {"ff": {"kernel": jnp.zeros((2, 8, 16)), "bias": jnp.zeros((2, 16))},
                       "pre_norm": {"scale": jnp.zeros((2, 8))},
                       "gain": jnp.zeros((2, 8))},
            "fourier": jnp.zeros((128, 1)), "proj": {"kernel": jnp.zeros((8, 4))}}
  axes = {"blocks": {"ff": {"kernel": _Axes(("layers", "embed", "mlp")),
                            "bias": _Axes(("layers", "mlp"))},
                     "pre_norm": {"scale": _Axes(("layers", "norm"))},
                     "gain": _Axes(("layers", "embed"))},
          "fourier": _Axes((None, None)), "proj": {"kernel": _Axes(("embed", "mlp"))}}
  mask = optim.weight_decay_mask(params, axes)
  assert mask == {"blocks": {"ff": {"kernel": True, "bias": False}, "pre_norm": {"scale": False},
                             "gain": False},
                  "fourier": False, "proj": {"kernel": True}}


def test_schedule_warms_up_then_decays_to_the_floor():
  cfg = TrainConfig(learning_rate=1.0, warmup_steps=4, num_steps=20, min_lr_ratio=0.1)
  schedule = optim.learning_rate_schedule(cfg)
  values = np.array([float(schedule(jnp.asarray(i))) for i in range(20)])
  np.testing.assert_allclose(values[:4], [0.25, 0.5, 0.75, 1.0], rtol=1e-6)
  assert np.all(np.diff(values[3:]) <= 1e-7) and values[-1] == pytest.approx(0.1, abs=1e-6)


def test_full_size_flops_match_the_spec():
  config = Config()
  assert metrics.sequence_lengths(config) == (236, 364, 2304)
  # official_spec §9: 5.198 TFLOP per forward, 15.59 TFLOP per training sample.
  assert metrics.dit_flops(config.model.dit, 236, 364, 2304) == pytest.approx(5.198e12, rel=1e-3)
  assert metrics.train_flops_per_example(config) == pytest.approx(15.59e12, rel=1e-3)
  smaller = dataclasses.replace(config.model.dit, depth=18)
  assert metrics.dit_flops(smaller, 236, 364, 2304) < 0.51 * 5.198e12


def test_peak_tflops_lookup():
  class Device:
    device_kind = "NVIDIA H100 80GB HBM3"
  assert metrics.peak_tflops(Device()) == 989.4
  Device.device_kind = "cpu"
  assert metrics.peak_tflops(Device()) is None
  assert metrics.peak_tflops(Device(), override=100.0) == 100.0


def test_logger_reports_one_step_late(tmp_path):
  logger = metrics.MetricLogger(str(tmp_path), flops_per_example=1e12, examples_per_step=4,
                                peak_tflops_total=10.0)
  first = {"loss": jnp.float32(1.5), "step": jnp.int32(0)}
  assert logger.push(first) is None
  previous = logger.push({"loss": jnp.float32(1.0), "step": jnp.int32(1)})
  assert previous["step"] == 0 and previous["loss"] == 1.5
  last = logger.flush()
  assert last["step"] == 1 and last["examples_per_s"] > 0
  assert last["mfu"] == pytest.approx(last["model_tflops_per_s"] / 10.0)
  logger.close()
  assert list(tmp_path.glob("events.out.tfevents.*"))
