"""Issue 5: each ablation is one call; trained factors train their own adapters, the paper's numbers stand beside."""

import pytest
import torch

from conftest import random_tiny_pipeline
from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.lab import toyworld as tw
from dreamcache_lite.lab.ablations import ablation, ablation_table
from dreamcache_lite.lab.evaluation import Protocol
from dreamcache_lite.lab.oracle import Oracle
from dreamcache_lite.pipeline import GenerationConfig
from dreamcache_lite.training import TrainConfig

FAST = GenerationConfig(steps=2)


@pytest.fixture(scope="module")
def setting():
    torch.manual_seed(0)
    proto = Protocol(identities=[tw.benchmark_identities()[0]], seeds=[0], prompts=tw.BENCHMARK_PROMPTS[:1])
    return random_tiny_pipeline(), proto, Oracle().eval()


def test_layer_ablation_trains_one_set_of_adapters_per_preset(setting, tmp_path):
    pipe, proto, oracle = setting
    before = dict(pipe.unet.attn_processors)
    train = TrainConfig(out=str(tmp_path), steps=2, batch_size=2, checkpoint_every=100)
    rows = ablation("layers", ["mid", "mid+decoder"], pipe=pipe, proto=proto, generation=FAST, train=train,
                    oracle=oracle, progress=False)
    assert [r["value"] for r in rows] == ["mid", "mid+decoder"]
    assert rows[0]["extra_params"] < rows[1]["extra_params"]
    assert (rows[1]["paper_clip_i"], rows[1]["paper_clip_t"]) == (0.810, 0.298)
    assert (tmp_path / "mid-concat" / "adapters.safetensors").is_file()
    assert all(pipe.unet.attn_processors[k] is v for k, v in before.items())  # adapters removed after each row
    table = ablation_table(rows)
    assert "| mid+decoder |" in table and "0.810" in table


def test_attention_ablation_trains_the_options_beside_the_paper(setting, tmp_path):
    pipe, proto, oracle = setting
    train = TrainConfig(out=str(tmp_path), steps=2, batch_size=2, checkpoint_every=100)
    rows = ablation("attention", pipe=pipe, proto=proto, generation=FAST, train=train, oracle=oracle,
                    progress=False)
    assert [r["value"] for r in rows] == ["paper", "cosine", "positional"]
    assert rows[1]["paper_clip_i"] is None and rows[2]["paper_clip_i"] is None
    for folder in ("paper-concat", "paper-concat-cosine", "paper-concat-positional"):
        assert (tmp_path / folder / "adapters.safetensors").is_file()
    assert rows[1]["extra_params"] > rows[0]["extra_params"]  # the key norm and the learned scale
    assert rows[2]["extra_params"] > rows[0]["extra_params"]  # one position weight per head


def test_cache_ablations_reuse_trained_adapters(setting):
    pipe, proto, oracle = setting
    adapters = DreamCacheAdapters(pipe.unet, "paper", init="paper")
    try:
        rows = ablation("cache_timestep", [1, 300], pipe=pipe, proto=proto, generation=FAST, adapters=adapters,
                        oracle=oracle, progress=False)
        assert [r["cache_timestep"] for r in rows] == [1, 300] and rows[0]["paper_clip_i"] is None
        rows = ablation("cache_prompt", pipe=pipe, proto=proto, generation=FAST, adapters=adapters, oracle=oracle,
                        progress=False)
        assert [r["cache_prompt"] for r in rows] == ["", "a {}"]
    finally:
        adapters.uninstall()
    with pytest.raises(ValueError, match="needs trained `adapters`"):
        ablation("cache_prompt", pipe=pipe, proto=proto, generation=FAST, oracle=oracle)
    with pytest.raises(ValueError, match="unknown ablation"):
        ablation("guidance", pipe=pipe, proto=proto)
