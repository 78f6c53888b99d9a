"""Shared fixtures: a randomly initialised UNet of the embedded backbone's architecture (fast on CPU)."""

import dataclasses

import pytest
import torch

from dreamcache_lite.backbones import ARCHITECTURES


def make_unet(arch: str = "tiny", seed: int = 0, dtype=torch.float32, **config_changes):
    """A random UNet of `arch`; `config_changes` make another architecture of the same shapes."""
    torch.manual_seed(seed)
    spec = ARCHITECTURES[arch]
    if config_changes:
        spec = dataclasses.replace(spec, unet_config={**spec.unet_config, **config_changes})
    return spec.build_unet("cpu", dtype=dtype).eval().requires_grad_(False)


def unet_inputs(arch: str = "tiny", batch: int = 2, side: int | None = None, seed: int = 1, dtype=torch.float32):
    """Random latents, timestep and text embedding for one UNet call."""
    spec = ARCHITECTURES[arch]
    side = side or spec.unet_config["sample_size"]
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, side, side, generator=gen).to(dtype)
    text = torch.randn(batch, spec.text_tokens, spec.text_dim, generator=gen).to(dtype)
    return latents, torch.tensor(500), text


@pytest.fixture
def unet():
    return make_unet()


@pytest.fixture
def inputs():
    return unet_inputs()


def random_tiny_pipeline(seed: int = 0):
    """The embedded backbone's architecture with random weights: for tests that need a whole pipeline."""
    from dreamcache_lite.lab.tiny_backbone import random_pipeline

    return random_pipeline(seed)
