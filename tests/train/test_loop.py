"""The training loop end to end on 8 fake devices, on the frozen modules of a converted model
directory: checkpoints, TensorBoard (training and held-out validation loss), the export as a
converted model directory, samples, restore onto another mesh shape, and stopping on a non-finite
step with the checkpoints intact."""

import dataclasses
import glob
import os
import shutil

import jax
import numpy as np
import pytest

from aomni_jax import parallel
from aomni_jax.config import load_config
from aomni_jax.inference import model_dir as model_dir_lib
from aomni_jax.train import checkpoint, loop, model_io, state as state_lib
from tests.train.conftest import SMALL_VAE, write_dataset


def _config(data_root, model_dir, *overrides):
  return load_config("configs/tiny.py", [f"data.root={data_root}", "data.num_workers=0",
                                         f"data.model_dir={model_dir}",
                                         "train.batch_size=8", "train.checkpoint_every=1",
                                         "train.num_sample_steps=2", "sampling.steps=2",
                                         "train.eval_every=2", "train.eval_fraction=0.34",
                                         "train.eval_batches=1", "train.log_every=1",
                                         *SMALL_VAE, *overrides])


def test_train_resume_reshard_and_nonfinite_stop(synthetic_dataset, model_dir, tmp_path):
  """One trained run (compiling it is the expensive part) checked from several sides."""
  workdir = str(tmp_path / "run")
  config = _config(synthetic_dataset, model_dir, "train.num_steps=2")
  trained = config, workdir, loop.train(config, workdir)
  _check_outputs(trained)
  _check_restore_onto_another_mesh_shape(trained)
  _check_nonfinite_step_stops_with_last_good_checkpoint(trained, tmp_path)


def _check_outputs(trained):
  _, workdir, result = trained
  assert result.final_step == 2
  assert sorted(os.listdir(result.checkpoint_dir)) == ["1", "2"]
  assert os.path.exists(os.path.join(result.checkpoint_dir, "2", "data", "process_0-of-1.json"))
  events, = glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
  with open(events, "rb") as handle:
    logged = handle.read()
  assert b"train/loss" in logged and b"eval/loss" in logged and b"eval/loss_t0.50" in logged
  assert model_dir_lib.read_manifest(result.export_dir)["components"].keys() == {
      "dit", "heads", "vae", "qwen"}
  names = {os.path.basename(p) for p in result.sample_paths}
  assert {"00_t2a.wav", "01_t2m.wav", "02_tts.wav"} <= names and len(names) >= 4
  for path in result.sample_paths:
    assert os.path.getsize(path) > 1000 and os.path.exists(path.removesuffix(".wav") + ".png")
  assert np.isfinite(result.last_metrics["loss"])


def _check_restore_onto_another_mesh_shape(trained):
  config, _, result = trained
  restored = {}
  for shape in ((1, 8, 1), (2, 2, 2)):
    mesh_cfg = dataclasses.replace(config.mesh, data=shape[0], fsdp=shape[1], tensor=shape[2])
    cfg = dataclasses.replace(config, mesh=mesh_cfg)
    spec = state_lib.make_state_spec(cfg, parallel.make_mesh(mesh_cfg))
    manager = checkpoint.make_manager(result.checkpoint_dir, cfg)
    state = checkpoint.restore(manager, spec.abstract)
    kernel = state.params["dit"]["blocks"]["ff"]["proj_in"]["kernel"]
    assert kernel.sharding == spec.shardings.params["dit"]["blocks"]["ff"]["proj_in"]["kernel"]
    restored[shape] = (kernel.sharding.spec, jax.device_get(state))
  (spec_a, a), (spec_b, b) = restored.values()
  assert spec_a != spec_b
  assert int(a.step) == int(b.step) == 2
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)
  # The export holds the EMA weights (+ buffers) as converted-model components.
  exported = model_io.load_trainable(result.export_dir, cfg, parallel.make_mesh(mesh_cfg))
  for x, y in zip(jax.tree.leaves(jax.device_get(exported)), jax.tree.leaves(b.ema_params),
                  strict=True):
    np.testing.assert_array_equal(x, y)


def _check_nonfinite_step_stops_with_last_good_checkpoint(trained, tmp_path):
  config, workdir, _ = trained
  resumed = str(tmp_path / "resumed")
  shutil.copytree(workdir, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "2"))  # resume from step 1
  manager = checkpoint.make_manager(os.path.join(resumed, "checkpoints"), config)
  before = jax.device_get(checkpoint.restore(manager, _abstract(config)))
  # Same layout and size as the clean data, but every sample is 1e30: the latents overflow.
  poisoned = write_dataset(str(tmp_path / "poison"), amplitude=1e30)
  with pytest.raises(loop.NonFiniteError, match=r"step 1: non-finite.*last good checkpoint is "
                                                 r"step 1"):
    loop.train(dataclasses.replace(config, data=dataclasses.replace(config.data, root=poisoned)),
               resumed)
  manager.reload()
  assert manager.all_steps() == [1]
  after = jax.device_get(checkpoint.restore(manager, _abstract(config)))
  for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
    np.testing.assert_array_equal(x, y)


def _abstract(config):
  return state_lib.make_state_spec(config, parallel.make_mesh(config.mesh)).abstract
