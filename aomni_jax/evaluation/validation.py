"""Validation metrics during training: a loader batch plus the audio generated for it → samples.

`aomni-train` keeps one `evaluate.Evaluator` (backbones stay loaded), generates audio for a fixed
validation batch every N steps, and logs
`evaluate.scalars(evaluator.evaluate(samples_from_batch(batch, generated)), prefix="val")`.
The batch is what `data.loader` yields: `task_id`, `label`, `transcript`, `example_index`,
`mel_audio` (the edit input, mono) and `target_audio` ([B, C, N], the ground truth).
"""

from __future__ import annotations

import numpy as np

from aomni_jax.data import templates
from aomni_jax.evaluation import evaluate
from aomni_jax.evaluation.fidelity import MetricInputError

LOADER_RATE = 44100
_LEAKAGE_TASKS = ("remove", "extract")


def samples_from_batch(batch: dict[str, np.ndarray], generated: np.ndarray,
                       rate: int = LOADER_RATE) -> list[evaluate.Sample]:
  """One `Sample` per example; `generated` is [B, C, N] or [B, N] audio at `rate`.

  For remove / extract the residual (what the edit must leave out) is the input minus the
  target's mono downmix, exact because the dataset's input is the sum of its stems.
  """
  if len(generated) != len(batch["task_id"]):
    raise MetricInputError(
        f"{len(generated)} generated clips for a batch of {len(batch['task_id'])} examples")
  samples = []
  for index, audio in enumerate(generated):
    task = templates.TASKS[int(batch["task_id"][index])]
    target = np.asarray(batch["target_audio"][index])
    edit_input = np.asarray(batch["mel_audio"][index]) if task in templates.EDIT_TASKS else None
    residual = None
    if task in _LEAKAGE_TASKS:
      residual = edit_input - np.atleast_2d(target).mean(axis=0)[:len(edit_input)]
    label = str(batch["label"][index])
    samples.append(evaluate.Sample(
        id=str(batch["example_index"][index]), task=task, audio=np.asarray(audio), rate=rate,
        reference=target, labels=(label,) if label else (),
        transcript=str(batch["transcript"][index]), input=edit_input, residual=residual))
  return samples
