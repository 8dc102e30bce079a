"""The host training loop: data → frozen stage → jitted step → metrics, checkpoints, samples.

Resume is exact: the state, the data iterator position and every PRNG key are functions of the
checkpointed step, so a run killed at any point and restarted reproduces the losses bit for bit.
Metrics are read one step late, except on checkpoint steps, where the step is checked for
non-finite values before it is saved. Ctrl-C or SIGTERM finishes the step in flight, checkpoints
it (`train.checkpoint_on_signal`) and returns with `interrupted` set (see `train.preemption`).
Every path may be a URI (`gs://...`, see `train.paths`). A non-finite loss or gradient never reaches the weights (the
step discards that update); with `train.on_nonfinite=stop` the loop ends with `NonFiniteError`
and the checkpoints on disk are all from finite steps, with `skip` it goes on with the next batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
from tqdm import tqdm

from aomni_jax import parallel
from aomni_jax.config import Config, ConfigError, to_dict
from aomni_jax.data import loader
from aomni_jax.train import (checkpoint, demo, features, frozen as frozen_lib, metrics as
                             metrics_lib, model_io, preemption, samples, validation)
from aomni_jax.train.jsonl import StepLog
from aomni_jax.train.paths import is_uri, run_path
from aomni_jax.train.state import init_state, make_state_spec, parameter_count
from aomni_jax.train.step import abstract_batch, abstract_key, build_train_step

_log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
  """A step produced a non-finite loss or gradient and `train.on_nonfinite` is `stop`."""


@dataclasses.dataclass
class TrainResult:
  final_step: int
  last_metrics: dict[str, float]
  checkpoint_dir: str
  export_dir: str | None
  sample_paths: list[str]
  interrupted: bool = False  # stopped by Ctrl-C / SIGTERM at final_step
  saved: bool = True  # final_step is checkpointed (False: interrupted without checkpoint_on_signal)


def default_data_root() -> str:
  return os.environ.get("AOMNI_DATA_DIR",
                        os.path.join(os.path.expanduser("~"), ".cache", "aomni_jax", "data"))


def resolve_data_dir(config: Config) -> str:
  """`data.root` if it holds a built dataset; "" = the embedded default, built on first use."""
  if config.data.root:
    if not (run_path(config.data.root) / "manifest.json").exists():
      raise ConfigError(f"data.root={config.data.root!r} has no manifest.json; build a dataset "
                        "there with `aomni-data build`, or leave data.root empty for the default")
    return config.data.root
  root = default_data_root()
  if is_uri(root):
    raise ConfigError(f"AOMNI_DATA_DIR={root!r}: the embedded default dataset is built and cached "
                      "on local disk; point AOMNI_DATA_DIR at a local folder, or build a dataset "
                      "into the bucket (`aomni-data build --out gs://...`) and set data.root to it")
  from aomni_jax.data.default import ensure_default_dataset  # pylint: disable=g-import-not-at-top
  return ensure_default_dataset(root)


def _report_memory(compiled: Any) -> None:
  try:
    analysis = compiled.memory_analysis()
  except (NotImplementedError, RuntimeError):
    return
  if analysis is None:
    return
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
            "alias_size_in_bytes")
  sizes = {f: getattr(analysis, f, 0) / 2**30 for f in fields}
  _log.info("train step memory per device (GiB): %s",
            ", ".join(f"{k.removesuffix('_size_in_bytes')}={v:.2f}" for k, v in sizes.items()))


def train(config: Config, workdir: str | None = None, stop_at: int | None = None) -> TrainResult:
  """Trains to `train.num_steps` (resuming from `workdir` if it has checkpoints).

  `stop_at` ends this invocation earlier (checkpointed, no export or samples) without changing
  the learning-rate schedule, e.g. for jobs that run in fixed time slices.
  """
  tc = config.train
  workdir = run_path(workdir or tc.workdir)
  parallel.initialize_distributed(config.mesh)
  mesh = parallel.make_mesh(config.mesh, num_slices=parallel.detected_num_slices())
  with contextlib.ExitStack() as cleanup:
    return _train(config, workdir, mesh, stop_at, cleanup)


def _train(config: Config, workdir, mesh, stop_at: int | None,
           cleanup: contextlib.ExitStack) -> TrainResult:
  tc, model = config.train, config.model
  if tc.batch_size % (jax.process_count() * tc.grad_accum_steps):
    raise ConfigError(f"train.batch_size={tc.batch_size} must be divisible by the process count "
                      f"({jax.process_count()}) × train.grad_accum_steps ({tc.grad_accum_steps})")
  is_main = jax.process_index() == 0
  data_dir = resolve_data_dir(config)
  workdir.mkdir(parents=True, exist_ok=True)
  if config.data.demo_vae_config and not config.data.model_dir:
    config = demo.prepare(config, str(workdir), data_dir)
    data_dir = config.data.root
  if not config.data.model_dir:
    raise ConfigError("data.model_dir is empty: set it to a converted model directory (aomni-"
                      "convert) whose VAE and Qwen thinker make the training features")
  config = frozen_lib.with_model_dir_latent_scale(config, config.data.model_dir)
  modules = frozen_lib.load_frozen(config.data.model_dir, config, mesh)
  _log.warning("frozen modules from %s: %s", config.data.model_dir, modules.description)

  spec = make_state_spec(config, mesh)
  if mesh.size > 1:
    fraction = parallel.check_replication(spec.abstract.params, spec.shardings.params,
                                          config.mesh.replication_tolerance)
    _log.info("replicated parameter bytes: %.2f%%", 100 * fraction)
  _log.info("trainable parameters: %s", f"{parameter_count(spec.abstract.params):,}")

  manager = checkpoint.make_manager(workdir / "checkpoints", config)
  cleanup.callback(manager.close)
  latest = manager.latest_step()
  # A checkpoint written by another number of processes has no data position for this layout;
  # the loader's global batches do not depend on it, so the stream restarts at the step.
  start_batch = (0 if latest is None or checkpoint.has_iterator_state(manager, latest)
                 else latest)
  iterator = loader.make_train_iterator(
      data_dir, tc.batch_size // jax.process_count(), seed=tc.seed,
      worker_count=config.data.num_workers, start_batch=start_batch,
      shapes=loader.Shapes.for_model(model),
      split="train" if tc.eval_every > 0 else "all", eval_fraction=tc.eval_fraction)
  cleanup.callback(iterator.close)  # shuts the data workers down (their shared memory too)
  if latest is not None:
    state = checkpoint.restore(manager, spec.abstract, iterator)
    _log.info("resumed from step %d", latest)
  else:
    weights = model_io.load_trainable(tc.init, config, mesh) if tc.init else None
    state = init_state(config, spec, weights=weights)
    if tc.init:
      _log.info("DiT and heads start from %s%s", tc.init,
                f" (LoRA rank {tc.lora_rank} on top, base frozen)" if tc.lora_rank else "")
  start = int(jax.device_get(state.step))
  with preemption.workers_ignore_interrupts():
    iterator.start_prefetch()  # workers start here, deaf to the terminal's Ctrl-C

  stage = features.FrozenStage(config, mesh, modules, tc.batch_size)
  step_shapes = features.step_batch_shapes(config, tc.batch_size)
  train_step = build_train_step(config, mesh, step_shapes, spec)
  validator = (validation.Validator(config, spec, mesh, stage, data_dir) if tc.eval_every > 0
               else None)
  # Copy the base key out of the state: the state's buffers are donated to every step.
  base_key = jnp.array(jax.device_get(state.rng))
  with parallel.mesh_context(mesh):
    compiled = train_step.fn.lower(spec.abstract, abstract_batch(train_step, step_shapes),
                                   abstract_key(train_step)).compile()
  _report_memory(compiled)
  parallel.wait_for_all_processes("train_step_compiled", config.mesh.init_timeout_s)

  peak = metrics_lib.peak_tflops(jax.devices()[0], tc.peak_tflops)
  logger = metrics_lib.MetricLogger(str(workdir / "tensorboard"),
                                    metrics_lib.train_flops_per_example(config), tc.batch_size,
                                    peak * jax.device_count() if peak else None, tc.log_every)
  logger.add_text("config", json.dumps(to_dict(config), indent=2, default=str), start)
  loss_log = StepLog(workdir / "metrics.jsonl", start, enabled=is_main)
  progress = tqdm(total=tc.num_steps, initial=start, disable=not is_main, desc="train",
                  dynamic_ncols=True)
  skipped = 0

  def handle(values: dict[str, float] | None) -> None:
    nonlocal skipped
    if values is None:
      return
    loss_log.write(values)
    progress.set_postfix(loss=f"{values['loss']:.4f}", gnorm=f"{values['grad_norm']:.3f}")
    if values["nonfinite"]:
      message = (f"step {values['step']}: non-finite loss or gradient (loss={values['loss']}, "
                 f"grad_norm={values['grad_norm']}); the update was discarded")
      if tc.on_nonfinite == "stop":
        manager.wait_until_finished()
        raise NonFiniteError(
            f"{message}. Stopped (train.on_nonfinite=stop); the last good checkpoint is step "
            f"{manager.latest_step()} in {manager.directory}. Lower train.learning_rate or "
            "resume with --set train.on_nonfinite=skip to skip such batches.")
      skipped += 1
      _log.warning("%s; skipping (train.on_nonfinite=skip, %d skipped so far)", message, skipped)

  end = tc.num_steps if stop_at is None else min(stop_at, tc.num_steps)
  stop = cleanup.enter_context(preemption.StopRequest())
  interrupted = False
  try:
    for step in range(start, end):
      batch = next(iterator)
      completed = step + 1
      iterator_state = iterator.get_state()  # the data position a checkpoint of `completed` needs
      step_batch = stage(batch)
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        state, step_metrics = compiled(state, step_batch, base_key)
      handle(logger.push(step_metrics))
      # Asked after the step is dispatched, so a signal during it stops the run right after it.
      interrupted = stop.requested(completed)
      save_now = (manager.should_save(completed) or completed == end
                  or (interrupted and tc.checkpoint_on_signal))
      if save_now:
        handle(logger.flush())  # never save a step that is not checked
        checkpoint.save(manager, state, config, iterator_state, force=True)
        loss_log.flush()
      progress.update(1)
      if interrupted:
        end = completed
        break
      if validator is not None and (completed % tc.eval_every == 0 or completed == tc.num_steps):
        with parallel.mesh_context(mesh):
          values = validator(state)
        logger.add_scalars(values, completed)
        _log.info("step %d: validation loss %.4f", completed, values["eval/loss"])
      if tc.sample_every > 0 and completed % tc.sample_every == 0 and completed < tc.num_steps:
        _write_samples(config, spec, state, stage, data_dir, workdir, completed)
    handle(logger.flush())
    manager.wait_until_finished()
  finally:
    progress.close()
    logger.close()
    loss_log.close()
    # Batches from data workers live in shared memory that is unlinked when they are freed; free
    # them now, before the workers shut down, or the segments outlive the process.
    batch = step_batch = None
    gc.collect()

  if end < tc.num_steps:
    return TrainResult(final_step=end, last_metrics=logger.last,
                       checkpoint_dir=str(manager.directory), export_dir=None, sample_paths=[],
                       interrupted=interrupted,
                       saved=not interrupted or tc.checkpoint_on_signal)
  export_dir = model_io.export(state, spec, config, modules, config.data.model_dir,
                               str(workdir / "export" / f"step_{tc.num_steps}"))
  sample_paths = []
  if tc.num_sample_steps > 0:
    sample_paths = _write_samples(config, spec, state, stage, data_dir, workdir, tc.num_steps)
  return TrainResult(final_step=int(jax.device_get(state.step)), last_metrics=logger.last,
                     checkpoint_dir=str(manager.directory), export_dir=str(export_dir),
                     sample_paths=sample_paths)


def _write_samples(config: Config, spec, state, stage: features.FrozenStage, data_dir: str,
                   workdir, step: int) -> list[str]:
  if jax.process_count() > 1:
    # Sampling gathers the EMA weights onto one host; not done for multi-process runs yet.
    _log.warning("periodic samples are only written by single-process runs; skipping")
    return []
  out_dir = workdir / "samples" / f"step_{step}"
  with parallel.mesh_context(stage.mesh):
    paths = samples.generate_samples(config, spec, state, stage.modules.vae, out_dir,
                                     samples.edit_inputs(data_dir), stage.features.qwen,
                                     seed=config.train.seed)
  _log.info("wrote %d samples to %s", len(paths), out_dir)
  return paths
