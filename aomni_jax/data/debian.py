"""Fetching Debian packages into a private cache, and reading their per-file licences.

We use `apt-get download` + `dpkg -x` instead of `apt-get install`: it needs no root, touches
nothing outside the cache directory, and works the same on a laptop and a pod host. Only the
package index must exist (`apt-get update`, which we run once ourselves when we are root).
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import posixpath
import shutil
import subprocess

_LOG = logging.getLogger(__name__)


class PackageFetchError(RuntimeError):
  """apt is missing or a package could not be downloaded; the message says what to do."""


def fetch_packages(packages: list[str], cache_dir: str) -> str:
  """Downloads and unpacks `packages` under `cache_dir`; returns the unpacked root (like `/`).

  Already unpacked packages are skipped, so a second call is instant.
  """
  root = os.path.join(cache_dir, "root")
  marker_dir = os.path.join(cache_dir, "unpacked")
  os.makedirs(marker_dir, exist_ok=True)
  missing = [p for p in packages if not os.path.exists(os.path.join(marker_dir, p))]
  if not missing:
    return root
  if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
    raise PackageFetchError(
        f"apt-get/dpkg not found, so the Debian packages {missing} cannot be fetched. On a "
        "non-Debian machine, build from your own clips (aomni-data build --out DIR --table "
        "clips.csv) or copy a built dataset.")
  deb_dir = os.path.join(cache_dir, "debs")
  os.makedirs(deb_dir, exist_ok=True)
  _download(missing, deb_dir)
  for package in missing:
    debs = glob.glob(os.path.join(deb_dir, f"{package}_*.deb"))
    if not debs:
      raise PackageFetchError(f"apt-get download left no .deb for {package} in {deb_dir}")
    subprocess.run(["dpkg", "-x", sorted(debs)[-1], root], check=True)
    open(os.path.join(marker_dir, package), "w").close()
  return root


def _download(packages: list[str], deb_dir: str) -> None:
  command = ["apt-get", "download", *packages]
  result = subprocess.run(command, cwd=deb_dir, capture_output=True, text=True)
  if result.returncode != 0 and os.geteuid() == 0:
    _LOG.info("apt-get download failed; refreshing the package index once (apt-get update)")
    subprocess.run(["apt-get", "update"], capture_output=True, check=False)
    result = subprocess.run(command, cwd=deb_dir, capture_output=True, text=True)
  if result.returncode != 0:
    raise PackageFetchError(
        f"`{' '.join(command)}` failed ({' / '.join(result.stderr.strip().splitlines()[-2:])}). "
        "Run `apt-get update` (as root) and check that Debian main is reachable, or build from "
        "your own clips instead (aomni-data build --out DIR --table clips.csv).")


def read_copyright(root: str, package: str) -> str:
  path = os.path.join(root, "usr/share/doc", package, "copyright")
  if not os.path.exists(path):
    return ""
  with open(path, encoding="utf-8", errors="replace") as handle:
    return handle.read()


def licence_for(copyright_text: str, file_name: str) -> str:
  """Licence of `file_name` according to a machine-readable (DEP-5) copyright file.

  Patterns are matched on the file's base name (installed paths differ from source paths);
  a stanza's directory-only wildcard (`dir/*`) is ignored unless it is the catch-all `*`.
  The last matching stanza wins, as in DEP-5. Returns "unknown" when nothing matches.
  """
  licence = "unknown"
  for patterns, stanza_licence in _stanzas(copyright_text):
    for pattern in patterns:
      if pattern.startswith("debian/"):
        continue
      base = posixpath.basename(pattern)
      if pattern == "*" or (base != "*" and fnmatch.fnmatch(file_name, base)):
        licence = stanza_licence
  return licence


def _stanzas(text: str):
  """Yields (file patterns, first line of the licence field) for each `Files:` stanza."""
  for block in text.split("\n\n"):
    fields, current = {}, None
    for line in block.splitlines():
      if line[:1] in (" ", "\t") and current == "Files":
        fields[current] += " " + line.strip()
      elif ":" in line and line[:1] not in (" ", "\t"):
        current, value = line.split(":", 1)
        fields[current] = value.strip()
    if "Files" in fields and "License" in fields:
      yield fields["Files"].split(), fields["License"]
