"""scripts/colour_probe.py x0: the denoiser's colour per noise level with own / no / another reference."""

import torch

from conftest import load_script, random_tiny_pipeline
from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.pipeline import DreamCachePipeline


def probe(init: str, ref_scales=()) -> dict:
    pipe = random_tiny_pipeline()
    torch.manual_seed(0)
    dc = DreamCachePipeline(pipe, DreamCacheAdapters(pipe.unet, init=init))
    return load_script("colour_probe").x0(dc, ref_scales, size=2)


def test_x0_identity_adapters_change_nothing():
    """Identity-initialised adapters are an exact no-op: the three rows agree at every t, and the rows
    without a reference are the same for the pairs and their copy task (same targets, same noise)."""
    out = probe("identity")
    assert out["pairs per row"] == 2
    for kind in ("pairs", "copy"):
        assert len(out[kind]) == 6
        for row in out[kind].values():
            assert row["own"] == row["none"] == row["shuffled"]
    assert out["pairs"] == out["copy"]  # rounded to 0.1 by the probe


def test_x0_reference_rows_differ_when_adapters_act():
    out = probe("paper", ref_scales=(1.0, 3.0))  # random adapters: the reference changes the prediction
    assert any(row["own"] != row["none"] for row in out["copy"].values())
    for row in out["copy"].values():  # guidance at 1 is the own row; at 3 it goes on past it
        assert row["own, s_ref 1"] == row["own"]
    assert any(row["own, s_ref 3"] != row["own"] for row in out["copy"].values())
    assert [row["none"] for row in out["pairs"].values()] == [row["none"] for row in out["copy"].values()]
