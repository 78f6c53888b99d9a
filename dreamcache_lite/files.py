"""Safetensors files with a JSON header of our own: written atomically, read with clear errors.

Caches and adapters are both `{name: tensor}` plus metadata. Writing goes to a temporary file
that is renamed over the target, so a crash never leaves a half-written file where a good one
was. Reading never unpickles anything.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], kind: str, meta: dict) -> Path:
    """Write `tensors` with `meta` (JSON-able) under a `kind` tag, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"kind": kind, "meta": json.dumps(meta, sort_keys=True)}
    tensors = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_tensors(path: str | os.PathLike, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by `save_tensors`; refuse missing, corrupt or wrong-kind files by name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from err
    if header.get("kind") != kind:
        raise ValueError(f"{path} holds {header.get('kind') or 'no dreamcache-lite data'!r}, expected {kind!r}")
    try:
        meta = json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} has a damaged {kind} header ({err})") from err
    return tensors, meta
