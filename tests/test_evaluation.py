"""Issues 3-4: the toy bench runs end to end and reports the contract's keys."""

import numpy as np
import pytest
import torch

from conftest import random_tiny_pipeline
from dreamcache_lite import toyworld as tw
from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.evaluation import Protocol, evaluate
from dreamcache_lite.oracle import Oracle
from dreamcache_lite.pipeline import DreamCachePipeline

KEYS = {"class_accuracy", "prompt_fidelity", "subject_fidelity", "images", "seconds", "extra_params",
        "setup_seconds", "seconds_per_image"}


@pytest.fixture(scope="module")
def oracle():
    """Untrained: these tests check the bench's machinery, not the oracle's skill (tests/test_oracle.py)."""
    torch.manual_seed(0)
    return Oracle().eval()


@pytest.fixture(scope="module")
def dc():
    pipe = random_tiny_pipeline()
    return DreamCachePipeline(pipe, DreamCacheAdapters(pipe.unet, "paper"))


@pytest.mark.parametrize("method", ["text", "text-described", "reference-only", "finetune", "dreamcache"])
def test_toy_bench_reports_the_contract(dc, oracle, method):
    ids = tw.benchmark_identities()
    proto = Protocol(identities=[ids[0], ids[6]], seeds=[0, 1], prompts=tw.BENCHMARK_PROMPTS[:2], steps=2)
    summary, rows = evaluate(method, dc, proto, progress=False, oracle=oracle, finetune_steps=2)
    assert KEYS <= set(summary)
    assert summary["images"] == len(rows) == 8
    assert all(0 <= r["subject_fidelity"] <= 1 and 0 <= r["prompt_fidelity"] <= 1 for r in rows)
    assert (summary["extra_params"] > 0) == (method in ("dreamcache", "finetune"))
    assert (summary["setup_seconds"] > 0) == (method in ("dreamcache", "finetune"))
    assert (summary["cache_bytes"] > 0) == (method == "dreamcache")
    assert set(summary["subject_by_attribute"]) == {"pattern", "glyph", "body_colour", "pattern_colour"}


def test_subject_parts_score_each_detail_and_skip_what_does_not_apply():
    from dreamcache_lite.oracle import attributes, subject_fidelity, subject_parts

    plain = next(i for i in tw.benchmark_identities() if i.pattern == "plain")
    dotted = next(i for i in tw.benchmark_identities() if i.pattern == "dots")
    truth = [attributes(plain), attributes(dotted)]
    readings = {k: np.stack([np.asarray(t[k]) for t in truth]) for k in ("pattern", "glyph", "body", "pattern_colour")}
    parts = subject_parts(readings, [plain, dotted], recoloured=[False, True])
    assert parts["pattern"].tolist() == [1, 1] and parts["glyph"].tolist() == [1, 1]
    assert parts["body_colour"][0] == 1 and np.isnan(parts["body_colour"][1])  # recoloured: not asked
    assert np.isnan(parts["pattern_colour"][0]) and parts["pattern_colour"][1] == 1  # plain: no pattern colour
    readings["glyph"] = ~readings["glyph"]
    assert subject_fidelity(readings, [plain, dotted], [False, True]).tolist() == [2 / 3, 2 / 3]


def test_unknown_method_is_refused(dc, oracle):
    with pytest.raises(ValueError, match="text, text-described, reference-only, finetune, dreamcache"):
        evaluate("magic", dc, Protocol(identities=[], seeds=[0]), progress=False, oracle=oracle)


def test_caching_ablation_varies_one_factor_at_a_time(dc, oracle):
    from dreamcache_lite.evaluation import caching_ablation, markdown_table

    ids = tw.benchmark_identities()
    proto = Protocol(identities=[ids[0]], seeds=[0], prompts=tw.BENCHMARK_PROMPTS[:1], steps=2)
    rows = caching_ablation(dc, proto, timesteps=(1, 300), prompts=("", "a {}"), oracle=oracle, progress=False)
    assert [(r["cache_timestep"], r["cache_prompt"]) for r in rows] == [(1, ""), (300, ""), (1, "a {}")]
    table = markdown_table(rows, columns=("cache_timestep", "cache_prompt", "subject_fidelity"))
    assert table.count("\n") == 4 and "| 300 |" in table
