"""The converted model directory: one self-contained folder that every consumer shares.

Generation (`aomni-generate`), fine-tuning (`--init`), feature precompute (`--model`) and the
training export all read or write this layout, so a fine-tuned model is used exactly like the
official one:

  DIR/config.json    our `Config` (model + sampling defaults), read back by `read_config`
  DIR/manifest.json  {"format": 1, "source": str, "components": {name: {"params": int,
                      "dtype": str, "checksum": str[, "config": dict]}}}
  DIR/<component>/   one Orbax checkpoint per component (dit, heads, vae, qwen, [synchformer]),
                     the component's flat nnx.State paths as a nested dict with string keys
  DIR/processor/     the Qwen tokenizer / processor files (optional)

A component whose architecture is not part of `Config` (the Qwen thinker) keeps it in its manifest
entry (`config`). Every path goes through etils.epath, so DIR may be a gs:// URI. In a
multi-process run every process takes part in the Orbax calls; only process 0 writes JSON and
renames directories.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx
from jax.experimental import multihost_utils

from aomni_jax.config import Config, from_dict, to_dict
from aomni_jax.conversion.common import ConversionError

FORMAT = 1
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
PROCESSOR_DIR = "processor"

Path = tuple  # a parameter path inside an nnx.State, e.g. ("blocks", 0, "kernel")
Params = nnx.Module | nnx.State | Mapping[Path, Any]


# ---------------------------------------------------------------------------------------------
# Flat parameter dicts.

def flat_params(params: Params) -> dict[Path, Any]:
  """A module, an nnx.State or a {path: array} dict → {path tuple: array}."""
  if isinstance(params, nnx.Module):
    params = nnx.state(params)
  if isinstance(params, nnx.State):
    return {tuple(path): var.get_value() for path, var in nnx.to_flat_state(params)}
  return {tuple(path): value for path, value in params.items()}


def _key(path: Path) -> str:
  return "/".join(map(str, path))


def _nested(flat: Mapping[Path, Any]) -> dict:
  """{path tuple: leaf} → nested dict with string keys (what Orbax stores)."""
  out: dict = {}
  for path, value in flat.items():
    node = out
    for part in path[:-1]:
      node = node.setdefault(str(part), {})
    node[str(path[-1])] = value
  return out


def _flat_from_nested(tree: Mapping, prefix: tuple = ()) -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update(_flat_from_nested(value, prefix + (key,)))
    else:
      out["/".join(prefix + (key,))] = value
  return out


# ---------------------------------------------------------------------------------------------
# Checksums: computed on the device from the bits, so sharded arrays need no gather.

def _fingerprint(x, xp):
  """A uint32 hash of the bit pattern and position of every element, with numpy or jax.numpy
  (`xp`). The wrap-around sum makes the reduction order, hence the sharding, irrelevant."""
  if x.dtype.itemsize == 8:
    x = x.astype(np.float32 if np.issubdtype(x.dtype, np.floating) else np.int32)
  width = {1: np.uint8, 2: np.uint16, 4: np.uint32}[x.dtype.itemsize]
  bits = (x.view(width) if xp is np else jax.lax.bitcast_convert_type(x, width))
  bits = bits.astype(np.uint32).reshape(-1)
  index = xp.arange(bits.shape[0], dtype=np.uint32)
  mixed = (bits ^ (index * np.uint32(0x9E3779B1))) * np.uint32(0x85EBCA6B)
  return xp.sum(mixed ^ (mixed >> np.uint32(13)), dtype=np.uint32)


_device_fingerprint = jax.jit(lambda x: _fingerprint(x, jnp))


def _array_fingerprint(value) -> int:
  """Host arrays (and arrays this process holds whole) on the host; sharded ones on device."""
  if isinstance(value, jax.Array) and not value.is_fully_addressable:
    return int(_device_fingerprint(value))
  return int(_fingerprint(np.asarray(value), np))


def checksum(params: Params) -> str:
  """sha256 over (path, shape, dtype, bit fingerprint) of every array, in path order."""
  digest = hashlib.sha256()
  for path, value in sorted(flat_params(params).items(), key=lambda kv: _key(kv[0])):
    fp = _array_fingerprint(value) if np.size(value) else 0
    digest.update(f"{_key(path)}|{tuple(np.shape(value))}|{np.dtype(value.dtype).name}|{fp};"
                  .encode())
  return digest.hexdigest()


def _summary(flat: Mapping[Path, Any]) -> dict[str, Any]:
  dtypes = sorted({np.dtype(v.dtype).name for v in flat.values()})
  return {"params": int(sum(int(np.size(v)) for v in flat.values())), "dtype": "+".join(dtypes),
          "checksum": checksum(flat)}


# ---------------------------------------------------------------------------------------------
# JSON files (process 0 writes; tmp + rename).

def _is_writer() -> bool:
  return jax.process_index() == 0


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def _write_json(path: epath.Path, data: Mapping[str, Any]) -> None:
  tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
  tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
  tmp.replace(path)


def _read_json(path: epath.Path, what: str) -> dict[str, Any]:
  if not path.exists():
    raise ConversionError(f"{path.parent} is not a converted model directory: no {what} "
                          f"({path.name}); create one with aomni-convert")
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as error:
    raise ConversionError(f"{path} is not valid JSON ({error}); re-run aomni-convert") from error


def read_config(directory: str | epath.Path) -> Config:
  """The `Config` the directory was written with (model sizes and sampling defaults)."""
  data = _read_json(epath.Path(directory) / CONFIG_FILE, "config")
  return from_dict(Config, data)


def write_config(directory: str | epath.Path, config: Config) -> None:
  directory = epath.Path(directory)
  if _is_writer():
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(directory / CONFIG_FILE, to_dict(config))
  _sync("model_dir.write_config")


def read_manifest(directory: str | epath.Path) -> dict[str, Any]:
  """The manifest; an empty one when the directory has none yet."""
  path = epath.Path(directory) / MANIFEST_FILE
  if not path.exists():
    return {"format": FORMAT, "source": "", "components": {}}
  manifest = _read_json(path, "manifest")
  if manifest.get("format") != FORMAT:
    raise ConversionError(f"{path}: format {manifest.get('format')!r}, this version reads "
                          f"format {FORMAT}; re-run aomni-convert")
  return manifest


def _update_manifest(directory: epath.Path, update: Callable[[dict], None]) -> None:
  if _is_writer():
    manifest = read_manifest(directory)
    update(manifest)
    _write_json(directory / MANIFEST_FILE, manifest)
  _sync("model_dir.manifest")


def has_component(directory: str | epath.Path, name: str) -> bool:
  directory = epath.Path(directory)
  return name in read_manifest(directory)["components"] and (directory / name).exists()


def component_config(directory: str | epath.Path, name: str, cls: type) -> Any:
  """The architecture dataclass stored with a component (e.g. the thinker's ThinkerConfig)."""
  entry = read_manifest(directory)["components"].get(name)
  if entry is None or "config" not in entry:
    raise ConversionError(f"{directory}: component {name!r} has no stored architecture")
  return from_dict(cls, entry["config"])


# ---------------------------------------------------------------------------------------------
# Components.

def save_component(directory: str | epath.Path, name: str, params: Params, *,
                   config: Any = None) -> epath.Path:
  """Writes one component (Orbax) atomically and records it in the manifest.

  The checkpoint is written to a temporary folder and renamed into place, so a crash never leaves
  a half-written component under its real name. `config` (a dataclass) is stored with the entry
  for components whose architecture is not part of `Config`.
  """
  import orbax.checkpoint as ocp
  directory = epath.Path(directory)
  flat = flat_params(params)
  if not flat:
    raise ValueError(f"component {name!r} has no parameters")
  entry = _summary(flat)
  if config is not None:
    entry["config"] = dataclasses.asdict(config)
  if _is_writer():
    directory.mkdir(parents=True, exist_ok=True)
  token = multihost_utils.broadcast_one_to_all(np.uint32(uuid.uuid4().int & 0xFFFFFFF))
  tmp = directory / f".{name}.{int(token):08x}.tmp"
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(tmp, _nested(flat), force=True)
  target = directory / name
  if _is_writer():
    old = directory / f".{name}.{int(token):08x}.old"
    if target.exists():
      target.rename(old)
    tmp.rename(target)
    if old.exists():
      old.rmtree()
  _sync(f"model_dir.save_component.{name}")

  def record(manifest: dict) -> None:
    manifest["components"][name] = entry

  _update_manifest(directory, record)
  return target


def save_model_dir(directory: str | epath.Path, config: Config,
                   components: Mapping[str, Params], *, processor_dir: str | None = None,
                   source: str = "", component_configs: Mapping[str, Any] | None = None) -> None:
  """config.json, every component, the processor files (copied) and the manifest."""
  directory = epath.Path(directory)
  write_config(directory, config)

  def set_source(manifest: dict) -> None:
    manifest["source"] = source

  _update_manifest(directory, set_source)
  for name, params in components.items():
    save_component(directory, name, params, config=(component_configs or {}).get(name))
  if processor_dir is not None:
    copy_processor(processor_dir, directory)


def copy_processor(processor_dir: str | epath.Path, directory: str | epath.Path) -> None:
  """Copies a local Qwen processor / tokenizer folder (files only, no weights) to DIR/processor."""
  source = epath.Path(processor_dir)
  if not source.is_dir():
    raise ConversionError(f"processor folder {source} does not exist; pass the local Hugging "
                          "Face Qwen2.5-Omni-3B folder")
  wanted = [f for f in source.iterdir() if f.is_file() and not f.name.endswith(
      (".safetensors", ".bin", ".pt", ".ckpt", ".index.json"))]
  if not any(f.name.startswith("tokenizer") or f.name == "vocab.json" for f in wanted):
    raise ConversionError(f"{source} holds no tokenizer files (tokenizer.json / vocab.json); "
                          "pass the Qwen2.5-Omni-3B folder")
  if _is_writer():
    target = epath.Path(directory) / PROCESSOR_DIR
    target.mkdir(parents=True, exist_ok=True)
    for file in wanted:
      file.copy(target / file.name, overwrite=True)
  _sync("model_dir.copy_processor")


def processor_path(directory: str | epath.Path) -> epath.Path | None:
  path = epath.Path(directory) / PROCESSOR_DIR
  return path if path.is_dir() else None


def _stored_shapes(path: epath.Path) -> dict[str, tuple[tuple[int, ...], Any]]:
  import orbax.checkpoint as ocp
  with ocp.StandardCheckpointer() as checkpointer:
    metadata = checkpointer.metadata(path).item_metadata
  tree = metadata.tree if hasattr(metadata, "tree") else metadata
  return {k: (tuple(m.shape), m.dtype) for k, m in _flat_from_nested(tree).items()}


def _sharding_of(shardings: Any, path: Path) -> jax.sharding.Sharding:
  if shardings is None:
    return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  if isinstance(shardings, jax.sharding.Sharding):
    return shardings
  node = shardings
  for part in path:
    node = node[part]
  return node


def load_component(directory: str | epath.Path, name: str,
                   module_factory: Callable[[], nnx.Module], *, shardings: Any = None,
                   dtype: Any = None, strict: bool = True
                   ) -> nnx.Module | tuple[nnx.Module, list[str]]:
  """The module `module_factory()` with the component's weights, restored into place.

  The module is built abstractly (nnx.eval_shape: no initialiser runs) and every array is read
  straight into its target sharding: `shardings` is one Sharding for all, a pure dict shaped like
  the state (`parallel.state_shardings`), a function of the abstract nnx.State giving either, or
  None (this process's first device). `dtype` casts floating
  arrays (e.g. "bfloat16" for a frozen tower). strict: any missing, unexpected or mis-shaped key
  raises one ConversionError listing all of them. strict=False builds the module for real, keeps
  what matches and returns `(module, keys left at their initial value)`.
  """
  import orbax.checkpoint as ocp
  directory = epath.Path(directory)
  path = directory / name
  if not has_component(directory, name):
    raise ConversionError(f"{directory} has no {name!r} component (manifest: "
                          f"{sorted(read_manifest(directory)['components'])}); convert or "
                          "export it first")
  stored = _stored_shapes(path)
  abstract = nnx.eval_shape(module_factory)
  graphdef, state = nnx.split(abstract)
  if callable(shardings):
    shardings = shardings(state)
  flat = [(tuple(p), var) for p, var in nnx.to_flat_state(state)]
  wanted = {_key(p): var for p, var in flat}
  problems = [f"missing: {name} checkpoint lacks {k} {tuple(wanted[k].shape)}"
              for k in sorted(set(wanted) - set(stored))]
  problems += [f"unexpected: {name} checkpoint holds {k} {stored[k][0]}, not a parameter of the "
               "model" for k in sorted(set(stored) - set(wanted))]
  problems += [f"mis-shaped: {k} expects {tuple(wanted[k].shape)}, {name} checkpoint gives "
               f"{stored[k][0]}" for k in sorted(set(stored) & set(wanted))
               if tuple(wanted[k].shape) != stored[k][0]]
  if strict and problems:
    raise ConversionError(f"{path}: {len(problems)} problem(s)\n  " + "\n  ".join(problems))
  loadable = {p for p, var in flat if _key(p) in stored and stored[_key(p)][0] == tuple(var.shape)}

  def target_dtype(var):
    if dtype is not None and jnp.issubdtype(var.dtype, jnp.floating):
      return jnp.dtype(dtype)
    return var.dtype

  target = {p: jax.ShapeDtypeStruct(var.shape, target_dtype(var),
                                    sharding=_sharding_of(shardings, p))
            for p, var in flat if p in loadable}
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(path, _nested(target), strict=False)
  values = _flat_from_nested(restored)
  if problems:  # strict=False: the rest keeps its initial value
    concrete = nnx.state(module_factory())
    flat = [(tuple(p), var) for p, var in nnx.to_flat_state(concrete)]
  for p, var in flat:
    if p in loadable:
      var.set_value(values[_key(p)])
    elif dtype is not None and jnp.issubdtype(var.get_value().dtype, jnp.floating):
      var.set_value(var.get_value().astype(dtype))
  module = nnx.merge(graphdef, nnx.from_flat_state(flat))
  if strict:
    return module
  return module, sorted(_key(p) for p, _ in flat if p not in loadable)
