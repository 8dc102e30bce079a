"""The host loop of VAE training: crops → jitted step → metrics, checkpoints, reconstructions.

Shares the DiT loop's pieces: the Orbax manager (state + data-iterator position, so resume is
exact), the one-step-late TensorBoard logger and the non-finite policy (`train.on_nonfinite`).
Held-out reconstructions are scored and written at step 0 (the random initialisation, the
baseline), every `train.sample_every` steps and at the end; the end of training writes
`summary.json` (trained vs random VAE) and exports the EMA weights as a converted model directory
whose config carries the measured latent scale.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import jax
import jax.numpy as jnp
from etils import epath
from tqdm import tqdm

from aomni_jax import parallel
from aomni_jax.config import Config, ConfigError, to_dict
from aomni_jax.data import crops, loader
from aomni_jax.train import checkpoint, metrics as metrics_lib
from aomni_jax.train.autoencoder import evaluate, export, step as step_lib
from aomni_jax.train.loop import NonFiniteError, TrainResult, resolve_data_dir
from aomni_jax.train.state import init_state

_log = logging.getLogger(__name__)
_SCALE_BATCHES = 4  # training batches whose posterior samples set the latent scale


def _evaluate(config: Config, spec, state, eval_set, directory: epath.Path) -> dict[str, Any]:
  clips, names = eval_set
  return evaluate.evaluate(spec, state.ema_params, state.buffers, clips, names,
                           config.model.sample_rate, directory)


def _step_flops(compiled: Any) -> float:
  try:
    analysis = compiled.cost_analysis()
  except (NotImplementedError, RuntimeError):
    return 0.0
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float((analysis or {}).get("flops", 0.0))


def train(config: Config, workdir: str | None = None, stop_at: int | None = None) -> TrainResult:
  """Trains the VAE to `train.num_steps`, resuming from `workdir` if it has checkpoints."""
  tc, ae = config.train, config.autoencoder
  workdir = epath.Path(workdir or tc.workdir).resolve()
  parallel.initialize_distributed(config.mesh)
  mesh = parallel.make_mesh(config.mesh)
  if tc.batch_size % jax.process_count():
    raise ConfigError(f"train.batch_size={tc.batch_size} must be divisible by the process count "
                      f"({jax.process_count()})")
  if tc.grad_accum_steps != 1:
    raise ConfigError("train.grad_accum_steps is not supported for VAE training; lower "
                      "train.batch_size or autoencoder.crop_samples instead")
  is_main = jax.process_index() == 0
  data_dir = resolve_data_dir(config)
  split = crops.split_signals(data_dir, ae.holdout_every)
  channels = config.model.vae.audio_channels
  _log.info("VAE training on %d signals, %d held out", len(split.train), len(split.heldout))

  def crop_stream(seed: int):
    return crops.make_crop_iterator(data_dir, split.train, tc.batch_size // jax.process_count(),
                                    ae.crop_samples, channels, seed=seed,
                                    worker_count=config.data.num_workers)

  iterator = crop_stream(tc.seed)
  train_step = step_lib.build_step(config, mesh)
  spec = train_step.spec
  manager = checkpoint.make_manager(str(workdir / "checkpoints"), config)
  if manager.latest_step() is not None:
    state = checkpoint.restore(manager, spec.abstract, iterator)
    _log.info("resumed from step %d", manager.latest_step())
  else:
    state = init_state(config, spec, step_lib.build_modules)
  start = int(jax.device_get(state.step))
  base_key = jnp.array(jax.device_get(state.rng))  # the state's buffers are donated
  abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=train_step.batch_shardings[k])
                    for k, v in step_lib.batch_shapes(config, tc.batch_size).items()}
  compiled = train_step.fn.lower(spec.abstract, abstract_batch,
                                 jax.ShapeDtypeStruct((2,), jnp.uint32,
                                                      sharding=train_step.key_sharding)).compile()

  eval_set = crops.evaluation_clips(data_dir, split.heldout, ae.eval_clips, ae.eval_samples,
                                    channels)
  recon_dir = workdir / "reconstructions"
  if not (recon_dir / "step_0" / "metrics.json").exists():
    initial = init_state(config, spec, step_lib.build_modules) if start else state
    _evaluate(config, spec, initial, eval_set, recon_dir / "step_0")

  peak = metrics_lib.peak_tflops(jax.devices()[0], tc.peak_tflops)
  logger = metrics_lib.MetricLogger(str(workdir / "tensorboard"),
                                    _step_flops(compiled) / tc.batch_size, tc.batch_size,
                                    peak * jax.device_count() if peak else None, tc.log_every)
  logger.add_text("config", json.dumps(to_dict(config), indent=2, default=str), start)
  metrics_path = workdir / "metrics.jsonl"
  progress = tqdm(total=tc.num_steps, initial=start, disable=not is_main, desc="train vae",
                  dynamic_ncols=True)

  def handle(values: dict[str, float] | None) -> None:
    if values is None:
      return
    if is_main:
      with metrics_path.open("a") as handle_:
        handle_.write(json.dumps(values) + "\n")
    progress.set_postfix(loss=f"{values['loss']:.3f}", stft=f"{values['stft']:.3f}")
    if values["nonfinite"]:
      message = (f"step {values['step']}: non-finite loss or gradient (loss={values['loss']}); "
                 "the update was discarded")
      if tc.on_nonfinite == "stop":
        manager.wait_until_finished()
        raise NonFiniteError(f"{message}. Stopped (train.on_nonfinite=stop); the last good "
                             f"checkpoint is step {manager.latest_step()} in {manager.directory}. "
                             "Lower train.learning_rate or set train.on_nonfinite=skip.")
      _log.warning("%s; skipping", message)

  end = tc.num_steps if stop_at is None else min(stop_at, tc.num_steps)
  try:
    for step in range(start, end):
      batch = loader.to_global_arrays(next(iterator), train_step.batch_shardings[step_lib.AUDIO])
      completed = step + 1
      save_now = manager.should_save(completed) or completed == end
      iterator_state = iterator.get_state() if save_now else None
      state, step_metrics = compiled(state, batch, base_key)
      handle(logger.push(step_metrics))
      if save_now:
        handle(logger.flush())
        checkpoint.save(manager, state, config, iterator_state, force=True)
      if tc.sample_every > 0 and completed % tc.sample_every == 0 and completed < tc.num_steps:
        result = _evaluate(config, spec, state, eval_set, recon_dir / f"step_{completed}")
        logger.add_text("reconstruction", json.dumps({k: result[k] for k in
                                                      ("si_sdr_db", "mel_distance")}), completed)
      progress.update(1)
    handle(logger.flush())
    manager.wait_until_finished()
  finally:
    progress.close()
    logger.close()
  if end < tc.num_steps:
    manager.close()
    return TrainResult(final_step=end, last_metrics=logger.last,
                       checkpoint_dir=str(manager.directory), export_dir=None, sample_paths=[])

  final = _evaluate(config, spec, state, eval_set, recon_dir / f"step_{tc.num_steps}")
  initial = json.loads((recon_dir / "step_0" / "metrics.json").read_text())
  vae = export.vae_module(spec, state.ema_params, state.buffers)
  scale = export.latent_scale(vae, crop_stream(tc.seed + 1), _SCALE_BATCHES, tc.seed)
  export_dir = workdir / "export" / f"step_{tc.num_steps}"
  export.export_model_dir(str(export_dir), export.with_latent_scale(config, scale), vae,
                          source=f"aomni-train {config.name} ({tc.num_steps} steps, EMA weights)")
  summary = {"step": tc.num_steps, "heldout_clips": len(eval_set[1]), "latent_scale": scale,
             "trained": {k: final[k] for k in ("si_sdr_db", "mel_distance")},
             "random_init": {k: initial[k] for k in ("si_sdr_db", "mel_distance")},
             "model_dir": str(export_dir)}
  if is_main:
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
  _log.info("held-out reconstructions: %s", summary)
  manager.close()
  return TrainResult(final_step=tc.num_steps, last_metrics=logger.last,
                     checkpoint_dir=str(manager.directory), export_dir=str(export_dir),
                     sample_paths=[str(recon_dir / f"step_{tc.num_steps}")])


def summary_line(workdir: str) -> str:
  """One line comparing the trained and the random VAE on the held-out clips (summary.json)."""
  summary = json.loads((epath.Path(workdir) / "summary.json").read_text())
  trained, random = summary["trained"], summary["random_init"]
  return (f"held-out reconstructions ({summary['heldout_clips']} clips): SI-SDR "
          f"{trained['si_sdr_db']:.1f} dB (random VAE {random['si_sdr_db']:.1f} dB), mel distance "
          f"{trained['mel_distance']:.3f} (random VAE {random['mel_distance']:.3f}); latent_scale "
          f"{summary['latent_scale']}")
