"""What DreamCache costs on an architecture (`dreamcache-lite inspect`): layers, tokens, bytes, parameters."""

import json
import subprocess
import sys

import pytest

from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.report import architecture_report


PAPER_LAYERS = ["mid_block.attentions.0", "up_blocks.1.attentions.1", "up_blocks.2.attentions.0",
                "up_blocks.2.attentions.2", "up_blocks.3.attentions.1"]

@pytest.mark.parametrize("arch", ["sd15", "sd21"])
def test_paper_preset_on_stable_diffusion(arch):
    report = architecture_report(arch, 512, "paper")
    assert report["layers"] == PAPER_LAYERS
    assert report["channels"] == [1280, 1280, 640, 640, 320]
    assert report["cache_tokens"] == [64, 256, 1024, 1024, 4096]
    assert report["cache_bytes_fp16"] == 6_062_080
    assert report["adapter_params"] == 25_207_040

def test_cli_inspect_json():
    out = subprocess.run([sys.executable, "-m", "dreamcache_lite.cli", "inspect", "--arch", "sd15",
                          "--resolution", "512", "--layers", "paper", "--json"],
                         capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    assert {"layers", "channels", "cache_tokens", "cache_bytes_fp16", "adapter_params"} <= set(report)
    assert report["adapter_params"] == 25_207_040

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
