"""`aomni-eval` end to end on real recordings: folder + manifest in, report files out."""

import json

import numpy as np
import pytest
import soundfile as sf

from aomni_jax.cli import eval as eval_cli
from tests.evaluation.conftest import load_mono

RATE = 16000


def _write(path, audio, sidecar=None):
  sf.write(path, audio, RATE)
  if sidecar is not None:
    path.with_suffix(".json").write_text(json.dumps(sidecar))


@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory, real_clips):
  """T2A: generated = real clips, references = other real clips (same kinds). Remove: the
  outputs are the target (background) plus faint noise."""
  root = tmp_path_factory.mktemp("eval")
  generated, refs = root / "generated", root / "refs"
  generated.mkdir()
  refs.mkdir()
  rows = []
  events = [c for c in real_clips if c.kind == "event" and c.source == "gcompris-qt-data/"
            "explore_farm_animals"][:6]
  backgrounds = [c for c in real_clips if c.kind == "background"][:6]
  for index, (clip, other) in enumerate(zip(events, events[1:] + events[:1])):
    # aomni-generate's sidecar names the official task ("T2A"); ours ("t2a") is read as well.
    _write(generated / f"t2a-{index}.wav", load_mono(clip, RATE)[:3 * RATE],
           {"id": f"t2a-{index}", "task": "T2A" if index % 2 else "t2a", "status": "ok",
            "prompt": clip.label, "seed": 0})
    _write(refs / f"t2a-{index}.wav", load_mono(other, RATE)[:3 * RATE])
    rows.append({"id": f"t2a-{index}", "task": "t2a", "path": f"t2a-{index}.wav",
                 "labels": [clip.label]})
  rng = np.random.default_rng(0)
  for index, (event, background) in enumerate(zip(events, backgrounds)):
    bg = load_mono(background, RATE)[:2 * RATE]
    bg = np.pad(bg, (0, 2 * RATE - len(bg)))
    ev = load_mono(event, RATE)[:2 * RATE]
    ev = np.pad(ev, (0, 2 * RATE - len(ev)))
    mixture = bg + ev
    for name, audio in (("input", mixture), ("target", bg), ("residual", ev)):
      _write(refs / f"remove-{index}-{name}.wav", audio)
    output = bg + 0.01 * rng.standard_normal(len(bg))
    _write(generated / f"remove-{index}.wav", output)  # no sidecar: id = stem, task from manifest
    rows.append({"id": f"remove-{index}", "task": "remove", "path": f"remove-{index}-target.wav",
                 "input": f"remove-{index}-input.wav", "residual": f"remove-{index}-residual.wav",
                 "labels": [event.label]})
  _write(generated / "failed.wav", np.zeros(RATE), {"id": "t2a-0", "status": "error"})
  (refs / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return generated, refs / "manifest.jsonl", root


def test_eval_writes_json_markdown_and_png_with_backbones_and_intervals(eval_inputs, capsys):
  generated, manifest, root = eval_inputs
  out = root / "report"
  assert eval_cli.main(["--generated", str(generated), "--reference", str(manifest), "--out",
                        str(out), "--no-musicnn", "--yamnet", "onnx", "--set-bootstrap", "5",
                        "--bootstrap", "200", "--tensorboard", str(root / "tb")]) == 0
  report = json.loads((out / "report.json").read_text())
  metrics = {(m["task"], m["name"]): m for m in report["metrics"]}
  assert {("t2a", "fad"), ("t2a", "kid"), ("t2a", "label_score"), ("t2a", "kl"),
          ("remove", "si_sdr"), ("remove", "leakage_si_sdr"),
          ("remove", "change_mel_distance")} <= set(metrics)
  for m in report["metrics"]:
    assert m["backbone"] and m["n"] > 0 and np.isfinite(m["value"])
    assert m["low"] - 1e-9 <= m["value"] <= m["high"] + 1e-9
  assert metrics[("t2a", "fad")]["backbone"].startswith("YAMNet")
  assert metrics[("remove", "si_sdr")]["backbone"] == "model-free"
  assert metrics[("remove", "si_sdr")]["n"] == 6
  label_score = metrics[("t2a", "label_score")]  # "cow" names no AudioSet class: counted
  assert label_score["n"] + sum(label_score["skipped"].values()) == 6 and label_score["n"] >= 4
  # The outputs are the target plus faint noise: close to it, far from the removed event.
  assert metrics[("remove", "si_sdr")]["low"] > 10.0
  assert metrics[("remove", "leakage_si_sdr")]["high"] < -10.0
  assert "not comparable" in report["disclaimer"] or "not with published" in report["disclaimer"]
  markdown = (out / "report.md").read_text()
  assert "## t2a" in markdown and "## remove" in markdown and "YAMNet" in markdown
  assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
  assert list((root / "tb").iterdir())


def test_eval_says_what_is_wrong_when_nothing_matches(eval_inputs, tmp_path, capsys):
  generated, _, _ = eval_inputs
  manifest = tmp_path / "other.jsonl"
  manifest.write_text(json.dumps({"id": "elsewhere", "task": "t2a", "path": "x.wav"}) + "\n")
  assert eval_cli.main(["--generated", str(generated), "--reference", str(manifest),
                        "--out", str(tmp_path / "r")]) == 2
  error = capsys.readouterr().err.strip()
  assert error.startswith("aomni-eval: no generated clip") and "\n" not in error


def test_eval_rejects_a_bad_manifest_line(eval_inputs, tmp_path, capsys):
  generated, _, _ = eval_inputs
  manifest = tmp_path / "bad.jsonl"
  manifest.write_text('{"id": "a", "task": "sing"}\n')
  assert eval_cli.main(["--generated", str(generated), "--reference", str(manifest),
                        "--out", str(tmp_path / "r")]) == 2
  assert "bad.jsonl:1" in capsys.readouterr().err
