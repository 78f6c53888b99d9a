"""Issues 3-4: the toy bench runs end to end and reports the contract's keys."""

import numpy as np
import pytest
import torch

from conftest import random_tiny_pipeline
from dreamcache_lite.lab import toyworld as tw
from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.lab.evaluation import Protocol, evaluate
from dreamcache_lite.lab.oracle import SUBJECT_PARTS, Oracle
from dreamcache_lite.pipeline import DreamCachePipeline, GenerationConfig

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
    proto = Protocol(identities=[ids[0], ids[6]], seeds=[0, 1], prompts=tw.BENCHMARK_PROMPTS[:2])
    summary, rows = evaluate(method, dc, proto, GenerationConfig(steps=2), progress=False, oracle=oracle,
                             finetune_steps=2)
    assert KEYS <= set(summary)
    assert summary["images"] == len(rows) == 8
    assert all(0 <= r["subject_fidelity"] <= 1 and 0 <= r["prompt_fidelity"] <= 1 for r in rows)
    assert (summary["extra_params"] > 0) == (method in ("dreamcache", "finetune"))
    assert (summary["setup_seconds"] > 0) == (method in ("dreamcache", "finetune"))
    assert (summary["cache_bytes"] > 0) == (method == "dreamcache")
    assert set(summary["subject_by_attribute"]) == set(SUBJECT_PARTS)
    assert {"identity_gain", "text_subject_fidelity", "vae_subject_fidelity"} <= set(summary)
    if method == "text":
        assert summary["identity_gain"] in (0.0, None)  # text-only is its own yardstick


def test_subject_parts_score_each_detail_and_skip_what_does_not_apply():
    from dreamcache_lite.lab.oracle import attributes, subject_fidelity, subject_parts

    plain = next(i for i in tw.benchmark_identities() if i.pattern == "plain")
    dotted = next(i for i in tw.benchmark_identities() if i.pattern == "dots")
    truth = [attributes(plain), attributes(dotted)]
    keys = ("pattern", "glyph", "body", "pattern_colour", "pattern_geometry")
    readings = {k: np.stack([np.asarray(t[k]) for t in truth]) for k in keys}
    parts = subject_parts(readings, [plain, dotted], recoloured=[False, True])
    assert parts["pattern"].tolist() == [1, 1] and parts["glyph"].tolist() == [1, 1]
    one = pytest.approx(1, abs=1e-5)  # colours pass through float32
    assert parts["body_colour"][0] == one and np.isnan(parts["body_colour"][1])  # recoloured: not asked
    assert np.isnan(parts["pattern_colour"][0]) and parts["pattern_colour"][1] == one  # plain: no pattern colour
    assert np.isnan(parts["pattern_freq"][0]) and parts["pattern_freq"][1] == one
    assert parts["pattern_angle"][1] == one
    tiny = subject_parts(readings, [plain, dotted], [False, False], sizes=["tiny", "normal"])
    assert all(np.isnan(tiny[k][0]) for k in ("pattern", "glyph")) and tiny["body_colour"][0] == one
    readings["glyph"] = ~readings["glyph"]
    # dotted: pattern 1, glyph 0, pattern colour 1 (body recoloured: not asked); freq/angle not averaged
    assert subject_fidelity(readings, [plain, dotted], [False, True]) == pytest.approx([2 / 3, 2 / 3], abs=1e-5)


def test_colour_score_is_graded():
    from dreamcache_lite.lab.oracle import colour_score

    red = (0.86, 0.12, 0.12)
    assert colour_score(red, red) == 1
    near, far = colour_score(red, (0.8, 0.15, 0.15)), colour_score(red, (0.7, 0.25, 0.2))
    assert 1 > near > far > 0 and colour_score(red, (0.1, 0.3, 0.9)) == 0


def test_identity_gain_places_a_method_between_text_and_the_vae():
    from dreamcache_lite.lab.evaluation import identity_gain

    assert identity_gain(0.3, 0.3, 0.9) == 0 and identity_gain(0.9, 0.3, 0.9) == 1
    assert identity_gain(0.7, 0.3, 0.8) == pytest.approx(0.8)
    assert identity_gain(0.7, 0.5, 0.5) is None  # no room above text-only: the gain is undefined


def test_unknown_method_is_refused(dc, oracle):
    with pytest.raises(ValueError, match="text, text-described, reference-only, finetune, dreamcache"):
        evaluate("magic", dc, Protocol(identities=[], seeds=[0]), progress=False, oracle=oracle)
