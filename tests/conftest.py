"""Shared fixtures: a randomly initialised UNet of the embedded backbone's architecture (fast on CPU)."""

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
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


def load_script(name: str):
    """scripts/<name>.py as a module (the scripts folder is not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_tiny_pipeline(seed: int = 0):
    """The embedded backbone's architecture with random weights: for tests that need a whole pipeline."""
    from dreamcache_lite.lab.tiny_backbone import random_pipeline

    return random_pipeline(seed)


def reference_cache(unet, batch=1, seed=3, side=16, layers="paper"):
    """A cache of random reference latents (the empty prompt as zeros), seeded."""
    from dreamcache_lite.cache import cache_features

    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, side, side, generator=gen)
    empty = torch.zeros(1, 16, unet.config.cross_attention_dim)
    return cache_features(unet, latents, empty, layers=layers, generator=torch.Generator().manual_seed(seed))


def run(unet, inputs):
    """The UNet's noise prediction for `inputs` (latents, timestep, text), without grad."""
    latents, t, text = inputs
    with torch.no_grad():
        return unet(latents, t, encoder_hidden_states=text).sample


def clusters(n_classes=5, per_class=10, dim=16, spread=0.1, seed=0):
    """Features of `n_classes` well separated Gaussian clusters and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 3
    labels = np.repeat(np.arange(n_classes), per_class)
    return centres[labels] + spread * rng.normal(size=(len(labels), dim)), labels
