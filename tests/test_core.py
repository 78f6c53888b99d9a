"""Issue 2: layer selection, the feature cache and the adapters on any diffusers UNet."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import make_unet, unet_inputs
from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.cache import FeatureCache, cache_features
from dreamcache_lite.layers import list_transformers, select_layers
from dreamcache_lite.report import architecture_report

PAPER_LAYERS = ["mid_block.attentions.0", "up_blocks.1.attentions.1", "up_blocks.2.attentions.0",
                "up_blocks.2.attentions.2", "up_blocks.3.attentions.1"]


def reference_cache(unet, batch=1, seed=3, side=16, layers="paper"):
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, side, side, generator=gen)
    empty = torch.zeros(1, 16, unet.config.cross_attention_dim)
    return cache_features(unet, latents, empty, layers=layers, generator=torch.Generator().manual_seed(seed))


def run(unet, inputs):
    latents, t, text = inputs
    with torch.no_grad():
        return unet(latents, t, encoder_hidden_states=text).sample


# -- architectures -------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sd15", "sd21"])
def test_paper_preset_on_stable_diffusion(arch):
    report = architecture_report(arch, 512, "paper")
    assert report["layers"] == PAPER_LAYERS
    assert report["channels"] == [1280, 1280, 640, 640, 320]
    assert report["cache_tokens"] == [64, 256, 1024, 1024, 4096]
    assert report["cache_bytes_fp16"] == 6_062_080
    assert report["adapter_params"] == 25_207_040


def test_presets_and_errors(unet):
    names = [i.name for i in list_transformers(unet)]
    assert [i.name for i in select_layers(unet, "all")] == names
    assert all(i.part == "encoder" for i in select_layers(unet, "encoder"))
    assert [i.name for i in select_layers(unet, "mid")] == ["mid_block.attentions.0"]
    with pytest.raises(ValueError, match="paper, mid, decoder, encoder, all"):
        select_layers(unet, "middle")
    with pytest.raises(ValueError, match="mid_block.attentions.0"):
        select_layers(unet, ["up_blocks.9.attentions.0"])


def test_cli_inspect_json():
    out = subprocess.run([sys.executable, "-m", "dreamcache_lite.cli", "inspect", "--arch", "sd15",
                          "--resolution", "512", "--layers", "paper", "--json"],
                         capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    assert {"layers", "channels", "cache_tokens", "cache_bytes_fp16", "adapter_params"} <= set(report)
    assert report["adapter_params"] == 25_207_040


# -- adapters: exactness --------------------------------------------------------------------------
def test_no_cache_is_bit_identical_and_uninstall_restores(unet, inputs):
    before = run(unet, inputs)
    originals = dict(unet.attn_processors)
    adapters = DreamCacheAdapters(unet, "paper")
    assert torch.equal(run(unet, inputs), before)
    with adapters.reference(reference_cache(unet)):
        assert (run(unet, inputs) - before).abs().max() <= 1e-6 * before.abs().max()  # identity init
    adapters.uninstall()
    assert all(unet.attn_processors[k] is v for k, v in originals.items())
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in unet.modules())
    assert torch.equal(run(unet, inputs), before)


def test_paper_init_changes_output(unet, inputs):
    before = run(unet, inputs)
    adapters = DreamCacheAdapters(unet, "paper", init="paper")
    with adapters.reference(reference_cache(unet)):
        assert not torch.allclose(run(unet, inputs), before, atol=1e-3)
    assert torch.equal(run(unet, inputs), before)


def test_mixed_rows_equal_separate_rows(unet):
    latents, t, text = unet_inputs(batch=3)
    adapters = DreamCacheAdapters(unet, "paper", init="paper")
    cache = reference_cache(unet, batch=2)
    with adapters.reference(cache, rows=[1, -1, 0]):
        mixed = run(unet, (latents, t, text))
    with adapters.reference(cache.row(1)):
        row0 = run(unet, (latents[:1], t, text[:1]))
    row1 = run(unet, (latents[1:2], t, text[1:2]))  # no reference active
    with adapters.reference(cache.row(0)):
        row2 = run(unet, (latents[2:], t, text[2:]))
    # equal up to float32 round-off (batched kernels may sum in another order)
    torch.testing.assert_close(mixed, torch.cat([row0, row1, row2]), rtol=1e-4, atol=1e-5)


def test_precomputed_keys_values_match(unet, inputs):
    adapters = DreamCacheAdapters(unet, "paper", init="paper")
    cache = reference_cache(unet)
    with adapters.reference(cache):
        plain = run(unet, inputs)
    with adapters.reference(cache, precompute=True):
        assert adapters.context.keys_values
        torch.testing.assert_close(run(unet, inputs), plain, rtol=1e-5, atol=1e-6)


def test_multi_reference_and_batch(unet, inputs):
    a, b = reference_cache(unet, seed=1), reference_cache(unet, seed=2)
    both = FeatureCache.concat([a, b])
    assert both.references == 2
    assert both.num_tokens() == {n: 2 * k for n, k in a.num_tokens().items()}
    adapters = DreamCacheAdapters(unet, "paper", init="paper")
    with adapters.reference(both):
        out = run(unet, inputs)
    assert torch.isfinite(out).all()
    batch = reference_cache(unet, batch=2)
    assert batch.batch_size == 2
    with adapters.reference(batch):  # row i uses reference i
        assert run(unet, inputs).shape == inputs[0].shape


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_adapters_follow_unet_dtype(dtype):
    unet = make_unet(dtype=dtype)
    adapters = DreamCacheAdapters(unet, "paper")
    assert all(p.dtype == dtype for p in adapters.parameters())
    latents, t, text = unet_inputs(dtype=dtype)
    cache = reference_cache(make_unet()).to(dtype)
    with adapters.reference(cache):
        assert run(unet, (latents, t, text)).dtype == dtype


# -- the cache -----------------------------------------------------------------------------------
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


# -- adapter files -------------------------------------------------------------------------------
def test_adapter_round_trip(unet, inputs, tmp_path):
    adapters = DreamCacheAdapters(unet, "paper", init="paper")
    cache = reference_cache(unet)
    with adapters.reference(cache):
        expected = run(unet, inputs)
    adapters.save(tmp_path / "a.safetensors")
    adapters.uninstall()
    fresh = make_unet()
    loaded = DreamCacheAdapters.from_file(fresh, tmp_path / "a.safetensors")
    with loaded.reference(cache):
        assert torch.equal(run(fresh, inputs), expected)


def test_adapter_file_for_other_layers_or_channels_is_refused(unet, tmp_path):
    DreamCacheAdapters(unet, "decoder").save(tmp_path / "decoder.safetensors")
    paper = DreamCacheAdapters(make_unet(), "paper")
    with pytest.raises(ValueError, match="layers"):
        paper.load_weights(tmp_path / "decoder.safetensors")
    other = make_unet(attention_head_dim=2)
    with pytest.raises(ValueError, match="backbone"):
        DreamCacheAdapters.from_file(other, tmp_path / "decoder.safetensors")
    assert not any(m._forward_pre_hooks for m in other.modules())  # a failed load leaves nothing installed
    wide = make_unet(block_out_channels=[32, 48, 128])
    with pytest.raises(ValueError, match="channel"):
        DreamCacheAdapters.from_file(wide, tmp_path / "decoder.safetensors")


def test_sdxl_multi_block_transformers():
    """SDXL's transformers hold several blocks: every block of a selected transformer gets an adapter,
    all attending to the one cache of that transformer's input."""
    report = architecture_report("sdxl", 1024, "paper")
    assert report["layers"] == ["mid_block.attentions.0", "up_blocks.0.attentions.1", "up_blocks.1.attentions.0",
                                "up_blocks.1.attentions.2"]
    assert report["cache_tokens"] == [1024, 1024, 4096, 4096]
    from dreamcache_lite.backbones import ARCHITECTURES

    unet = ARCHITECTURES["sdxl"].build_unet("meta")
    adapters = DreamCacheAdapters(unet, "paper")
    assert len(adapters.processors) == 10 + 10 + 2 + 2
    assert report["adapter_params"] == sum(6 * d * d + 4 * d for d in [1280] * 20 + [640] * 4)
