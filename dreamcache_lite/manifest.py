"""Manifests for shipped weights: how they were made, and checksums that prove they are intact."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import torch

MANIFEST = "manifest.json"


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder, **record) -> dict:
    """Record `record` (command, config, steps, wall time...) and the sha256 of every file under `folder`."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {**record, "torch": torch.__version__, "machine": platform.machine(),
                "files": {str(p.relative_to(folder)): sha256(p) for p in files}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def verify_manifest(folder) -> dict:
    """Raise naming the first missing or corrupted file; return the manifest when all match."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"shipped weight file missing: {path}")
        if sha256(path) != expected:
            raise ValueError(f"shipped weight file corrupted (sha256 mismatch): {path}")
    return manifest
