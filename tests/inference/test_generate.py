"""Official-layout tiny checkpoint → aomni-convert → aomni-generate, for every task.

One manifest run (8 fake CPU devices, data parallel) is shared by the tests: its audio must
equal the in-memory path (official state dict → AudioOmni, same mesh) bit for bit, equal the
single-device path to 1e-5, survive a kill and a restart, and record every bad item's reason.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
import soundfile
from etils import epath

from aomni_jax.cli import convert as convert_cli
from aomni_jax.cli import errors
from aomni_jax.cli import generate as generate_cli
from aomni_jax.inference import engine, model_dir
from aomni_jax.inference.engine import AudioOmni
from aomni_jax.inference.items import parse_item
from aomni_jax.inference.thinker import load_tokenizer
from tests.video.conftest import write_video
from aomni_jax.models.qwen_omni.config import ThinkerConfig
from aomni_jax.parity.pipeline import config_from_manifest

BATCH = 8
SINGLE_DEVICE_ATOL = 1e-5
GOOD = [
    {"id": "t2a", "task": "t2a", "prompt": "rain on a tin roof"},
    {"id": "t2m", "task": "t2m", "prompt": "calm piano"},
    {"id": "add", "task": "add", "prompt": "a dog barking", "audio": "street.wav",
     "seconds": 0.01},
    {"id": "remove", "task": "remove", "prompt": "the car horn", "audio": "street.wav",
     "seconds": 0.01},
    {"id": "extract", "task": "extract", "prompt": "the birds", "audio": "street.wav",
     "seconds": 0.01},
    {"id": "style", "task": "style", "source": "birds", "target": "a violin",
     "audio": "street.wav", "seconds": 0.01},
    {"id": "tts", "task": "tts", "prompt": "good day"},
    {"id": "vc", "task": "vc", "prompt": "good day", "audio": "voice.wav",
     "reference_text": "hi there"},
    {"id": "long", "task": "t2a", "prompt": "wind", "seconds": 0.03, "seed": 7},
]
BAD = {  # id → (item, expected reason)
    "no_file": ({"task": "add", "prompt": "x", "audio": "nowhere.wav"},
                "audio file {dir}/nowhere.wav is missing"),
    "corrupt": ({"task": "remove", "prompt": "x", "audio": "corrupt.wav"},
                "audio file {dir}/corrupt.wav is corrupt"),
    "low_rate": ({"task": "extract", "prompt": "x", "audio": "low_rate.wav"},
                 "audio file low_rate.wav has sample rate 4000 Hz; at least 8000 Hz is needed"),
    "mix": ({"task": "mix", "prompt": "x"}, "unknown task 'mix' (expected one of t2a,"),
    "long_prompt": ({"task": "t2a", "prompt": "rain " * 1000},
                    "prompt too long: 5162 Qwen tokens, at most 4096 are taken"),
    "long_speech": ({"task": "tts", "prompt": "word " * 20},
                    "prompt too long: the TTS text has 99 symbols, the transcript encoder "
                    "takes at most 40"),
    "empty": ({"task": "t2m", "prompt": "  "}, "empty prompt: task T2M needs a text prompt"),
    "video": ({"task": "v2a", "video": "clip.mp4"},
              "video file '{dir}/clip.mp4' does not exist; check the path"),
    "no_video_stream": ({"task": "v2m", "video": "street.wav"},
                        "video file '{dir}/street.wav' has no video stream (for audio only, "
                        "give it as audio)"),
    "no_synchformer": ({"task": "v2a", "video": "scene.mp4"},
                       "V2A from a video file needs the 'synchformer' component; convert "
                       "synchformer_state_dict.pth with aomni-convert --synchformer PATH"),
}


def _write_inputs(directory: epath.Path) -> None:
  rng = np.random.default_rng(0)
  soundfile.write(directory / "street.wav", 0.1 * rng.standard_normal((44100, 2)), 44100)
  soundfile.write(directory / "voice.wav", 0.1 * rng.standard_normal(3 * 22050), 22050)
  soundfile.write(directory / "low_rate.wav", 0.1 * rng.standard_normal(4000), 4000)
  (directory / "corrupt.wav").write_bytes(b"RIFF" + rng.bytes(400))
  write_video(directory / "scene.mp4", np.arange(5) / 25, 25)  # this model has no Synchformer


@dataclasses.dataclass
class Run:
  model: epath.Path
  manifest: epath.Path
  out: epath.Path
  specs: list[dict]


@pytest.fixture(scope="module")
def run(official_tiny, tmp_path_factory) -> Run:
  root = epath.Path(tmp_path_factory.mktemp("generate"))
  model = root / "model"
  assert convert_cli.main([str(official_tiny.checkpoint), str(model), "--config",
                           official_tiny.config_spec, "--qwen-processor",
                           str(official_tiny.processor)]) == 0
  _write_inputs(root)
  specs = GOOD + [dict(item, id=name) for name, (item, _) in BAD.items()]
  lines = [json.dumps(s) for s in specs] + ["{not json", json.dumps(GOOD[0])]  # + a duplicate
  (root / "requests.jsonl").write_text("\n".join(lines) + "\n")
  out = root / "out"
  assert generate_cli.main(["--checkpoint", str(model), "--manifest", str(root / "requests.jsonl"),
                            "--out-dir", str(out), "--batch-size", str(BATCH), "--dtype",
                            "float32", "--wav-format", "float"]) == 0
  return Run(model, root / "requests.jsonl", out, specs)


def _results(out: epath.Path) -> dict[str, dict]:
  """id → its first record (a later duplicate id is a bad item of its own)."""
  records = {}
  for record in map(json.loads, (out / "results.jsonl").read_text().splitlines()):
    records.setdefault(record["id"], record)
  return records


def _in_memory(official_tiny, run: Run, mesh, batch_size: int = BATCH) -> dict[str, np.ndarray]:
  """The same items through the official state dict held in memory (no conversion, no files)."""
  cfg = model_dir.read_config(run.model)
  manifest = json.loads((epath.Path(official_tiny.config_spec.split(":")[1])).read_text())
  assert cfg.model.dit == config_from_manifest(manifest).model.dit
  thinker_cfg = model_dir.component_config(run.model, "qwen", ThinkerConfig)
  model = AudioOmni.from_state_dict(official_tiny.state, cfg, thinker_cfg,
                                    load_tokenizer(official_tiny.processor), mesh=mesh,
                                    dtype="float32")
  items = [parse_item(s, index=i, base_seed=0, base_dir=run.manifest.parent)
           for i, s in enumerate(GOOD)]
  audio = model.generate([i.request for i in items], seed=[i.seed for i in items],
                         batch_size=batch_size)
  return {item.id: clip for item, clip in zip(items, audio)}


def _wav(path: epath.Path) -> np.ndarray:
  audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
  assert rate == 44100
  return audio


def test_every_task_equals_the_in_memory_path_bit_for_bit(run, official_tiny):
  ours = _in_memory(official_tiny, run, generate_cli.build_mesh(None))
  results = _results(run.out)
  for name, expected in ours.items():
    assert results[name]["status"] == "ok", results[name]
    written = _wav(run.out / f"{name}.wav")
    assert written.shape == expected.shape, name
    np.testing.assert_array_equal(written, expected, err_msg=name)
  for index, spec in enumerate(GOOD):  # seed: the item's own, else --seed + line index
    sidecar = json.loads((run.out / f"{spec['id']}.json").read_text())
    assert sidecar["seed"] == spec.get("seed", index) and sidecar["status"] == "ok"
  assert _wav(run.out / "long.wav").shape[0] == round(0.03 * 44100)
  assert json.loads((run.out / "long.json").read_text())["windows"] == 3  # 42 frames, hop 12
  assert _wav(run.out / "add.wav").shape[0] == round(0.01 * 44100)
  assert _wav(run.out / "t2a.wav").shape[0] == 24 * 32  # one window, untrimmed (official)


def test_eight_devices_equal_one_device(run, official_tiny):
  # The manifest ran batches of 8 sharded one item per device; here one device runs one item at
  # a time, so both run the same per-device shapes (a different batch per device changes the
  # float rounding, which CFG 7 on random weights amplifies to ~1e-3).
  assert len(jax.devices()) == 8
  single = _in_memory(official_tiny, run, None, batch_size=1)
  for name, expected in single.items():
    np.testing.assert_allclose(_wav(run.out / f"{name}.wav"), expected, rtol=0,
                               atol=SINGLE_DEVICE_ATOL, err_msg=name)


def test_bad_items_are_recorded_with_one_line_reasons(run):
  results = _results(run.out)
  lines = [json.loads(line) for line in (run.out / "results.jsonl").read_text().splitlines()]
  assert len(lines) == len(run.specs) + 2  # every manifest line, good or bad
  for name, (_, reason) in BAD.items():
    record = results[name]
    assert record["status"] == "error" and "\n" not in record["reason"], record
    assert record["reason"].startswith(reason.format(dir=run.manifest.parent)), record
    assert not (run.out / f"{name}.wav").exists()
  by_line = {r["line"]: r for r in lines}
  assert by_line[len(run.specs) + 1]["reason"].startswith(
      f"line {len(run.specs) + 1} is not valid JSON")
  assert by_line[len(run.specs) + 2]["reason"].startswith("duplicate id 't2a': line 1 has it")
  assert results["t2a"]["status"] == "ok"


def test_resume_after_a_kill_redoes_nothing(run, monkeypatch, tmp_path):
  manifest = tmp_path / "good.jsonl"
  manifest.write_text("\n".join(json.dumps(dict(s, audio=str(run.manifest.parent / s["audio"]))
                                           if "audio" in s else s) for s in GOOD) + "\n")
  out = tmp_path / "out"
  real = engine.AudioOmni.generate_batch
  calls = []

  def killed_after_one_batch(self, requests, *args, **kwargs):
    if calls:
      raise KeyboardInterrupt  # the kill arrives during the second batch
    calls.append(len(requests))
    return real(self, requests, *args, **kwargs)

  argv = ["--checkpoint", str(run.model), "--manifest", str(manifest), "--out-dir", str(out),
          "--batch-size", str(BATCH), "--dtype", "float32", "--wav-format", "float"]
  monkeypatch.setattr(engine.AudioOmni, "generate_batch", killed_after_one_batch)
  assert generate_cli.main(argv) == errors.EXIT_INTERRUPTED  # Ctrl-C: `aomni-generate: interrupted`
  first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
  assert calls == [6] and len(first) == 6 and not (out / "results.jsonl").exists()

  def counted(self, requests, *args, **kwargs):
    calls.append(len(requests))
    return real(self, requests, *args, **kwargs)

  calls.clear()
  monkeypatch.setattr(engine.AudioOmni, "generate_batch", counted)
  assert generate_cli.main(argv + ["--tensorboard", str(tmp_path / "tb")]) == 0
  assert calls == [2, 1]  # tts + vc, then the long-form item; the first six are not redone
  assert list((tmp_path / "tb" / "host0").glob("events.out.tfevents.*"))
  assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json") if p.name in first} == first
  results = _results(out)
  assert sum(r.get("resumed", False) for r in results.values()) == 6
  for spec in GOOD:  # the restart gives exactly the audio of the uninterrupted run
    np.testing.assert_array_equal(_wav(out / f"{spec['id']}.wav"),
                                  _wav(run.out / f"{spec['id']}.wav"), err_msg=spec["id"])


def test_single_item_mode(run, tmp_path):
  out = tmp_path / "rain.wav"
  assert generate_cli.main(["--checkpoint", str(run.model), "--task", "t2a", "--prompt",
                            GOOD[0]["prompt"], "--out", str(out), "--mesh", "data=1",
                            "--dtype", "float32", "--wav-format", "float",
                            "--spectrogram"]) == 0
  np.testing.assert_allclose(_wav(out), _wav(run.out / "t2a.wav"), rtol=0,
                             atol=SINGLE_DEVICE_ATOL)
  sidecar = json.loads((tmp_path / "rain.json").read_text())
  assert sidecar["png"] == "rain.png" and (tmp_path / "rain.png").stat().st_size > 0
  assert sidecar["task"] == "T2A" and sidecar["checkpoint"] == str(run.model)


def test_bad_flags_and_checkpoints_fail_with_one_line(run, tmp_path, capsys):
  no_processor = tmp_path / "incomplete"
  model_dir.write_config(no_processor, model_dir.read_config(run.model))
  for name in ("dit", "heads", "vae", "qwen"):
    (no_processor / name).symlink_to(run.model / name)
  (no_processor / "manifest.json").write_text((run.model / "manifest.json").read_text())
  cases = [
      (["--checkpoint", str(tmp_path / "nowhere"), "--task", "t2a", "--out", "x.wav"],
       "does not exist; convert the official checkpoint with aomni-convert first"),
      (["--checkpoint", str(run.model), "--task", "t2a", "--prompt", "x"], "--task needs --out"),
      (["--checkpoint", str(run.model)], "give either --task"),
      (["--checkpoint", str(run.model), "--task", "t2a", "--out", "x.wav", "--steps", "0"],
       "--steps must be >= 1"),
      (["--checkpoint", str(run.model), "--task", "t2a", "--out", "x.wav", "--mesh", "data=x"],
       "--mesh 'data=x': expected"),
      (["--checkpoint", str(no_processor), "--task", "t2a", "--out", "x.wav", "--mesh",
        "data=1"], "has no processor/ folder"),
      (["--checkpoint", str(run.model), "--task", "mix", "--prompt", "x", "--out", "x.wav",
        "--mesh", "data=1", "--dtype", "float32"], "unknown task 'mix'"),
  ]
  for argv, needle in cases:
    assert generate_cli.main(argv) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aomni-generate: ") and needle in err[0], err
