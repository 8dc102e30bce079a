"""The evaluation report: report.json (every number), report.md (a table per task), report.png.

Every number names its backbone. These are offline stand-ins for the paper's metrics (YAMNet
and musicnn instead of VGGish/PANNs/CLAP, Moonshine instead of Whisper), so they compare
checkpoints of this project with each other and are not comparable with the paper's tables.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time

from etils import epath

from aomni_jax.evaluation.evaluate import Metric

DISCLAIMER = ("Offline stand-in metrics: backbones differ from the paper's (YAMNet / musicnn "
              "instead of VGGish, PANNs and CLAP; Moonshine base-en instead of Whisper). Compare "
              "these numbers with each other, not with published tables.")
_ARROWS = {"lower": "↓", "higher": "↑"}


def write_report(metrics: list[Metric], out_dir: str | epath.Path, inputs: dict) -> epath.Path:
  """Writes the three files into `out_dir` and returns the JSON's path."""
  out_dir = epath.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  document = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "disclaimer": DISCLAIMER, "inputs": inputs,
              "metrics": [dataclasses.asdict(m) for m in metrics]}
  json_path = out_dir / "report.json"
  json_path.write_text(json.dumps(document, indent=2) + "\n")
  (out_dir / "report.md").write_text(markdown(metrics, inputs))
  (out_dir / "report.png").write_bytes(plot_png(metrics))
  return json_path


def markdown(metrics: list[Metric], inputs: dict) -> str:
  """One table per task, the way a paper's results table reads, with the disclaimer on top."""
  lines = ["# Evaluation report", "", f"> {DISCLAIMER}", ""]
  lines += [f"- {key}: {value}" for key, value in inputs.items()] + [""]
  for task in dict.fromkeys(m.task for m in metrics):
    lines += [f"## {task}", "", "| metric | value | 95 % CI | n | backbone | skipped |",
              "|---|---:|---|---:|---|---|"]
    for m in (m for m in metrics if m.task == task):
      skipped = ", ".join(f"{reason}: {count}" for reason, count in m.skipped.items())
      lines.append(f"| {m.name} {_ARROWS.get(m.better, '')} | {m.value:.4g} | "
                   f"[{m.low:.4g}, {m.high:.4g}] | {m.n} | {m.backbone} | {skipped} |")
    lines.append("")
  return "\n".join(lines)


def plot_png(metrics: list[Metric]) -> bytes:
  """One panel per metric (and backbone): value and 95 % interval for each task."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot

  panels = list(dict.fromkeys((m.name, m.backbone) for m in metrics)) or [("no metrics", "")]
  columns = min(4, len(panels))
  rows = -(-len(panels) // columns)
  figure, axes = pyplot.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
  for axis, (name, backbone) in zip(axes.flat, panels):
    chosen = [m for m in metrics if (m.name, m.backbone) == (name, backbone)]
    positions = range(len(chosen))
    axis.errorbar(positions, [m.value for m in chosen],
                  yerr=[[max(0.0, m.value - m.low) for m in chosen],
                        [max(0.0, m.high - m.value) for m in chosen]],
                  fmt="o", capsize=4)
    axis.set_xticks(list(positions), [m.task for m in chosen])
    arrow = _ARROWS.get(chosen[0].better, "") if chosen else ""
    axis.set_title(f"{name} {arrow}\n{backbone}", fontsize=8)
  for axis in list(axes.flat)[len(panels):]:
    axis.axis("off")
  figure.suptitle("95 % bootstrap intervals; not comparable with the paper's numbers", fontsize=9)
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=100)
  pyplot.close(figure)
  return buffer.getvalue()
