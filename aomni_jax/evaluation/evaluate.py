"""Every metric of every task on in-memory samples; the file CLI and the training loop share it.

Per task (reference audio, labels and transcripts come from each sample):
  all tasks with reference audio   FAD and KID on YAMNet embeddings (+ musicnn for t2m)
                                   (float YAMNet in JAX by default; the int8 ONNX on request)
  t2a, t2m, add (with labels)      label score, top-5 hit rate, KL(reference ‖ generated)
  tts                              WER / CER of Moonshine against the transcript, and the same
                                   ASR's WER / CER on the real reference speech next to it
  add, remove, extract, style      SI-SDR, log-spectral and mel distance to the target; for
                                   remove / extract the SI-SDR to the residual (leakage); and
                                   the mel distance from input to output (did it change at all)
Every number carries its backbone, its n and a bootstrap 95 % interval. Items a metric cannot
score (silent, too short, no named class) are counted per reason instead of becoming NaN.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable

import numpy as np
import tqdm

from aomni_jax.audio import dsp
from aomni_jax.data import templates
from aomni_jax.evaluation import asr
from aomni_jax.evaluation import distribution
from aomni_jax.evaluation import fidelity
from aomni_jax.evaluation import labels as label_metrics
from aomni_jax.evaluation import stats
from aomni_jax.evaluation import yamnet
from aomni_jax.evaluation import yamnet_jax
from aomni_jax.evaluation.backbone import Backbone
from aomni_jax.evaluation.backbone import BackboneMissingError
from aomni_jax.evaluation.backbone import ClipOutput

BACKBONE_RATE = 16000  # YAMNet, musicnn and Moonshine all take 16 kHz
MODEL_FREE = "model-free"
LABEL_TASKS = ("t2a", "t2m", "add")
LEAKAGE_TASKS = ("remove", "extract")


@dataclasses.dataclass(frozen=True)
class Sample:
  """One generated clip and what it is judged against; all audio [frames] or [C, frames] at
  `rate` (`None` where absent)."""
  id: str
  task: str
  audio: np.ndarray
  rate: int
  reference: np.ndarray | None = None
  labels: tuple[str, ...] = ()
  transcript: str = ""
  input: np.ndarray | None = None
  residual: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Metric:
  """One number of the report. `better` is "lower" or "higher"."""
  task: str
  name: str
  value: float
  low: float
  high: float
  n: int
  backbone: str
  better: str
  skipped: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  item_resamples: int = 1000  # bootstrap draws for per-item means and pooled rates
  set_resamples: int = 50  # bootstrap draws for FAD / KID (each is a 1024-d eigensolve)
  seed: int = 0
  top_k: int = 5
  # "jax": float YAMNet on the default JAX device (accelerators); "onnx": the wheel's int8 graph
  # on ONNX Runtime (CPU). Their numbers differ; every metric names the one it used.
  yamnet: str = "jax"


class Evaluator:
  """Holds the backbones (loaded on first use) so repeated calls, e.g. every N training steps,
  pay their start-up once."""

  def __init__(self, config: EvalConfig = EvalConfig(), sound_backbone: Backbone | None = None,
               music_backbone: Backbone | None = None):
    self.config = config
    self._yamnet = sound_backbone
    self._music = music_backbone

  @property
  def sound_backbone(self) -> Backbone:
    if self._yamnet is None:
      if self.config.yamnet not in ("jax", "onnx"):
        raise fidelity.MetricInputError(f"unknown YAMNet backend {self.config.yamnet!r}: "
                                        "use 'jax' or 'onnx'")
      self._yamnet = yamnet_jax.YamnetJax() if self.config.yamnet == "jax" else yamnet.Yamnet()
    return self._yamnet

  def evaluate(self, samples: list[Sample], progress: bool = False) -> list[Metric]:
    """Metrics for every task present in `samples`, in `templates.TASKS` order."""
    by_task = collections.defaultdict(list)
    for sample in samples:
      if sample.task not in templates.TASKS:
        raise fidelity.MetricInputError(f"{sample.id}: unknown task {sample.task!r}")
      by_task[sample.task].append(sample)
    metrics = []
    for task in tqdm.tqdm([t for t in templates.TASKS if by_task[t]], desc="evaluating tasks",
                          disable=not progress):
      metrics += self._task_metrics(task, by_task[task])
    return metrics

  def _task_metrics(self, task: str, samples: list[Sample]) -> list[Metric]:
    generated = [_mono_16k(s.audio, s.rate, f"{s.id} (generated)") for s in samples]
    references = [_mono_16k(s.reference, s.rate, f"{s.id} (reference)")
                  if s.reference is not None else None for s in samples]
    metrics = []
    if task == "tts":
      return self._speech_metrics(samples, generated, references)
    backbones = [self.sound_backbone] + ([self._music] if task == "t2m" and self._music else [])
    for backbone in backbones:
      metrics += self._backbone_metrics(task, backbone, samples, generated, references)
    if task in templates.EDIT_TASKS:
      metrics += self._edit_metrics(task, samples)
    return metrics

  def _backbone_metrics(self, task: str, backbone: Backbone, samples: list[Sample],
                        generated: list[np.ndarray],
                        references: list[np.ndarray | None]) -> list[Metric]:
    gen_out = backbone(generated)
    paired = [i for i, r in enumerate(references) if r is not None]
    ref_out = dict(zip(paired, backbone([references[i] for i in paired]))) if paired else {}
    metrics = []
    if len(paired) >= 2:
      metrics += self._set_metrics(task, backbone.name, gen_out, list(ref_out.values()))
    if task in LABEL_TASKS:
      metrics += self._label_metrics(task, backbone, samples, gen_out, ref_out)
    return metrics

  def _set_metrics(self, task: str, backbone: str, generated: list[ClipOutput],
                   references: list[ClipOutput]) -> list[Metric]:
    """FAD on patch embeddings (the usual pooling) and KID on clip-mean embeddings (one per
    independent clip, where its unbiasedness matters); bootstrap resamples whole clips."""
    def stacked(outputs: list[ClipOutput], indices: np.ndarray) -> np.ndarray:
      return np.concatenate([outputs[i].embeddings for i in indices])

    def fad(gen_indices: np.ndarray, ref_indices: np.ndarray) -> float:
      return distribution.frechet_distance(stacked(generated, gen_indices),
                                           stacked(references, ref_indices))

    kernels = distribution.kernel_matrices(np.stack([o.embeddings.mean(0) for o in generated]),
                                           np.stack([o.embeddings.mean(0) for o in references]))

    def kid(gen_indices: np.ndarray, ref_indices: np.ndarray) -> float:
      k_gg, k_rr, k_gr = kernels
      return distribution.mmd2_from_kernels(k_gg[np.ix_(gen_indices, gen_indices)],
                                            k_rr[np.ix_(ref_indices, ref_indices)],
                                            k_gr[np.ix_(gen_indices, ref_indices)])

    counts = (len(generated), len(references))
    metrics = []
    for name, statistic in (("fad", fad), ("kid", kid)):
      value = statistic(np.arange(counts[0]), np.arange(counts[1]))
      low, high = stats.interval(statistic, counts, self.config.set_resamples, self.config.seed,
                                 estimate=value)
      if name == "fad":  # a distance between Gaussians is never negative (KID, unbiased, can be)
        low = max(low, 0.0)
      metrics.append(Metric(task, name, value, low, high, len(generated), backbone, "lower"))
    return metrics

  def _label_metrics(self, task: str, backbone: Backbone, samples: list[Sample],
                     generated: list[ClipOutput],
                     references: dict[int, ClipOutput]) -> list[Metric]:
    scores, hits, divergences, skipped = [], [], [], collections.Counter()
    for index, sample in enumerate(samples):
      classes = sorted({c for label in sample.labels
                        for c in label_metrics.classes_for_label(label, backbone.class_names())})
      if not classes:
        skipped["no class named" if sample.labels else "no labels"] += 1
      else:
        probabilities = generated[index].class_probabilities()
        scores.append(label_metrics.label_score(probabilities, classes))
        hits.append(float(label_metrics.top_k_hit(probabilities, classes, self.config.top_k)))
      if index in references:
        divergences.append(label_metrics.kl_divergence(
            label_metrics.class_distribution(references[index].logits),
            label_metrics.class_distribution(generated[index].logits)))
    metrics = [self._mean(task, "label_score", scores, backbone.name, "higher", skipped),
               self._mean(task, f"top{self.config.top_k}_hit", hits, backbone.name, "higher",
                          skipped)]
    metrics.append(self._mean(task, "kl", divergences, backbone.name, "lower"))
    return [m for m in metrics if m is not None]

  def _speech_metrics(self, samples: list[Sample], generated: list[np.ndarray],
                      references: list[np.ndarray | None]) -> list[Metric]:
    metrics = []
    for name, clips in (("", generated), ("reference_", references)):
      item_errors, skipped = [], collections.Counter()
      for sample, clip in zip(samples, clips):
        if clip is None or not sample.transcript:
          skipped["no transcript" if clip is not None else "no reference"] += 1
          continue
        try:
          item_errors.append(asr.errors(sample.transcript, asr.transcribe([clip])[0]))
        except fidelity.MetricInputError as error:
          skipped[_reason(error)] += 1
      if not item_errors:
        continue
      for rate_index, rate_name in enumerate(("wer", "cer")):
        def pooled(indices, rate_index=rate_index):
          return asr.pooled_rates([item_errors[i] for i in indices])[rate_index]
        low, high = stats.interval(pooled, (len(item_errors),), self.config.item_resamples,
                                   self.config.seed)
        metrics.append(Metric("tts", name + rate_name, pooled(np.arange(len(item_errors))), low,
                              high, len(item_errors), asr.BACKBONE, "lower", dict(skipped)))
    return metrics

  def _edit_metrics(self, task: str, samples: list[Sample]) -> list[Metric]:
    comparisons: list[tuple[str, str, Callable[..., float], str]] = [
        ("target", "si_sdr", _rateless(fidelity.si_sdr), "higher"),
        ("target", "lsd", fidelity.log_spectral_distance, "lower"),
        ("target", "mel_distance", fidelity.mel_distance, "lower"),
        ("input", "change_mel_distance", fidelity.mel_distance, "higher"),
    ]
    if task in LEAKAGE_TASKS:
      comparisons.append(("residual", "leakage_si_sdr", _rateless(fidelity.si_sdr), "lower"))
    metrics = []
    for against, name, metric, better in comparisons:
      values, skipped = [], collections.Counter()
      for sample in samples:
        other = {"target": sample.reference, "input": sample.input,
                 "residual": sample.residual}[against]
        if other is None:
          skipped[f"no {against}"] += 1
          continue
        try:
          values.append(metric(*_aligned(other, sample.audio), sample.rate))
        except fidelity.MetricInputError as error:
          skipped[_reason(error)] += 1
      result = self._mean(task, name, values, MODEL_FREE, better, skipped)
      if result is not None:
        metrics.append(result)
    return metrics

  def _mean(self, task: str, name: str, values: list[float], backbone: str, better: str,
            skipped: dict[str, int] | None = None) -> Metric | None:
    if not values:
      return None
    values = np.asarray(values, np.float64)
    low, high = stats.interval(lambda i: float(np.mean(values[i])), (len(values),),
                               self.config.item_resamples, self.config.seed)
    return Metric(task, name, float(np.mean(values)), low, high, len(values), backbone, better,
                  dict(skipped or {}))


def scalars(metrics: list[Metric], prefix: str = "eval") -> dict[str, float]:
  """Flat `{prefix/task/name: value}` for TensorBoard (the training loop logs these)."""
  return {f"{prefix}/{m.task}/{m.name}": m.value for m in metrics}


def music_backbone_or_none(weights: str | None = None) -> Backbone | None:
  """musicnn when its converted checkpoint exists or can be made from the wheel, else None
  (t2m is then scored with YAMNet only, and the report says so)."""
  from aomni_jax.evaluation import musicnn
  try:
    return musicnn.Musicnn(weights or musicnn.CACHE)
  except BackboneMissingError:
    return None


def _mono_16k(audio: np.ndarray, rate: int, name: str) -> np.ndarray:
  """Backbone input. Silent or short clips are legitimate (bad) outputs and are embedded as
  they are; only unusable arrays raise."""
  audio = np.atleast_2d(np.asarray(audio, np.float32))
  if audio.size == 0 or not np.all(np.isfinite(audio)):
    raise fidelity.MetricInputError(f"{name}: empty, or contains NaN or inf samples")
  fidelity.check_rate(rate)
  return dsp.resample(audio.mean(axis=0), rate, BACKBONE_RATE)


def _aligned(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mono downmixes cropped to the shorter length (generated clips may be a frame or so off)."""
  reference = np.atleast_2d(reference).mean(axis=0)
  estimate = np.atleast_2d(estimate).mean(axis=0)
  frames = min(len(reference), len(estimate))
  return reference[:frames], estimate[:frames]


def _rateless(metric: Callable[[np.ndarray, np.ndarray], float]) -> Callable[..., float]:
  return lambda reference, estimate, unused_rate: metric(reference, estimate)


def _reason(error: fidelity.MetricInputError) -> str:
  """"estimate: silent (peak …)" → "estimate silent": a short key to count skips by."""
  head, _, detail = str(error).partition(": ")
  return f"{head} {detail.split(' (')[0]}".strip()
