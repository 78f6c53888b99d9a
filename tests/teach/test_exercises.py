"""The notebooks' exercise checkers: reference solutions pass, typical mistakes are explained."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import clusters, make_unet
from dreamcache_lite.teach import analysis as an
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
    right("03.reference_dropout", "C ")
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
    right("05.glyph_layer", "a")
    assert "fewest" in wrong("05.glyph_layer", "b")
    assert "empty" in wrong("05.glyph_layer", "c")


def test_unfilled_placeholders_say_not_done(not_fast):
    for name, context in [("00.unet_calls", {"steps": 25}), ("03.identity_noop", {}), ("05.glyph_layer", {})]:
        ok, message = ex.verdict(name, ..., **context)
        assert ok is None and "not done yet" in message


# -- notebooks 01 and 02 --------------------------------------------------------------------------
def verdict(exercise, answer, **context):
    return ex.verdict(exercise, answer, **context)


def test_fast_mode_switch(monkeypatch):
    for name in ("DREAMCACHE_FAST", "CI", "PYTEST_VERSION", "PYTEST_CURRENT_TEST"):
        monkeypatch.delenv(name, raising=False)
    assert not ex.fast_mode()
    monkeypatch.setenv("CI", "true")
    assert ex.fast_mode()
    monkeypatch.setenv("DREAMCACHE_FAST", "0")
    assert not ex.fast_mode()


def test_unfilled_placeholders(monkeypatch):
    monkeypatch.setenv("DREAMCACHE_FAST", "0")
    ok, message = verdict("01.cache_bytes", ...)
    assert ok is None and "not done yet" in message
    ok, message = verdict("01.token_counts", lambda resolution: ...)
    assert ok is None
    monkeypatch.setenv("DREAMCACHE_FAST", "1")      # CI: the reference solution is checked instead
    ok, message = verdict("01.cache_bytes", ...)
    assert ok is True and "reference solution" in message
    ok, _ = verdict("01.token_counts", lambda resolution: ...)
    assert ok is True


def test_cache_bytes_checker():
    assert verdict("01.cache_bytes", 13_639_680)[0] is True
    for wrong, words in ((6_062_080, "512 px"), (13_639_680 // 2, "values"), (2 * 13_639_680, "fp32"),
                         (14_544, "tokens"), (9_093_120, "area"), ("13 MB", "number"), (1e6, "recipe")):
        ok, message = verdict("01.cache_bytes", wrong)
        assert ok is False and words in message.lower(), (wrong, message)


def test_token_counts_checker():
    def hard_coded(resolution):
        return {"mid_block.attentions.0": 64, "up_blocks.1.attentions.1": 256, "up_blocks.2.attentions.0": 1024,
                "up_blocks.2.attentions.2": 1024, "up_blocks.3.attentions.1": 4096}

    def grids(resolution):
        side = resolution // 8
        return {name: (side // d, side // d) for name, d in zip(hard_coded(0), (8, 4, 2, 2, 1))}

    assert "hard-coding" in verdict("01.token_counts", hard_coded)[1]
    assert "grid" in verdict("01.token_counts", grids)[1]
    assert "dict" in verdict("01.token_counts", lambda r: [1, 2])[1]


def test_block_input_checker():
    unet = make_unet()
    noisy, text, layer = torch.randn(1, 4, 16, 16), torch.zeros(1, 16, 64), "down_blocks.1.attentions.0"
    context = dict(unet=unet, noisy=noisy, timestep=1, text=text, layer=layer)

    def run_with(hook_kind, keep_hook=False, flatten=True):
        def answer(unet, noisy, timestep, text, layer):
            seen = {}
            module = dict(unet.named_modules())[layer]
            if hook_kind == "pre":
                handle = module.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0]))
            else:
                handle = module.register_forward_hook(lambda m, args, out: seen.__setitem__("x", out[0]))
            with torch.no_grad():
                unet(noisy, timestep, encoder_hidden_states=text)
            if not keep_hook:
                handle.remove()
            return seen["x"].flatten(2).transpose(1, 2) if flatten else seen["x"]
        return answer

    assert verdict("01.block_input", run_with("pre"), **context)[0] is True
    assert "outputs" in verdict("01.block_input", run_with("post"), **context)[1]
    assert "feature map" in verdict("01.block_input", run_with("pre", flatten=False), **context)[1]
    ok, message = verdict("01.block_input", run_with("pre", keep_hook=True), **context)
    assert ok is False and "still registered" in message
    assert not any(m._forward_pre_hooks for m in unet.modules())     # cleaned up for the learner


def test_retrieval_checker():
    dist = an.distance_matrix(clusters(4, 5, spread=2.0)[0])
    labels = np.repeat(np.arange(4), 5)
    context = dict(dist=dist, labels=labels)

    def with_self(d, y):
        return float(np.mean(y[d.argmin(1)] == y))

    def farthest(d, y):
        d = d.copy()
        np.fill_diagonal(d, -np.inf)
        return float(np.mean(y[d.argmax(1)] == y))

    def count(d, y):
        d = d.copy()
        np.fill_diagonal(d, np.inf)
        return int(np.sum(y[d.argmin(1)] == y))

    assert "itself" in verdict("02.top1_retrieval", with_self, **context)[1]
    assert "farthest" in verdict("02.top1_retrieval", farthest, **context)[1]
    assert "fraction" in verdict("02.top1_retrieval", count, **context)[1]
    assert verdict("02.top1_retrieval", lambda d, y: an.top1_from_distances(d, y), **context)[0] is True


def test_trend_and_guess_checkers():
    falling = np.array([[0.9, 0.7, 0.4], [0.8, 0.6, 0.3]])
    assert verdict("02.timestep_trend", "a", scores=falling, timesteps=(1, 300, 600))[0] is True
    ok, message = verdict("02.timestep_trend", "b", scores=falling, timesteps=(1, 300, 600))
    assert ok is False and "a)" in message
    assert verdict("02.timestep_trend", "c", scores=falling * 0 + 0.5, timesteps=(1, 300, 600))[0] is True
    assert verdict("02.timestep_trend", "d", scores=falling, timesteps=(1, 300, 600))[0] is False
    scores = {"mid_block.attentions.0": 0.9, "down_blocks.0.attentions.0": 0.5}
    assert verdict("02.layer_guess", "mid_block.attentions.0", scores=scores)[0] is True
    assert "not one of" in verdict("02.layer_guess", "mid", scores=scores)[1]


def test_adapter_forward_names_the_mistake():
    from dreamcache_lite.teach.exercises import nb03

    solution = ex.engine.load_solution("03.adapter_forward")
    assert "DreamCacheProcessor's computation" in right("03.adapter_forward", solution)
    for mistake, why in nb03.ADAPTER_MISTAKES[:4] + nb03.ADAPTER_MISTAKES[6:7]:
        def answer(x, s, cache, w, heads, mistake=mistake):
            return nb03._adapter(x, s, cache, w, heads, **mistake)
        assert wrong("03.adapter_forward", answer).endswith(why)


def test_adapter_forward_agrees_with_the_package_processor():
    """The checker's reference is the processor itself: same weights, same output."""
    from dreamcache_lite.teach.exercises import nb03

    x, s, cache, weights, heads = nb03._adapter_case(0)
    from dreamcache_lite.adapters import DreamCacheProcessor
    from dreamcache_lite.context import ReferenceContext

    proc = DreamCacheProcessor("b", "l", x.shape[-1], cache.shape[-1], heads, ReferenceContext())
    proc.load_state_dict(weights)
    with torch.no_grad():
        m = proc.attn_mem(proc.norm_mem(x), *proc.attn_mem.keys_values(cache))
        package = proc.linear_cat(torch.cat([s, m], -1))
    assert torch.allclose(package, nb03._adapter(x, s, cache, weights, heads), atol=1e-5)


