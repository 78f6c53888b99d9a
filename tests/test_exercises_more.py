"""The checkers of notebooks 00, 03 and 05: reference solutions pass, typical mistakes are explained."""

import pytest
import torch

from conftest import make_unet

from dreamcache_lite.teach import exercises as ex


@pytest.fixture
def not_fast(monkeypatch):
    monkeypatch.setenv("DREAMCACHE_FAST", "0")


def right(name, answer, **context):
    ok, message = ex.verdict(name, answer, **context)
    assert ok is True, message
    return message


def wrong(name, answer, **context):
    ok, message = ex.verdict(name, answer, **context)
    assert ok is False, message
    return message


def test_solutions_pass_their_checkers():
    attention = torch.rand(4, 16, 16).softmax(-1)
    for name, context in [("00.unet_calls", {"steps": 25}), ("00.guidance", {}), ("03.params_per_block", {}),
                          ("03.identity_noop", {}), ("03.reference_dropout", {}),
                          ("05.top_token", {"attention": attention}), ("05.glyph_layer", {})]:
        solution = ex.engine.load_solution(name, **context)
        assert ex.verdict(name, solution, **context)[0] is True, name


def test_unet_calls():
    assert "batched" in right("00.unet_calls", 26, steps=25)
    assert "reference-only" in wrong("00.unet_calls", 50, steps=25)
    assert "batched call per step" in wrong("00.unet_calls", 75, steps=25)
    assert "caching" in wrong("00.unet_calls", 25, steps=25)
    assert "should be a number" in wrong("00.unet_calls", "26", steps=25)


def test_guidance():
    right("00.guidance", lambda a, b, c, st, sr: a + st * (b - c) + sr * (c - a))
    assert "swapped" in wrong("00.guidance", lambda a, b, c, st, sr: a + sr * (b - c) + st * (c - a))
    assert "plain classifier-free" in wrong("00.guidance", lambda a, b, c, st, sr: a + st * (b - a))
    assert "wants a function" in wrong("00.guidance", 3)


def test_params_per_block_matches_the_paper_total():
    message = right("03.params_per_block", lambda d: 6 * d * d + 4 * d)
    assert "25,207,040" in message
    assert "biases" in wrong("03.params_per_block", lambda d: 6 * d * d)
    assert "2d^2" in wrong("03.params_per_block", lambda d: 5 * d * d + 4 * d)
    assert "no bias" in wrong("03.params_per_block", lambda d: 7 * d * d + 5 * d)


def test_params_match_the_built_adapter():
    from dreamcache_lite.adapters import DreamCacheAdapters

    unet = make_unet()
    adapters = DreamCacheAdapters(unet, "paper")
    try:
        dims = [p.linear_cat.out_features for p in adapters.processors.values()]
        assert adapters.num_parameters() == sum(6 * d * d + 4 * d for d in dims)
    finally:
        adapters.uninstall()


def test_identity_noop_and_dropout():
    right("03.identity_noop", 0)
    right("03.identity_noop", 0.0)
    wrong("03.identity_noop", 1)
    right("03.reference_dropout", "B ")
    assert "dropped row runs" in wrong("03.reference_dropout", "a")
    assert "one letter" in wrong("03.reference_dropout", "d")


def test_top_token():
    attention = torch.rand(4, 64, 16).softmax(-1)
    right("05.top_token", lambda a, r, q: int(a[r, q].argmax()), attention=attention)
    assert "another batch row" in wrong("05.top_token", lambda a, r, q: int(a[1, q].argmax()),
                                        attention=attention)
    assert "one token index" in wrong("05.top_token", lambda a, r, q: a[r].argmax(-1), attention=attention)
    assert "another query" in wrong("05.top_token", lambda a, r, q: int(a[r, q + 1].argmax()), attention=attention)


def test_glyph_layer():
    right("05.glyph_layer", "b")
    assert "fewest" in wrong("05.glyph_layer", "a")
    assert "empty" in wrong("05.glyph_layer", "c")


def test_unfilled_placeholders_say_not_done(not_fast):
    for name, context in [("00.unet_calls", {"steps": 25}), ("03.identity_noop", {}), ("05.glyph_layer", {})]:
        ok, message = ex.verdict(name, ..., **context)
        assert ok is None and "not done yet" in message
