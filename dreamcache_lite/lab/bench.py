"""`dreamcache-lite bench`: speed figures measured in one run, as ratios where they compare.

These machines are noisy, so figures that compare two things are measured interleaved in the
same run and reported as ratios; absolute seconds are printed for orientation only.
"""

from __future__ import annotations

import statistics
import time

import torch
from threadpoolctl import threadpool_limits

from ..backbones import ARCHITECTURES
from . import toyworld as tw


def _synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # GPU kernels run asynchronously: stop the clock when they are done


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _synchronize()
        start = time.perf_counter()
        fn()
        _synchronize()
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
    """The embedded backbone: 4 images x 25 DDIM steps with CFG: text-only, DreamCache, reference-only."""
    from .baselines import generate_reference_only

    reference = tw.make_reference(tw.benchmark_identities()[0], 0, flip_p=0.0, erase_p=0.0)
    cache = dc.cache_reference(reference)
    prompts = "a ball on the beach"

    def text_only():
        dc(prompts, None, num_images=4, steps=25, progress=False)

    def dreamcache():
        dc(prompts, cache, num_images=4, steps=25, progress=False)

    def reference_only():
        generate_reference_only(dc, [prompts], reference, num_images=4, steps=25)

    text_only(), dreamcache(), reference_only()  # warm-up
    caching = _median_seconds(lambda: dc.cache_reference(reference), repeats)
    t_text = _median_seconds(text_only, repeats)
    t_dc = _median_seconds(dreamcache, repeats)
    t_ref = _median_seconds(reference_only, repeats)
    return {"tiny_4_images_25_steps_cfg_seconds": round(t_text, 3),
            "tiny_seconds_per_image_text": round(t_text / 4, 4),
            "tiny_seconds_per_image_dreamcache": round(t_dc / 4, 4),
            "tiny_seconds_per_image_reference_only": round(t_ref / 4, 4),
            "tiny_dreamcache_vs_text_ratio": round(t_dc / t_text, 3),
            "tiny_reference_only_vs_text_ratio": round(t_ref / t_text, 3),
            "tiny_caching_seconds": round(caching, 4),
            "threads": torch.get_num_threads()}


def _unet_with_cache(arch: str, resolution: int, device: str):
    """A random UNet of `arch` (on `meta`: shapes only), batch-1 latents and conditioning, a cache of them."""
    from ..cache import cache_features

    spec = ARCHITECTURES[arch]
    torch.manual_seed(0)
    unet = spec.build_unet(device).eval().requires_grad_(False)
    side = resolution // spec.vae_scale_factor
    latents = torch.randn(1, 4, side, side, device=device)
    inputs = spec.dummy_inputs(1, (side, side), device=device)
    return unet, latents, inputs, cache_features(unet, latents, **inputs)


def _unet_costs(arch: str, resolution: int, device: str, repeats: int) -> tuple[dict, float]:
    """Seconds of: the plain forward, the forward with adapters + cache, reference-only (two passes),
    the caching pass — measured interleaved, medians of `repeats`."""
    from ..adapters import DreamCacheAdapters
    from .baselines import reference_only_attention
    from ..cache import cache_features

    unet, latents, inputs, cache = _unet_with_cache(arch, resolution, device)
    adapters = DreamCacheAdapters(unet, "paper", init="paper")

    def forward():
        unet(latents, 500, **inputs)

    def timed(name: str) -> float:
        """Set-up (installing wrappers, activating the cache) stays outside the clock."""
        if name == "adapters":
            with adapters.reference(cache, precompute=True):
                return _median_seconds(forward, 1)
        if name == "reference_only":
            with reference_only_attention(unet) as state:
                def two_passes():
                    state["mode"] = "write"
                    forward()
                    state["mode"] = "read"
                    forward()
                return _median_seconds(two_passes, 1)
        if name == "caching":
            return _median_seconds(lambda: cache_features(unet, latents, **inputs), 1)
        return _median_seconds(forward, 1)

    names = ("plain", "adapters", "reference_only", "caching")
    times = {name: [] for name in names}
    with torch.no_grad():
        for name in names:
            timed(name)  # warm-up
        for _ in range(repeats):
            for name in names:
                times[name].append(timed(name))
    adapters.uninstall()
    cache_mb_fp16 = sum(t.numel() for t in cache.tokens.values()) * 2 / 2**20
    return {name: statistics.median(t) for name, t in times.items()}, cache_mb_fp16


