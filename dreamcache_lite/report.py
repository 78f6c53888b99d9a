"""What DreamCache costs on an architecture: layers, cache tokens and bytes, adapter parameters.

Everything is measured, not computed by formula: the UNet is built on the `meta` device (shapes
without memory), the cache is captured by a real hooked forward, the adapters are really built.
"""

from __future__ import annotations

import torch

from .adapters import DreamCacheAdapters
from .backbones import ARCHITECTURES, backbone_fingerprint
from .cache import cache_features


def architecture_report(arch: str, resolution: int | None = None, layers="paper") -> dict:
    """The `dreamcache-lite inspect` JSON for a named architecture at `resolution` pixels."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES[arch]
    resolution = resolution or spec.unet_config["sample_size"] * spec.vae_scale_factor
    if resolution % (spec.vae_scale_factor * 2 ** (len(spec.unet_config["block_out_channels"]) - 1)):
        raise ValueError(f"resolution {resolution} is not a multiple of the {arch} UNet's total downsampling")
    unet = spec.build_unet("meta")
    side = resolution // spec.vae_scale_factor
    latents = torch.zeros(1, unet.config.in_channels, side, side, device="meta")
    cache = cache_features(unet, latents, layers=layers, **spec.dummy_inputs(1, (side, side)))
    adapters = DreamCacheAdapters(unet, layers=layers)
    tokens = cache.num_tokens()
    return {
        "arch": arch,
        "resolution": resolution,
        "fingerprint": backbone_fingerprint(unet),
        "layers": cache.layers,
        "channels": [cache.channels[n] for n in cache.layers],
        "cache_tokens": [tokens[n] for n in cache.layers],
        "cache_tokens_total": sum(tokens.values()),
        "cache_bytes_fp16": sum(tokens[n] * cache.channels[n] for n in cache.layers) * 2,
        "adapter_params": adapters.num_parameters(),
        "unet_params": sum(p.numel() for p in unet.parameters()) - adapters.num_parameters(),
    }
