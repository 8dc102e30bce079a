"""The in-memory API that `aomni-train` calls on validation samples."""

import numpy as np
import pytest

from aomni_jax.evaluation import evaluate
from aomni_jax.evaluation import fidelity
from tests.evaluation.conftest import load_mono

RATE = 16000
CONFIG = evaluate.EvalConfig(item_resamples=100, set_resamples=3)


@pytest.fixture(scope="module")
def remove_samples(real_clips):
  """Remove-task samples from real clips: faithful outputs (target + faint noise) and lazy ones
  (the input returned unchanged)."""
  events = [c for c in real_clips if c.kind == "event"][:4]
  backgrounds = [c for c in real_clips if c.kind == "background"][:4]
  rng = np.random.default_rng(0)
  faithful, lazy = [], []
  for index, (event, background) in enumerate(zip(events, backgrounds)):
    bg, ev = (np.resize(load_mono(c, RATE), 2 * RATE) for c in (background, event))
    common = dict(task="remove", rate=RATE, reference=bg, input=bg + ev, residual=ev)
    faithful.append(evaluate.Sample(id=f"good-{index}", audio=bg + 0.01 * rng.standard_normal(
        len(bg)), **common))
    lazy.append(evaluate.Sample(id=f"lazy-{index}", audio=bg + ev, **common))
  return faithful, lazy


def test_faithful_edits_beat_lazy_ones_on_every_edit_metric(remove_samples, yamnet_model):
  evaluator = evaluate.Evaluator(CONFIG, sound_backbone=yamnet_model)
  faithful, lazy = ({(m.name): m.value for m in evaluator.evaluate(samples)}
                    for samples in remove_samples)
  assert faithful["si_sdr"] > lazy["si_sdr"] + 10
  assert faithful["lsd"] < lazy["lsd"] and faithful["mel_distance"] < lazy["mel_distance"]
  assert faithful["leakage_si_sdr"] < lazy["leakage_si_sdr"] - 10
  assert lazy["change_mel_distance"] == pytest.approx(0.0, abs=1e-9)
  assert faithful["change_mel_distance"] > 0.05


def test_scalars_are_flat_tensorboard_tags(remove_samples, yamnet_model):
  metrics = evaluate.Evaluator(CONFIG, sound_backbone=yamnet_model).evaluate(remove_samples[0])
  tags = evaluate.scalars(metrics, prefix="val")
  assert "val/remove/si_sdr" in tags and all(np.isfinite(v) for v in tags.values())


def test_a_silent_output_is_counted_not_nan(remove_samples, yamnet_model):
  faithful, _ = remove_samples
  silent = evaluate.Sample(**{**faithful[0].__dict__, "id": "silent",
                              "audio": np.zeros_like(faithful[0].audio)})
  metrics = evaluate.Evaluator(CONFIG, sound_backbone=yamnet_model).evaluate(
      faithful[1:] + [silent])
  si_sdr = next(m for m in metrics if m.name == "si_sdr")
  assert si_sdr.n == len(faithful) - 1 and si_sdr.skipped == {"estimate silent": 1}
  assert all(np.isfinite(m.value) for m in metrics)


@pytest.mark.parametrize("change,problem", [({"task": "sing"}, "unknown task"),
                                            ({"audio": np.full(RATE, np.nan)}, "NaN"),
                                            ({"audio": np.zeros(0)}, "empty"),
                                            ({"rate": 1000}, "sample rate")])
def test_unusable_samples_raise_a_clear_error(remove_samples, change, problem):
  sample = evaluate.Sample(**{**remove_samples[0][0].__dict__, **change})
  with pytest.raises(fidelity.MetricInputError, match=problem):
    evaluate.Evaluator(CONFIG, sound_backbone=object()).evaluate([sample])


def test_default_sound_backbone_is_the_jax_port():
  assert evaluate.Evaluator().sound_backbone.name.startswith("YAMNet-float")
  with pytest.raises(fidelity.MetricInputError, match="unknown YAMNet backend"):
    _ = evaluate.Evaluator(evaluate.EvalConfig(yamnet="tflite")).sound_backbone
