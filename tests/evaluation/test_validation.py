"""The training-loop entry: loader batch + generated audio → validation metrics."""

import numpy as np
import pytest

from aomni_jax.data import loader
from aomni_jax.data import records
from aomni_jax.data import templates
from aomni_jax.evaluation import evaluate
from aomni_jax.evaluation import fidelity
from aomni_jax.evaluation import validation


@pytest.fixture(scope="module")
def edit_batch(tiny_dataset):
  """A loader batch of one remove and one extract example from the tiny built dataset."""
  source = loader.ExampleSource(records.Manifest.load(tiny_dataset).shard_paths(tiny_dataset))
  decoder = loader.ExampleDecoder()
  wanted, examples = ["remove", "extract"], []
  for index in range(len(source)):
    example = decoder(source[index])
    task = templates.TASKS[int(example["task_id"])]
    if task in wanted:
      wanted.remove(task)
      examples.append(example)
  return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


def test_ground_truth_as_output_scores_as_perfect(edit_batch, yamnet_model):
  samples = validation.samples_from_batch(edit_batch, edit_batch["target_audio"])
  assert [s.task for s in samples] == ["remove", "extract"]
  # The residual is what the edit removes: input = target + residual, exactly.
  for sample in samples:
    target = sample.reference.mean(axis=0)[:len(sample.input)]
    np.testing.assert_allclose(target + sample.residual, sample.input, atol=1e-6)
  config = evaluate.EvalConfig(item_resamples=50, set_resamples=2)
  tags = evaluate.scalars(evaluate.Evaluator(config, sound_backbone=yamnet_model)
                          .evaluate(samples), prefix="val")
  assert tags["val/remove/si_sdr"] > 60 and tags["val/extract/lsd"] < 1e-3
  assert tags["val/extract/leakage_si_sdr"] < 0


def test_batch_and_generated_sizes_must_agree(edit_batch):
  with pytest.raises(fidelity.MetricInputError, match="1 generated clips for a batch of 2"):
    validation.samples_from_batch(edit_batch, edit_batch["target_audio"][:1])
