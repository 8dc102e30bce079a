"""Every TPU action's exact command lines for the four slice shapes we support on a pod.

v5p-128 queued (spot, and best-effort), v4-32 TPU VM, v5litepod-64 TPU VM, 2 × v5p-128
Multislice; between them every pass-through flag. The expected lines are in
golden/tpu_commands.json, reviewed flag by flag against gcloud's reference; after a deliberate
change, rewrite it with AOMNI_UPDATE_GOLDEN=1 and review the diff.
"""

import json
import os
import pathlib
import tempfile

import pytest

from aomni_jax.cli import launch as cli

GOLDEN = pathlib.Path(__file__).parent / "golden" / "tpu_commands.json"
RUN = ["--run-name", "dit-001", "--workdir", "gs://aomni-bucket/runs", "--compilation-cache",
       "gs://aomni-bucket/jax_cache", "--", "aomni-train", "--config", "configs/audio_omni.py",
       "--workdir", "{workdir}"]
SHAPES = {
    "v5p-128 queued": ["--name", "aomni-v5p", "--zone", "us-east5-a", "--slice", "v5p-128",
                       "--queued", "--project", "aomni-proj"],
    "v4-32": ["--name", "aomni-v4", "--zone", "us-central2-b", "--slice", "v4-32"],
    "v5litepod-64": ["--name", "aomni-v5e", "--zone", "us-west4-a", "--slice", "v5litepod-64",
                     "--internal-ip", "--ssh-flag=-o ServerAliveInterval=30"],
    "2x v5p-128": ["--name", "aomni-ms", "--zone", "us-east5-a", "--slice", "v5p-128",
                   "--queued", "--num-slices", "2", "--tunnel-through-iap", "--ssh-batch-size",
                   "16", "--gcloud-arg=--verbosity=warning"],
}
ACTIONS = {
    "v5p-128 queued": {"create": ["--provisioning", "spot"],
                       "create best-effort": ["--provisioning", "best-effort",
                                              "--valid-until-duration", "6h"]},
    "v4-32": {"create": []},
    "v5litepod-64": {"create": ["--provisioning", "reserved", "--network", "tpu-net",
                                "--subnetwork", "tpu-sub"]},
    "2x v5p-128": {"create": ["--provisioning", "spot", "--service-account",
                              "trainer@aomni-proj.iam.gserviceaccount.com", "--scopes",
                              "cloud-platform"]},
}
COMMON = {"setup": ["--repo-dir", "/src/aomni_jax"], "check": [], "run": RUN,
          "logs": ["--run-name", "dit-001", "--worker", "1-3"],
          "stop": ["--run-name", "dit-001"], "status": [], "teardown": []}


def _generate() -> dict:
  out = {}
  for shape, target in SHAPES.items():
    out[shape] = {}
    for label, flags in {**ACTIONS[shape], **COMMON}.items():
      argv = ["tpu", label.split()[0], *target, *flags]
      out[shape][label] = {"argv": argv,
                           "commands": cli.tpu_commands(cli.build_parser().parse_args(argv))}
  return out


@pytest.fixture(autouse=True)
def _fixed_environment(monkeypatch):
  monkeypatch.setattr(tempfile, "tempdir", "/tmp")  # the staged tarball's path
  for key in list(os.environ):
    if key.startswith(("AOMNI_TPU_", "AOMNI_GCP_")):
      monkeypatch.delenv(key)


def test_commands_match_the_reviewed_golden():
  generated = _generate()
  if os.environ.get("AOMNI_UPDATE_GOLDEN") == "1":
    GOLDEN.write_text(json.dumps(generated, indent=1) + "\n")
  golden = json.loads(GOLDEN.read_text())
  assert generated.keys() == golden.keys()
  for shape in golden:
    assert generated[shape].keys() == golden[shape].keys(), shape
    for label in golden[shape]:
      assert generated[shape][label] == golden[shape][label], (shape, label)
