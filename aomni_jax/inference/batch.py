"""Batch generation from a JSONL manifest: fixed shapes, resumable, one share per host.

Every line of the manifest is an item (`inference.items`). Host p of P takes the lines with
index % P == p and runs them on its own devices (no traffic between hosts). Items are validated
first: a bad one (missing or corrupt audio, wrong rate, unknown task, empty or too long prompt…)
is recorded with a one-line reason and the rest still runs. Valid items are grouped into batches
of one fixed size (the last one padded) with one Qwen prompt length for the whole run, so
nothing recompiles per item. An item whose sidecar says it finished is never redone, so killing
the run and starting it again completes the rest. The results manifest (`results.jsonl`) lists
every item of the manifest: ok (with its files) or error (with the reason).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from typing import Any, Callable

import jax
from etils import epath
from jax.experimental import multihost_utils

from aomni_jax.cli.errors import UserError
from aomni_jax.inference import outputs, thinker as thinker_lib
from aomni_jax.inference.engine import AudioOmni, plan_batches
from aomni_jax.inference.items import BadItem, Item, parse_item

RESULTS_FILE = "results.jsonl"


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything that applies to every item of a run."""

  batch_size: int = 8
  seed: int = 0  # item i's seed is seed + i unless the item gives one
  steps: int | None = None  # None: the model directory's sampling defaults
  cfg_scale: float | None = None
  cfg_rescale: float | None = None
  overlap_seconds: float = 2.0
  wav_format: str = "pcm16"
  spectrogram: bool = False
  tensorboard: str | None = None  # a folder for clips/s and batch times (tensorboardX)

  def sampling(self) -> dict[str, Any]:
    return {"steps": self.steps, "cfg_scale": self.cfg_scale, "cfg_rescale": self.cfg_rescale,
            "overlap_seconds": self.overlap_seconds}


@dataclasses.dataclass
class Summary:
  done: int = 0
  resumed: int = 0
  failed: int = 0
  seconds: float = 0.0


def one_line(error: BaseException) -> str:
  return " ".join(str(error).split()) or type(error).__name__


