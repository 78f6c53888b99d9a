"""Training checkpoints that survive crashes: written atomically, the last K kept, resumable.

A checkpoint is a folder `step-000500/` with one safetensors file per model and the optimizer
state (tensors and plain numbers only, read back with `weights_only=True`). It is written under a
temporary name and renamed into place, so the newest complete checkpoint is always intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def save_checkpoint(root, step: int, models: dict, optimizer=None, state: dict | None = None, keep: int = 3) -> Path:
    """Write `models` (name -> nn.Module), the optimizer and a JSON `state` as checkpoint `step`;
    keep the newest `keep` checkpoints (0: keep all, e.g. for `scripts/adapter_curve.py`)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        for name, model in models.items():
            tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
            save_file(tensors, tmp / f"{name}.safetensors")
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **(state or {})}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(root)[:-keep] if keep else []:
        shutil.rmtree(old)
    return final


def list_checkpoints(root) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / "state.json").is_file())


def load_checkpoint(path, models: dict, optimizer=None) -> dict:
    """Restore models (and the optimizer) in place from a checkpoint folder; return its state."""
    path = Path(path)
    for name, model in models.items():
        file = path / f"{name}.safetensors"
        try:
            model.load_state_dict(load_file(str(file)))
        except Exception as err:
            raise ValueError(f"checkpoint file {file} cannot be loaded ({err})") from err
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    return json.loads((path / "state.json").read_text())


def truncate_log(path, step: int) -> None:
    """Forget JSONL log rows after `step`: a resumed run logs those steps again."""
    path = Path(path)
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))
