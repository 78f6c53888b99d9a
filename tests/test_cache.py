"""The feature cache: metadata, files, determinism, and refusing what does not match."""

import pytest
import torch

from conftest import make_unet, reference_cache, run
from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.cache import FeatureCache, cache_features
from dreamcache_lite.layers import select_layers


def test_cache_metadata_and_size(unet):
    cache = reference_cache(unet)
    assert cache.layers == [i.name for i in select_layers(unet, "paper")]
    assert cache.timestep == 1 and cache.latent_size == (16, 16)
    assert cache.nbytes == sum(cache.num_tokens()[n] * c * 4 for n, c in cache.channels.items())
    for name, (h, w) in cache.grids.items():
        assert cache.tokens[name].shape == (1, h * w, cache.channels[name])

def test_cache_round_trip_is_bit_identical(unet, inputs, tmp_path):
    cache = reference_cache(unet)
    cache.save(tmp_path / "ref.safetensors")
    loaded = FeatureCache.load(tmp_path / "ref.safetensors")
    assert loaded.layers == cache.layers and loaded.grids == cache.grids and loaded.fingerprint == cache.fingerprint
    assert all(torch.equal(loaded.tokens[n], cache.tokens[n]) for n in cache.layers)
    adapters = DreamCacheAdapters(unet, "paper", init="paper")
    with adapters.reference(cache):
        first = run(unet, inputs)
    with adapters.reference(loaded):
        assert torch.equal(run(unet, inputs), first)

def test_cache_is_deterministic_and_refuses_nan(unet):
    a, b = reference_cache(unet, seed=5), reference_cache(unet, seed=5)
    assert all(torch.equal(a.tokens[n], b.tokens[n]) for n in a.layers)
    latents = torch.zeros(1, 4, 16, 16)
    latents[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        cache_features(unet, latents, torch.zeros(1, 16, 64))

def test_incompatible_caches_are_refused(unet, inputs):
    adapters = DreamCacheAdapters(unet, "paper")
    other_arch = make_unet(attention_head_dim=2)  # same shapes, another architecture
    with pytest.raises(ValueError, match="backbone"):
        adapters.activate(reference_cache(other_arch))
    with pytest.raises(ValueError, match="missing"):
        adapters.activate(reference_cache(unet, layers="decoder"))
    big = reference_cache(unet, side=32)  # another resolution
    adapters.activate(big)
    with pytest.raises(ValueError, match="resolution"):
        run(unet, inputs)
    adapters.deactivate()

def test_hooks_removed_when_forward_raises(unet):
    with pytest.raises(Exception):
        cache_features(unet, torch.zeros(1, 4, 16, 16), torch.zeros(1, 16, 7))  # wrong text width
    assert not any(m._forward_pre_hooks for m in unet.modules())

def test_corrupt_and_wrong_files(unet, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"definitely not safetensors")
    with pytest.raises(ValueError, match="bad.safetensors"):
        FeatureCache.load(bad)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        FeatureCache.load(tmp_path / "missing.safetensors")
    adapters = DreamCacheAdapters(unet, "paper")
    adapters.save(tmp_path / "adapters.safetensors")
    with pytest.raises(ValueError, match="expected 'dreamcache-lite/feature-cache'"):
        FeatureCache.load(tmp_path / "adapters.safetensors")
