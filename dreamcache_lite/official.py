"""Import the authors' released DreamCache adapter checkpoint (SD 2.1-base, ldm naming).

The release is a torch state dict holding only the adapter tensors of the five paper blocks:

    diffusion_model.middle_block.1.transformer_blocks.0.{attn_mem,norm2_mem,linear_cat}.*
    diffusion_model.output_blocks.{4,6,8,10}.1.transformer_blocks.0.{...}

In ldm, `output_blocks[i]` is diffusers' `up_blocks[i // 3].attentions[i % 3]`, and `middle_block.1`
is `mid_block.attentions.0`. The file is read with `weights_only=True`: no code is unpickled.
"""

from __future__ import annotations

import torch

from .adapters import ADAPTER_KIND, DreamCacheAdapters
from .backbones import ARCHITECTURES
from .files import save_tensors

PREFIX = "diffusion_model."
PARAMS = {"attn_mem.to_q.weight": "attn_mem.to_q.weight", "attn_mem.to_k.weight": "attn_mem.to_k.weight",
          "attn_mem.to_v.weight": "attn_mem.to_v.weight", "attn_mem.to_out.0.weight": "attn_mem.to_out.0.weight",
          "attn_mem.to_out.0.bias": "attn_mem.to_out.0.bias", "norm2_mem.weight": "norm_mem.weight",
          "norm2_mem.bias": "norm_mem.bias", "linear_cat.weight": "linear_cat.weight",
          "linear_cat.bias": "linear_cat.bias"}


def ldm_block_to_diffusers(block: str) -> str:
    """'middle_block.1' -> 'mid_block.attentions.0'; 'output_blocks.4.1' -> 'up_blocks.1.attentions.1'."""
    parts = block.split(".")
    if parts[:2] == ["middle_block", "1"]:
        return "mid_block.attentions.0"
    if parts[0] == "output_blocks" and parts[2] == "1":
        i = int(parts[1])
        return f"up_blocks.{i // 3}.attentions.{i % 3}"
    raise ValueError(f"no diffusers transformer for ldm block {block!r}")


def official_key_map(adapters: DreamCacheAdapters) -> dict[str, str]:
    """Every key the release must hold -> the matching key of `adapters.state_dict()`."""
    inverse = {"mid_block.attentions.0": "middle_block.1"}
    inverse.update({f"up_blocks.{i // 3}.attentions.{i % 3}": f"output_blocks.{i}.1" for i in range(12)})
    mapping = {}
    for block in adapters.processors:
        layer, _, rest = block.partition(".transformer_blocks.")
        ldm = f"{PREFIX}{inverse[layer]}.transformer_blocks.{rest}"
        mapping.update({f"{ldm}.{theirs}": f"{block}.{ours}" for theirs, ours in PARAMS.items()})
    return mapping


def convert_official(src, dst, arch: str = "sd21") -> dict:
    """Read the release safely, check every key and shape, write this package's adapter file."""
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # not a zip/pickle checkpoint, or one holding code: refuse either way
        raise ValueError(f"{src}: not a PyTorch checkpoint that loads safely ({type(err).__name__}); "
                         "pass the authors' released .pt/.ckpt file") from err
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    unet = ARCHITECTURES[arch].build_unet("meta")
    adapters = DreamCacheAdapters(unet, "paper")
    mapping = official_key_map(adapters)
    present = {k for k in state if any(p in k for p in ("attn_mem.", "norm2_mem.", "linear_cat."))}
    missing, unexpected = sorted(set(mapping) - present), sorted(present - set(mapping))
    if missing or unexpected:
        raise ValueError(f"{src}: not the DreamCache release layout; missing keys {missing}, unexpected keys {unexpected}")
    expected = adapters.state_dict()
    tensors = {}
    for theirs, ours in mapping.items():
        if tuple(state[theirs].shape) != tuple(expected[ours].shape):
            raise ValueError(f"{src}: {theirs} has shape {tuple(state[theirs].shape)}, "
                             f"{arch} needs {tuple(expected[ours].shape)}")
        tensors[ours] = state[theirs]
    meta = {**adapters.metadata(), "init": "official", "extra": {"converted_from": str(src)}}
    save_tensors(dst, tensors, ADAPTER_KIND, meta)
    return meta
