"""Issue 7: the backbone registry — hub ids for SD, a clear error when they cannot be reached."""

import pytest

from dreamcache_lite.backbones import ARCHITECTURES, load_pipeline


def test_sd_backbones_offline_give_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never touch the network in tests
    with pytest.raises(OSError, match="SD weights need the network or a local copy"):
        load_pipeline("sd15")


def test_registry_names_the_public_hub_ids():
    assert ARCHITECTURES["sd21"].hub_id == "stabilityai/stable-diffusion-2-1-base"
    assert ARCHITECTURES["sdxl"].added_cond  # SDXL's extra conditioning is part of its inputs
