"""Does a set of adapters use its reference? The reference gain per timestep band and the attention entropy."""

import pytest
import torch

from conftest import random_tiny_pipeline
from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.datasets import CopyPairs
from dreamcache_lite.diagnostics import BANDS, attention_entropy, reference_gain
from dreamcache_lite.lab.pairs import ToyPairs


def test_reference_gain_is_zero_for_identity_adapters_and_moves_once_they_use_the_reference():
    pipe = random_tiny_pipeline()
    adapters = DreamCacheAdapters(pipe.unet, "paper")  # identity init: exact no-op
    gain = reference_gain(pipe, adapters, ToyPairs(), size=4)
    assert list(gain) == [f"{lo}-{hi}" for lo, hi in BANDS]
    assert all(g["own"] == g["none"] == g["shuffled"] and g["gain"] == 0 == g["subject_gain"] for g in gain.values())
    adapters.uninstall()
    adapters = DreamCacheAdapters(pipe.unet, "paper", init="paper")
    for source in (ToyPairs(), CopyPairs(ToyPairs())):
        gain = reference_gain(pipe, adapters, source, size=4)
        assert all(g["own"] != g["none"] and g["own"] != g["shuffled"] and g["subject_gain"] != 0
                   for g in gain.values())


def test_attention_entropy_is_one_for_uniform_attention_and_lower_when_sharp():
    pipe = random_tiny_pipeline()
    adapters = DreamCacheAdapters(pipe.unet, "paper", init="paper")
    for proc in adapters.processors.values():
        torch.nn.init.zeros_(proc.attn_mem.to_q.weight)  # every logit 0: uniform attention
    flat = attention_entropy(pipe, adapters, ToyPairs(), size=2)
    assert set(flat) == set(adapters.processors) and all(v == pytest.approx(1, abs=1e-5) for v in flat.values())
    adapters.uninstall()
    sharp = DreamCacheAdapters(pipe.unet, "paper", init="paper", attention="cosine")
    assert max(attention_entropy(pipe, sharp, ToyPairs(), size=2).values()) < 0.999


def test_subject_weights_are_the_subject_share_of_each_latent_pixel():
    from dreamcache_lite.diagnostics import _subject_weights

    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :2] = 1  # the top-left 4x2 pixels: latent pixel (0, 0) full, (1, 0) full, (0, 1) empty
    weights = _subject_weights(mask, torch.zeros(1, 3, 4, 4))
    assert weights.shape == (1, 3, 4, 4)
    assert weights[0, :, 0, 0].eq(1).all() and weights[0, :, 1, 0].eq(1).all() and weights[0, :, 0, 1].eq(0).all()


def test_attention_accuracy_scores_looking_at_the_true_place():
    """Copies (reference = target): a hard positional read looks at the true cell of every subject
    query; uniform attention does not; pairs that do not know the truth get no score."""
    import math

    from dreamcache_lite.diagnostics import attention_accuracy

    pipe = random_tiny_pipeline()
    copies = CopyPairs(ToyPairs())
    exact = DreamCacheAdapters(pipe.unet, "paper", init="paper", attention="positional")
    for proc in exact.processors.values():
        proc.attn_mem.log_position_weight.data.fill_(math.log(1e6))  # query i reads cached token i
    scores = attention_accuracy(pipe, exact, copies, size=2)
    assert set(scores) == set(exact.processors)
    assert all(s["near"] == 1.0 and s["on_subject"] == pytest.approx(1.0) for s in scores.values())
    exact.uninstall()
    uniform = DreamCacheAdapters(pipe.unet, "paper", init="paper")
    for proc in uniform.processors.values():
        torch.nn.init.zeros_(proc.attn_mem.to_q.weight)
    assert max(s["near"] for s in attention_accuracy(pipe, uniform, copies, size=2).values()) < 0.5

    class Unknown:  # a folder dataset: no correspondence
        def batch(self, step, size):
            return {k: v for k, v in ToyPairs().batch(step, size).items() if k != "correspondence"}

    def no_unet_pass(*args, **kwargs):
        raise AssertionError("the UNet ran although the pairs cannot be scored")

    pipe.unet.forward = no_unet_pass
    assert attention_accuracy(pipe, uniform, Unknown(), size=2) is None
