"""`dreamcache-lite bench`: speed figures measured in one run, as ratios where they compare.

These machines are noisy, so figures that compare two things are measured interleaved in the
same run and reported as ratios; absolute seconds are printed for orientation only.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from . import toyworld as tw


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_toyworld(n: int = 2000) -> dict:
    """Renders per second on one core (the target: >= 500, so data never bottlenecks training)."""
    jobs = [(tw.training_identity(i), tw.random_scene(i)) for i in range(n)]
    with threadpool_limits(1):
        for job in jobs[:50]:
            tw.render(*job)
        start = time.perf_counter()
        for job in jobs:
            tw.render(*job)
        render_rate = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(n // 4):
            tw.sample_training_pair(i)
        pair_rate = (n // 4) / (time.perf_counter() - start)
    return {"toyworld_render_images_per_s": round(render_rate), "toyworld_pairs_per_s": round(pair_rate)}


def bench_tiny(dc, repeats: int = 3) -> dict:
    """The embedded backbone: 4 images x 25 DDIM steps with CFG, text-only vs DreamCache."""
    reference = tw.make_reference(tw.benchmark_identities()[0], 0, flip_p=0.0, erase_p=0.0)
    cache = dc.cache_reference(reference)
    prompts = "a ball on the beach"

    def text_only():
        dc(prompts, None, num_images=4, steps=25, progress=False)

    def dreamcache():
        dc(prompts, cache, num_images=4, steps=25, progress=False)

    text_only(), dreamcache()  # warm-up
    caching = _median_seconds(lambda: dc.cache_reference(reference), repeats)
    t_text = _median_seconds(text_only, repeats)
    t_dc = _median_seconds(dreamcache, repeats)
    return {"tiny_4_images_25_steps_cfg_seconds": round(t_text, 3),
            "tiny_seconds_per_image_text": round(t_text / 4, 4),
            "tiny_seconds_per_image_dreamcache": round(t_dc / 4, 4),
            "tiny_dreamcache_vs_text_ratio": round(t_dc / t_text, 3),
            "tiny_caching_seconds": round(caching, 4),
            "threads": torch.get_num_threads()}


def run(sections=("toyworld", "tiny")) -> dict:
    out = {}
    if "toyworld" in sections:
        out.update(bench_toyworld())
    if "tiny" in sections:
        from .backbones import load_pipeline
        from .cli import TINY_ADAPTERS
        from .pipeline import DreamCachePipeline

        dc = DreamCachePipeline.from_pretrained(load_pipeline("tiny"), TINY_ADAPTERS if TINY_ADAPTERS.is_file() else None)
        if dc.adapters is None:  # before the adapters are shipped: untrained ones cost the same
            from .adapters import DreamCacheAdapters

            dc.adapters = DreamCacheAdapters(dc.pipe.unet, "paper")
        out.update(bench_tiny(dc))
    return out