def test_training_loss_names_the_mistake():
    from dreamcache_lite.teach.exercises import nb03

    assert "eps-prediction loss" in right("03.training_loss", ex.engine.load_solution("03.training_loss"))
    assert "predicts the *noise*" in wrong("03.training_loss", lambda p, x0, n, t, sch, drop: F.mse_loss(
        p(sch.add_noise(x0, n, t), t, ~drop), x0))
    assert "inverted" in wrong("03.training_loss", lambda p, x0, n, t, sch, drop: F.mse_loss(
        p(sch.add_noise(x0, n, t), t, drop), n))
    assert "not latents + noise" in wrong("03.training_loss", lambda p, x0, n, t, sch, drop: F.mse_loss(
        p(x0 + n, t, ~drop), n))
    assert "should be a number" in wrong("03.training_loss", lambda *a: "0.1")
    assert len(nb03.LOSS_MISTAKES) == 7


def test_guided_step_names_the_mistake():
    assert "6-step DDIM loop" in right("04.guided_step", ex.engine.load_solution("04.guided_step"))

    def cfg(branches, x, t, scheduler, st, sr):
        e0, e1, _ = branches(x, t)
        return scheduler.step(e0 + st * (e1 - e0), t, x).prev_sample

    def swapped(branches, x, t, scheduler, st, sr):
        e0, e1, e2 = branches(x, t)
        return scheduler.step(e0 + sr * (e1 - e2) + st * (e2 - e0), t, x).prev_sample

    def no_step(branches, x, t, scheduler, st, sr):
        e0, e1, e2 = branches(x, t)
        return e0 + st * (e1 - e2) + sr * (e2 - e0)

    assert "plain classifier-free guidance" in wrong("04.guided_step", cfg)
    assert "swapped" in wrong("04.guided_step", swapped)
    assert ".prev_sample" in wrong("04.guided_step", no_step)


def test_unfilled_method_exercises_are_not_done_yet(not_fast):
    def unfilled(*args):
        raise NotImplementedError

    for name in ("03.adapter_forward", "03.training_loss", "04.guided_step"):
        assert ex.verdict(name, unfilled)[0] is None


def test_fixed_multiple_choice_answers_are_not_given_away_by_length_or_position():
    from dreamcache_lite.teach.exercises import nb03, nb05

    letters = []
    for name, choices in (("03.reference_dropout", nb03.DROPOUT_CHOICES), ("05.glyph_layer", nb05.GLYPH_CHOICES)):
        answer = ex.engine.load_solution(name)
        longest = max(choices, key=lambda k: len(choices[k]))
        assert answer != longest, f"{name}: the answer is the longest option"
        letters.append(answer)
    assert len(set(letters)) == len(letters), "every fixed answer sits in the same position"


def test_require_raises_the_checkers_message():
    with pytest.raises(AssertionError, match="plain classifier-free"):
        ex.require("00.guidance", lambda a, b, c, st, sr: a + st * (b - a))
    with pytest.raises(AssertionError, match="not done yet"):
        ex.require("00.guidance", ...)
    ex.require("00.guidance", lambda a, b, c, st, sr: a + st * (b - c) + sr * (c - a))
