"""The trained modules ↔ a converted model directory: fine-tuning starts from one, export writes
one.

`load_trainable` reads the `dit` and `heads` components (`aomni-convert` output or an earlier
export) straight into the train state's shardings, strictly: every missing, extra or mis-shaped
key is reported at once. `export` writes the EMA weights (LoRA merged) as `dit` + `heads` next to
the frozen modules the features came from (`vae`, `qwen` and its processor files), i.e. the
layout `aomni-generate` loads.
"""

from __future__ import annotations

from typing import Any

from flax import nnx
from jax.sharding import Mesh

from aomni_jax import parallel
from aomni_jax.config import Config, ConfigError
from aomni_jax.train.frozen import FrozenModules
from aomni_jax.train.state import StateSpec, TrainState, build_trainable, module_params

# The components training writes (and `--init` reads): the modules of `state.build_trainable`.
TRAINED = ("dit", "heads")


def load_trainable(model_dir: str, config: Config, mesh: Mesh) -> dict[str, Any]:
  """{"dit", "heads"} pure-dict params from `model_dir`, sharded on `mesh` like the train state.

  Raises ConfigError (one line per problem, at most 8) when the directory does not fit `config`.
  """
  from aomni_jax.conversion.common import ConversionError  # pylint: disable=g-import-not-at-top
  from aomni_jax.inference import model_dir as md  # pylint: disable=g-import-not-at-top
  weights = {}
  for name in TRAINED:
    factory = lambda name=name: build_trainable(config, nnx.Rngs(0))[name]
    shardings = parallel.state_shardings(nnx.state(nnx.eval_shape(factory)), mesh,
                                         config.mesh.rules)
    try:
      module = md.load_component(model_dir, name, factory, shardings=shardings)
    except ConversionError as error:
      lines = str(error).splitlines()
      shown = "; ".join(line.strip() for line in lines[1:9])
      more = f" (+{len(lines) - 9} more)" if len(lines) > 9 else ""
      raise ConfigError(
          f"train.init={model_dir}: its {name!r} does not fit this config: {shown}{more}. Train "
          f"with the config the directory was made with ({model_dir}/config.json)") from error
    weights[name] = nnx.to_pure_dict(nnx.state(module, nnx.Param))
  return weights


def export(state: TrainState, spec: StateSpec, config: Config, frozen: FrozenModules,
           frozen_dir: str, directory: str) -> str:
  """Writes the converted-model layout with the EMA weights; returns `directory`."""
  from aomni_jax.inference import model_dir as md  # pylint: disable=g-import-not-at-top
  weights = module_params(state, config, ema=True)
  components = {name: nnx.merge(spec.graphdefs[name], weights[name], state.buffers[name])
                for name in TRAINED}
  components["vae"] = frozen.vae
  configs = {}
  if frozen.thinker is not None:
    components["qwen"] = frozen.thinker
    configs["qwen"] = frozen.thinker.cfg
  processor = md.processor_path(frozen_dir)
  md.save_model_dir(directory, config, components,
                    processor_dir=str(processor) if processor else None,
                    source=f"aomni-train export (EMA) over {frozen_dir}: {frozen.description}",
                    component_configs=configs)
  return directory
