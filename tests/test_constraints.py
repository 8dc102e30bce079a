"""constraints.txt, the lock CI and the TPU workers install from, pins every requirement of
setup.py (all extras) to a version setup.py allows: a dependency added or re-ranged without
regenerating the lock fails here, not on a worker."""

import pathlib
import runpy

import setuptools
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _setup_arguments(monkeypatch) -> dict:
  captured = {}
  monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
  monkeypatch.chdir(ROOT)
  runpy.run_path(str(ROOT / "setup.py"))
  return captured


def _pins() -> dict[str, Version]:
  pins = {}
  for line in (ROOT / "constraints.txt").read_text().splitlines():
    if line and not line.startswith((" ", "#")):
      requirement = Requirement(line)
      [spec] = requirement.specifier
      assert spec.operator == "==", line
      pins[canonicalize_name(requirement.name)] = Version(spec.version)
  return pins


def test_every_requirement_is_pinned_within_its_range(monkeypatch):
  arguments = _setup_arguments(monkeypatch)
  requirements = [Requirement(r) for r in arguments["install_requires"]]
  requirements += [Requirement(r) for extra in arguments["extras_require"].values()
                   for r in extra]
  pins = _pins()
  assert len(requirements) > 20
  for requirement in requirements:
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{requirement} is not in constraints.txt: regenerate it (its header)"
    assert requirement.specifier.contains(pins[name], prereleases=True), (
        f"constraints.txt pins {name}=={pins[name]}, outside setup.py's {requirement}")
