"""The reference attention options: the paper's scaled dot product, this package's cosine attention and its
relative-position bias."""

import pytest
import torch

from conftest import reference_cache, run, unet_inputs
from dreamcache_lite.adapters import (COSINE_SCALE, POSITION_WEIGHT, DreamCacheAdapters, ReferenceAttention,
                                    _squared_distances, coarse_prior)


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


def test_squared_distances_between_cell_centres():
    d = _squared_distances((2, 4), "cpu", torch.float32)
    assert d.shape == (8, 8) and torch.all(d.diagonal() == 0)
    assert d[0, 1].item() == pytest.approx(0.25 ** 2) and d[0, 4].item() == pytest.approx(0.5 ** 2)


def test_positional_attention_starts_at_its_own_place_and_its_weight_learns(unet, inputs):
    """With queries and keys zeroed, only the bias is left: every query's strongest token is its own
    cell; the explicit softmax (return_weights) and SDPA agree; the weight gets a gradient."""
    plain = run(unet, inputs)
    adapters = DreamCacheAdapters(unet, "paper", attention="positional")
    cache = reference_cache(unet, batch=2)
    with adapters.reference(cache):
        assert torch.equal(run(unet, inputs), plain)  # identity init: linear_cat = [I | 0]
    for proc in adapters.processors.values():
        assert torch.allclose(proc.attn_mem.log_position_weight.exp(), torch.tensor(POSITION_WEIGHT))
        proc.attn_mem.to_q.weight.data.zero_()
        proc.linear_cat.weight.data.normal_(0, 0.1)
    with torch.no_grad(), adapters.reference(cache):
        fast = run(unet, inputs)
        adapters.context.record_attention = True
        assert torch.allclose(run(unet, inputs), fast, rtol=1e-4, atol=1e-5)
        maps = dict(adapters.context.attention)
    for w in maps.values():
        assert torch.equal(w[0].argmax(-1), torch.arange(w.shape[-1]))
    for p in adapters.parameters():
        p.requires_grad_(True)
    latents, t, text = inputs
    with adapters.reference(cache):
        unet(latents, t, encoder_hidden_states=text).sample.square().mean().backward()
    assert all(proc.attn_mem.log_position_weight.grad.abs().sum() > 0 for proc in adapters.processors.values())


def test_coarse_prior_gives_each_fine_cell_its_parents_weight():
    from dreamcache_lite.adapters import PRIOR_FLOOR

    weights = torch.zeros(1, 4, 4)  # a 2x2 grid: query cell 0 looks only at token cell 3
    weights[0, 0, 3] = 1.0
    prior = coarse_prior(weights, (2, 2), strength=2.0)
    assert prior.shape == (1, 16, 16)
    children_of_3 = [10, 11, 14, 15]  # the lower-right 2x2 cells of the 4x4 grid
    for query in (0, 1, 4, 5):  # the children of query cell 0
        expected = torch.full((16,), PRIOR_FLOOR).log() * 2
        expected[children_of_3] = 2 * torch.tensor(0.25 + PRIOR_FLOOR).log()
        assert torch.allclose(prior[0, query], expected)


def test_coarse_to_fine_is_a_no_op_under_a_uniform_coarse_attention_and_changes_otherwise(unet, inputs):
    """A uniform coarse attention adds the same bias to every token (softmax unchanged); a peaked one
    changes the finer adapters' output; a negative strength is refused."""
    cache = reference_cache(unet, batch=2)
    outputs = {}
    for strength in (0.0, 1.0):
        torch.manual_seed(0)
        adapters = DreamCacheAdapters(unet, "paper", init="paper", coarse_to_fine=strength, replace=True)
        with torch.no_grad(), adapters.reference(cache):
            outputs[strength] = run(unet, inputs)
            for proc in adapters.processors.values():  # zero queries: every attention uniform
                proc.attn_mem.to_q.weight.zero_()
            outputs[strength, "uniform"] = run(unet, inputs)
    assert torch.allclose(outputs[1.0, "uniform"], outputs[0.0, "uniform"], atol=1e-6)
    assert not torch.allclose(outputs[1.0], outputs[0.0], atol=1e-4)
    with pytest.raises(ValueError, match="coarse_to_fine"):
        DreamCacheAdapters(unet, "paper", coarse_to_fine=-1.0, replace=True)


def test_coarse_to_fine_strength_round_trips_and_priors_do_not_outlive_a_unet_call(unet, inputs, tmp_path):
    """With encoder layers too, the 16x16 encoder adapters run before any 8x8 one of the same call:
    they must not read the 8x8 attention of the call before (the next denoising step's call)."""
    torch.manual_seed(0)
    adapters = DreamCacheAdapters(unet, "all", init="paper", coarse_to_fine=1.5)
    adapters.save(tmp_path / "a.safetensors")
    cache = reference_cache(unet, batch=2, layers="all")
    with torch.no_grad(), adapters.reference(cache):
        first = run(unet, inputs)
        assert adapters.context.coarse_attention  # filled during the call
    adapters.uninstall()
    loaded = DreamCacheAdapters.from_file(unet, tmp_path / "a.safetensors")
    assert loaded.coarse_to_fine == 1.5
    latents, t, text = inputs
    with torch.no_grad(), loaded.reference(cache):
        unet(-latents, t, encoder_hidden_states=text)  # another call first, in the same reference
        assert torch.allclose(run(unet, inputs), first, atol=1e-6)


@pytest.mark.parametrize("attention", ["paper", "positional", "cosine"])
def test_fused_and_explicit_attention_agree_under_a_prior(attention):
    """The fused (SDPA) path that generation takes and the explicit softmax that records weights
    must compute the same output when a coarse-to-fine prior is added."""
    torch.manual_seed(0)
    attn = ReferenceAttention(32, 32, 4, attention)
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x, cache = torch.randn(2, 64, 32), torch.randn(2, 64, 32)
    keys, values = attn.keys_values(cache)
    prior = coarse_prior(torch.rand(2, 16, 16).softmax(-1), (4, 4), 1.0)
    explicit, _ = attn(x, keys, values, return_weights=True, grid=(8, 8), prior=prior)
    fused = attn(x, keys, values, grid=(8, 8), prior=prior)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