def read_lines(manifest: epath.Path) -> list[Any]:
  """Each non-empty line parsed as JSON; a line that does not parse becomes a BadItem."""
  if not manifest.exists():
    raise UserError(f"manifest {manifest} does not exist")
  specs = []
  for number, line in enumerate(manifest.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    try:
      specs.append(json.loads(line))
    except json.JSONDecodeError as error:
      specs.append(BadItem(f"line {number} is not valid JSON ({error.msg})"))
  if not specs:
    raise UserError(f"manifest {manifest} holds no items (one JSON object per line)")
  return specs


def item_id(spec: Any, index: int) -> str:
  return str(spec.get("id", f"{index:06d}")) if isinstance(spec, dict) else f"{index:06d}"


def sidecar(item: Item, model: AudioOmni, settings: Settings, audio_seconds: float,
            wall_s: float, batch_size: int) -> dict[str, Any]:
  """Everything needed to reproduce and judge one output."""
  r, s = item.request, model.cfg.sampling
  return {
      "id": item.id, "status": "ok", "task": r.task, "prompt": r.prompt, "source": r.source,
      "target": r.target, "reference_text": r.reference_text, "audio": item.audio_path,
      "video": r.video,
      "seconds_requested": r.seconds, "duration_s": audio_seconds, "seed": item.seed,
      "steps": settings.steps or s.steps,
      "cfg_scale": s.cfg_scale if settings.cfg_scale is None else settings.cfg_scale,
      "cfg_rescale": s.cfg_rescale if settings.cfg_rescale is None else settings.cfg_rescale,
      "overlap_seconds": settings.overlap_seconds,
      "windows": model.plan(r, settings.overlap_seconds).count,
      "checkpoint": model.source, "batch_size": batch_size, "wall_time_s": wall_s,
      "device": jax.devices()[0].device_kind, "jax": jax.__version__,
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


class _Run:
  """One host's share of a manifest."""

  def __init__(self, model: AudioOmni, manifest: epath.Path, out_dir: epath.Path,
               settings: Settings):
    self.model, self.out_dir, self.settings = model, out_dir, settings
    self.base_dir = manifest.parent
    self.specs = read_lines(manifest)
    self.results: dict[int, dict[str, Any]] = {}
    self.ids = [item_id(spec, i) for i, spec in enumerate(self.specs)]
    self.first_line: dict[str, int] = {}
    for index, name in enumerate(self.ids):
      self.first_line.setdefault(name, index)

  def parse(self, index: int) -> Item:
    spec = self.specs[index]
    if isinstance(spec, BadItem):
      raise spec
    item = parse_item(spec, index=index, base_seed=self.settings.seed, base_dir=self.base_dir)
    if self.first_line[item.id] != index:
      raise BadItem(f"duplicate id {item.id!r}: line {self.first_line[item.id] + 1} has it "
                    "(ids name the output files and must be unique)")
    return item

  def fail(self, index: int, error: BaseException) -> None:
    self.results[index] = {"id": self.ids[index], "line": index + 1, "status": "error",
                           "reason": one_line(error)}

  def validate(self, share: list[int]) -> tuple[list[int], list[Any], list[int]]:
    """(pending indices, their batch keys, their Qwen token counts); records bad / done."""
    pending, keys, lengths = [], [], []
    for index in share:
      try:
        item = self.parse(index)
        if outputs.is_complete(self.out_dir / f"{item.id}.json"):
          self.results[index] = {"id": item.id, "line": index + 1, "status": "ok",
                                 "wav": f"{item.id}.wav", "resumed": True}
          continue
        lengths.append(len(self.model.prompt_tokens(item.request)))
        keys.append(self.model.batch_key(item.request, self.settings.overlap_seconds))
        pending.append(index)
      except (ValueError, UserError) as error:  # BadItem, PromptTooLong, video not available…
        self.fail(index, error)
    return pending, keys, lengths

  def generate(self, indices: list[int], prompt_length: int) -> int:
    """One batch; returns how many items it completed."""
    items = []
    for index in indices:
      try:
        items.append((index, self.parse(index)))
      except ValueError as error:  # the input changed since validation
        self.fail(index, error)
    if not items:
      return 0
    start = time.perf_counter()
    audio = self.model.generate_batch([i.request for _, i in items], [i.seed for _, i in items],
                                      batch_size=self.settings.batch_size,
                                      prompt_length=prompt_length, **self.settings.sampling())
    wall = (time.perf_counter() - start) / len(items)
    rate = self.model.cfg.model.sample_rate
    for (index, item), clip in zip(items, audio):
      record = sidecar(item, self.model, self.settings, len(clip) / rate, wall,
                       self.settings.batch_size)
      outputs.write_item(self.out_dir, item.id, clip, rate, record,
                         wav_format=self.settings.wav_format,
                         spectrogram=self.settings.spectrogram)
      self.results[index] = {"id": item.id, "line": index + 1, "status": "ok",
                             "wav": f"{item.id}.wav"}
    return len(items)

  def write_results(self, share_name: str) -> epath.Path:
    lines = [json.dumps(self.results[i], sort_keys=True) for i in sorted(self.results)]
    path = self.out_dir / share_name
    outputs.write_atomically(path, ("\n".join(lines) + "\n").encode())
    return path


def _writer(logdir: str | None, host: int):
  if not logdir:
    return None
  from tensorboardX import SummaryWriter
  return SummaryWriter(str(epath.Path(logdir) / f"host{host}"))


def _errors(results: dict[int, dict[str, Any]]) -> int:
  return sum(r["status"] == "error" for r in results.values())


def run_manifest(model: AudioOmni, manifest: str, out_dir: str, settings: Settings, *,
                 progress: Callable[..., Any] | None = None, log: Callable[[str], None] = print
                 ) -> Summary:
  """Generates this host's share of `manifest` into `out_dir`; see the module docstring."""
  from tqdm import tqdm
  out = epath.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  run = _Run(model, epath.Path(manifest), out, settings)
  host, hosts = jax.process_index(), jax.process_count()
  share = [i for i in range(len(run.specs)) if i % hosts == host]
  pending, keys, lengths = run.validate(share)
  summary = Summary(resumed=len(run.results) - _errors(run.results))
  log(f"{len(share)} items on this host: {len(pending)} to generate, {summary.resumed} already "
      f"done, {_errors(run.results)} bad (reasons in {RESULTS_FILE})")
  start = time.perf_counter()
  if pending:
    prompt_length = thinker_lib.bucket_length(max(lengths), model.cfg.model.omni.pad_length)
    bar = (progress or tqdm)(total=len(pending), unit="clip", desc="aomni-generate")
    writer = _writer(settings.tensorboard, host)
    for step, batch in enumerate(plan_batches(keys, settings.batch_size)):
      batch_start = time.perf_counter()
      summary.done += run.generate([pending[i] for i in batch], prompt_length)
      clips_per_s = summary.done / (time.perf_counter() - start)
      bar.update(len(batch))
      bar.set_postfix(clips_per_s=f"{clips_per_s:.3f}")
      if writer is not None:
        writer.add_scalar("generate/clips_per_s", clips_per_s, step)
        writer.add_scalar("generate/batch_s", time.perf_counter() - batch_start, step)
    bar.close()
    if writer is not None:
      writer.close()
  summary.seconds = time.perf_counter() - start
  summary.failed = _errors(run.results)
  if hosts == 1:
    run.write_results(RESULTS_FILE)
  else:
    run.write_results(f"results.{host}-of-{hosts}.jsonl")
    multihost_utils.sync_global_devices("aomni-generate results")
    if host == 0:
      merge_results(out, hosts)
  return summary


def merge_results(out: epath.Path, hosts: int) -> None:
  """Joins the hosts' result files into one, in manifest order."""
  records = []
  for host in range(hosts):
    path = out / f"results.{host}-of-{hosts}.jsonl"
    records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  records.sort(key=lambda r: r["line"])
  outputs.write_atomically(out / RESULTS_FILE,
                           ("\n".join(json.dumps(r, sort_keys=True) for r in records)
                            + "\n").encode())
