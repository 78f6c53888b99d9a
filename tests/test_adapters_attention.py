"""The reference attention option: the paper's scaled dot product and this package's cosine attention."""

import pytest
import torch

from conftest import reference_cache, run, unet_inputs
from dreamcache_lite.adapters import COSINE_SCALE, DreamCacheAdapters


def test_cosine_attention_starts_as_an_exact_no_op_with_keys_in_the_queries_basis(unet, inputs):
    plain = run(unet, inputs)
    adapters = DreamCacheAdapters(unet, "paper", attention="cosine")
    modules = dict(unet.named_modules())
    for proc in adapters.processors.values():
        attn = proc.attn_mem
        proj_in = modules[proc.layer].proj_in.weight
        assert torch.equal(attn.to_q.weight, torch.eye(attn.to_q.weight.shape[0]))
        assert torch.equal(attn.to_k.weight, proj_in.reshape(proj_in.shape[0], -1))
        assert attn.logit_scale.exp().item() == pytest.approx(COSINE_SCALE)
    with adapters.reference(reference_cache(unet, batch=2)):
        assert torch.equal(run(unet, inputs), plain)  # identity init: linear_cat = [I | 0]


def test_cosine_attention_precomputed_keys_match_and_the_scale_learns(unet, inputs):
    adapters = DreamCacheAdapters(unet, "paper", init="paper", attention="cosine")
    cache = reference_cache(unet, batch=2)
    with adapters.reference(cache):
        first = run(unet, inputs)
    with adapters.reference(cache, precompute=True):
        assert torch.allclose(run(unet, inputs), first, rtol=1e-4, atol=1e-5)
    for p in adapters.parameters():
        p.requires_grad_(True)
    latents, t, text = inputs
    with adapters.reference(cache):
        unet(latents, t, encoder_hidden_states=text).sample.square().mean().backward()
    assert all(proc.attn_mem.logit_scale.grad is not None for proc in adapters.processors.values())


def test_cosine_attention_finds_the_own_token_when_the_reference_is_the_input(unet):
    """The copy task at t = 1: each query's strongest key is its own position from step 0 (with the
    paper's random start it is anyone's guess: the keys live before the block's `proj_in`)."""
    from dreamcache_lite.cache import cache_features

    latents, _, text = unet_inputs()
    hits = {}
    for attention in ("cosine", "paper"):
        adapters = DreamCacheAdapters(unet, "paper", init="paper", attention=attention)
        cache = cache_features(unet, latents, text[:1], layers="paper", timestep=1)
        with torch.no_grad(), adapters.reference(cache):
            adapters.context.record_attention = True
            unet(latents, 1, encoder_hidden_states=text)
            maps = dict(adapters.context.attention)
        adapters.uninstall()
        fine = [w for w in maps.values() if w.shape[-1] == 256]
        hits[attention] = float(torch.stack([(w.argmax(-1) == torch.arange(256)).float().mean() for w in fine]).mean())
    assert hits["cosine"] > 0.5 > hits["paper"] + 0.3, hits
