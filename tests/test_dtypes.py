"""Half-precision inference: a float32 cache and float32 adapters on a float16 / bfloat16 backbone.

The adapters take the UNet's dtype when loaded; the cache is cast once, when its keys and values
are precomputed for generation. The images stay close to the float32 ones.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.backbones import load_pipeline
from dreamcache_lite.cli import main
from dreamcache_lite.lab.toyworld import Scene, benchmark_identities, render


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dtypes")
    torch.manual_seed(0)
    adapters = DreamCacheAdapters(load_pipeline("tiny").unet, "paper", init="paper")  # random, float32
    adapters.save(folder / "adapters.safetensors")
    image, _ = render(benchmark_identities()[0], Scene("white", "none", None, "normal", 1.0, 32, 34, False, 0))
    Image.fromarray(image).save(folder / "ref.png")
    common = ["--adapters", str(folder / "adapters.safetensors")]
    assert main(["cache", str(folder / "ref.png"), "-o", str(folder / "ref.safetensors"), *common]) == 0
    return folder, common


def _generate(folder, common, dtype):
    out = folder / f"{dtype}.png"
    assert main(["generate", "--cache", str(folder / "ref.safetensors"), "--prompt", "a ball on the beach",
                 "-n", "2", "--steps", "10", "--dtype", dtype, "-o", str(out), *common]) == 0
    return np.asarray(Image.open(out), dtype=np.float32)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_generation_follows_float32(files, dtype):
    folder, common = files
    full, half = _generate(folder, common, "float32"), _generate(folder, common, dtype)
    difference = np.abs(full - half).mean()
    print(f"{dtype}: mean |difference| to float32 {difference:.2f} / 255")
    assert np.isfinite(half).all() and half.std() > 10
    assert difference < 4  # measured 0.25 (float16) and 1.54 (bfloat16, 8 mantissa bits) of 255


def test_the_pipeline_and_adapters_share_one_dtype():
    from dreamcache_lite.pipeline import DreamCachePipeline

    pipe = load_pipeline("tiny", dtype=torch.bfloat16)
    adapters = DreamCacheAdapters(pipe.unet, "paper")
    dc = DreamCachePipeline(pipe, adapters)
    cache = dc.cache_reference(np.full((64, 64, 3), 200, np.uint8))
    assert {p.dtype for p in adapters.parameters()} == {torch.bfloat16}
    assert {t.dtype for t in cache.tokens.values()} == {torch.bfloat16}
