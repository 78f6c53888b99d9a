"""The adapters: exact no-op without a cache, per-row references, precomputation, dtypes and files."""

import pytest
import torch

from conftest import make_unet, reference_cache, run, unet_inputs
from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.cache import FeatureCache


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


def test_a_second_set_is_an_error_or_an_explicit_replace(unet, inputs):
    """Running a notebook cell again must not wrap one set of adapters inside another."""
    latents, t, text = inputs
    with torch.no_grad():
        plain = unet(latents, t, encoder_hidden_states=text).sample
    first = DreamCacheAdapters(unet, "paper")
    with pytest.raises(ValueError, match="already has DreamCache adapters installed.*replace=True"):
        DreamCacheAdapters(unet, "paper")
    second = DreamCacheAdapters(unet, "paper", replace=True)
    assert not first.installed and second.installed
    with pytest.raises(ValueError, match="another set of DreamCache adapters is installed"):
        first.install()
    second.uninstall()
    assert all(type(p).__name__ != "DreamCacheProcessor" for p in unet.attn_processors.values())
    with torch.no_grad():
        assert torch.equal(unet(latents, t, encoder_hidden_states=text).sample, plain)
    first.install()  # nothing installed any more: the first set may come back
    first.uninstall()
