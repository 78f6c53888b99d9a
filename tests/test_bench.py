"""The benchmark's UNet cost ratios run end to end (on the tiny architecture: seconds)."""

from dreamcache_lite.bench import bench_unet, expected_mac_ratio


def test_unet_cost_ratios_on_the_tiny_architecture():
    report = bench_unet("tiny", 64, repeats=1)
    assert {"adapter_overhead_ratio", "reference_only_ratio", "caching_cost_ratio", "expected_mac_ratio"} <= set(report)
    assert report["reference_only_ratio"] > 1.3  # two passes per step
    assert report["expected_mac_ratio"] > 1.0


def test_expected_arithmetic_on_sd15_is_a_few_percent():
    ratio = expected_mac_ratio("sd15", 512)
    assert 1.01 < ratio < 1.15  # the issue: about 6% of the UNet's arithmetic at 512 px
