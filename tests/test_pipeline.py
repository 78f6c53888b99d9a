"""Issue 4: the generation pipeline — inputs in any form, one batched UNet call per step, reuse."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import random_tiny_pipeline
from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.images import subject_on_white
from dreamcache_lite.pipeline import DreamCachePipeline


@pytest.fixture(scope="module")
def dc():
    pipe = random_tiny_pipeline()
    return DreamCachePipeline(pipe, DreamCacheAdapters(pipe.unet, "paper", init="paper"))


def count_unet_calls(unet):
    calls = []
    handle = unet.register_forward_pre_hook(lambda m, args, kwargs: calls.append(args[0].shape[0]), with_kwargs=True)
    return calls, handle


def test_reference_in_any_form(dc, tmp_path):
    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[10:30, 5:25] = (200, 10, 10, 255)
    picture = subject_on_white(Image.fromarray(rgba), size=64)
    assert picture.size == (64, 64) and picture.mode == "RGB"
    assert picture.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    gray = Image.fromarray(np.full((64, 64), 90, np.uint8))
    assert subject_on_white(gray, size=64).getpixel((5, 5)) == (90, 90, 90)
    Image.fromarray(rgba).save(tmp_path / "ref.png")
    caches = [dc.cache_reference(x) for x in (tmp_path / "ref.png", Image.fromarray(rgba), rgba,
                                              torch.from_numpy(rgba).permute(2, 0, 1).float() / 255)]
    for cache in caches[1:]:
        assert all(torch.allclose(cache.tokens[n], caches[0].tokens[n], atol=1e-4) for n in cache.layers)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png"):
        dc.cache_reference(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="shape"):
        dc.cache_reference(np.zeros((4, 4, 7)))


def test_one_batched_unet_call_per_step_and_cache_reuse(dc):
    cache = dc.cache_reference(np.full((64, 64, 3), 128, np.uint8))
    calls, handle = count_unet_calls(dc.pipe.unet)
    try:
        first = dc(["a ball on the beach", "a box"], cache, num_images=2, steps=3, seed=7, progress=False,
                   output_type="latent")
        assert calls == [3 * 4] * 3  # 3 branches x 4 images, one call per step, no caching pass
        again = dc(["a ball on the beach", "a box"], cache, num_images=2, steps=3, seed=7, progress=False,
                   output_type="latent")
    finally:
        handle.remove()
    assert torch.equal(first, again)  # deterministic with a seed, cache reused as it is
    assert not torch.allclose(first[0], first[1])  # image i uses seed + i


def test_text_only_and_reference_scale(dc):
    cache = dc.cache_reference(np.full((64, 64, 3), 30, np.uint8))
    calls, handle = count_unet_calls(dc.pipe.unet)
    try:
        text_only = dc("a ball", None, steps=2, progress=False, output_type="latent")
    finally:
        handle.remove()
    assert calls == [2, 2]
    zero = dc("a ball", cache, steps=2, ref_scale=0.0, text_scale=7.5, progress=False, output_type="latent")
    strong = dc("a ball", cache, steps=2, ref_scale=3.0, progress=False, output_type="latent")
    assert not torch.allclose(zero, strong)
    assert text_only.shape == zero.shape


def test_multi_reference_callback_attention_and_images(dc):
    a = dc.cache_reference(np.full((64, 64, 3), 30, np.uint8))
    b = dc.cache_reference(np.full((64, 64, 3), 220, np.uint8))
    seen = []
    images, attention = dc("a star", [a, b], steps=2, negative_prompt="a box", progress=False,
                           callback=lambda i, t, lat: seen.append(i), return_attention=True)
    assert seen == [0, 1]
    assert isinstance(images[0], Image.Image) and images[0].size == (64, 64)
    name = next(iter(attention))
    maps = attention[name]
    assert maps.shape[-1] == 2 * a.num_tokens()[dc.adapters.processors[name].layer]
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    assert dc.adapters.context.cache is None  # deactivated after generation


def test_generation_without_adapters_refuses_a_cache():
    plain = DreamCachePipeline(random_tiny_pipeline())
    with pytest.raises(ValueError, match="no adapters"):
        plain("a ball", object(), steps=1, progress=False)


def test_one_generation_config_with_overrides_and_a_named_scheduler(dc):
    from diffusers import DDIMScheduler

    from dreamcache_lite.pipeline import GenerationConfig

    default = dc("a ball", None, steps=2, progress=False, output_type="latent")
    configured = dc("a ball", None, GenerationConfig(steps=2, text_scale=5.0), progress=False, output_type="latent")
    assert torch.equal(default, configured)  # the keywords' defaults are the config's
    assert GenerationConfig().but(steps=None, text_scale=2.0) == GenerationConfig(text_scale=2.0)
    assert isinstance(dc.sampler("ddim"), DDIMScheduler) and dc.sampler(None) is dc.pipe.scheduler
    with pytest.raises(ValueError, match="unknown scheduler"):
        dc("a ball", None, steps=1, scheduler="euler", progress=False)