def expected_mac_ratio(arch: str, resolution: int) -> float:
    """Arithmetic of UNet + adapters (cache keys/values precomputed) over the plain UNet, counted on `meta`."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..adapters import DreamCacheAdapters

    unet, latents, inputs, cache = _unet_with_cache(arch, resolution, "meta")
    adapters = DreamCacheAdapters(unet, "paper")
    counts = []
    for active in (False, True):
        with FlopCounterMode(display=False) as counter:
            if active:
                with adapters.reference(cache):  # keys/values of the cache counted once per call here
                    unet(latents, 500, **inputs)
            else:
                unet(latents, 500, **inputs)
        counts.append(counter.get_total_flops())
    return counts[1] / counts[0]


def bench_unet(arch: str = "sd15", resolution: int = 512, device: str = "cpu", repeats: int = 3) -> dict:
    """The cost ratios of issue 7, measured in one run on one device."""
    seconds, cache_mb_fp16 = _unet_costs(arch, resolution, device, repeats)
    prefix = f"{arch}_{resolution}"
    return {"adapter_overhead_ratio": round(seconds["adapters"] / seconds["plain"], 4),
            "reference_only_ratio": round(seconds["reference_only"] / seconds["plain"], 4),
            "caching_cost_ratio": round(seconds["caching"] / seconds["plain"], 4),
            "expected_mac_ratio": round(expected_mac_ratio(arch, resolution), 4),
            f"{prefix}_plain_forward_seconds": round(seconds["plain"], 3),
            f"{prefix}_cache_mb_fp16": round(cache_mb_fp16, 3),
            "unet_bench": f"{arch} at {resolution} px, random weights, batch 1, {device}, median of {repeats}"}


def _tiny_pipeline(out: dict):
    """The shipped tiny backbone and adapters; before they ship, random weights of the same shapes (same cost)."""
    from ..adapters import DreamCacheAdapters
    from ..assets import TINY_ADAPTERS, TINY_BACKBONE
    from ..backbones import load_pipeline
    from ..pipeline import DreamCachePipeline
    from .tiny_backbone import random_pipeline

    shipped = (TINY_BACKBONE / "manifest.json").is_file()
    pipe = load_pipeline("tiny") if shipped else random_pipeline(0)
    trained = shipped and TINY_ADAPTERS.is_file()
    adapters = DreamCacheAdapters.from_file(pipe.unet, TINY_ADAPTERS) if trained else \
        DreamCacheAdapters(pipe.unet, "paper")
    out["tiny_weights"] = "shipped" if shipped else "random (not shipped yet; timings are the same)"
    return DreamCachePipeline(pipe, adapters)


def run(sections=("toyworld", "tiny"), device: str = "cpu", repeats: int = 3) -> dict:
    """`device` and `repeats` apply to the real-backbone sections (sd15 at 512 px, sdxl at 1024 px)."""
    out = {}
    if "toyworld" in sections:
        out.update(bench_toyworld())
    if "sd15" in sections:
        out.update(bench_unet("sd15", 512, device, repeats))
    if "sdxl" in sections:  # prefixed: the plain ratio keys are SD 1.5's (issue 7's contract)
        sdxl = bench_unet("sdxl", 1024, device, repeats)
        out.update({key if key.startswith("sdxl") else f"sdxl_{key}": value for key, value in sdxl.items()})
    if "tiny" in sections:
        out.update(bench_tiny(_tiny_pipeline(out)))
    return out
