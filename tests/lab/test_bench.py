"""The benchmark's UNet cost ratios run end to end (on the tiny architecture: seconds)."""

from dreamcache_lite.lab.bench import _unet_costs, bench_unet, expected_mac_ratio


def test_unet_cost_ratios_on_the_tiny_architecture(monkeypatch):
    """Structure, not speed (timings on a shared CPU are noise): reference-only runs two UNet passes."""
    import diffusers

    calls = []
    original = diffusers.UNet2DConditionModel.forward
    monkeypatch.setattr(diffusers.UNet2DConditionModel, "forward",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    _unet_costs("tiny", 64, "cpu", repeats=1)
    # one cache pass at set-up; then per round (warm-up + 1 repeat): plain 1, adapters 1, reference-only 2, caching 1
    assert len(calls) == 1 + 2 * 5
    report = bench_unet("tiny", 64, repeats=1)
    assert {"adapter_overhead_ratio", "reference_only_ratio", "caching_cost_ratio", "expected_mac_ratio"} <= set(report)
    assert all(report[k] > 0 for k in ("adapter_overhead_ratio", "reference_only_ratio", "caching_cost_ratio"))
    assert report["expected_mac_ratio"] > 1.0


def test_expected_arithmetic_on_sd15_is_a_few_percent():
    ratio = expected_mac_ratio("sd15", 512)
    assert 1.01 < ratio < 1.15  # the issue: about 6% of the UNet's arithmetic at 512 px


def test_tiny_section_builds_a_pipeline_with_adapters_before_the_weights_ship(monkeypatch):
    """Only the set-up of the tiny section: `bench_tiny` is replaced by a stub that times nothing
    (the timings themselves: the next test)."""
    import dreamcache_lite.lab.bench as bench

    monkeypatch.setattr(bench, "bench_tiny", lambda dc: {"adapters": dc.adapters.num_parameters()})
    out = bench.run(sections=("tiny",))
    assert out["adapters"] > 0 and "tiny_weights" in out


def test_bench_tiny_times_text_only_dreamcache_and_reference_only(monkeypatch):
    """The real `bench_tiny` on random weights, every generation cut to one step."""
    from conftest import random_tiny_pipeline
    from dreamcache_lite.adapters import DreamCacheAdapters
    from dreamcache_lite.lab.bench import bench_tiny
    from dreamcache_lite.pipeline import DreamCachePipeline

    pipe = random_tiny_pipeline()
    dc = DreamCachePipeline(pipe, DreamCacheAdapters(pipe.unet, "paper"))
    calls = []
    original = dc.__call__
    monkeypatch.setattr(DreamCachePipeline, "__call__", lambda self, *a, **k: calls.append(k) or original(
        *a, **{**k, "steps": 1}))
    report = bench_tiny(dc, repeats=1)
    for method in ("text", "dreamcache", "reference_only"):
        assert report[f"tiny_seconds_per_image_{method}"] > 0
    assert report["tiny_dreamcache_vs_text_ratio"] > 0 and report["tiny_reference_only_vs_text_ratio"] > 0
    assert all(k["num_images"] == 4 for k in calls)
