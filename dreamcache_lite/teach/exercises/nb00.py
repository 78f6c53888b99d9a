"""The exercises of notebook 00 (the quick tour): each checker says what a wrong answer got wrong."""

from __future__ import annotations

import torch

from .engine import Wrong, as_number, call_learner, register

exercise = register("00_quick_tour.py")


@exercise("00.unet_calls", "unet_calls")
def check_unet_calls(answer, steps: int) -> str:
    """00: how many UNet forward calls DreamCache makes to cache one reference and generate at `steps` steps."""
    value, expected = as_number(answer, "the number of UNet calls"), 1 + steps
    if value == expected:
        return (f"1 call to cache the reference + {steps} denoising calls, each one batched call over the three "
                "guidance branches. The cache is reused at every step (and for every later prompt).")
    known = {
        3 * steps: "the three guidance branches run as rows of *one* batched call per step; and caching costs "
                   "one call.",
        3 * steps + 1: "right about the cache, but the three branches are rows of one batched call per step.",
        steps: "that is the denoising loop only: caching the reference is one more UNet call.",
        2 * steps: "two calls per step is the reference-only baseline (a reference pass every step), not DreamCache.",
        2 * steps + 1: "the branches are batched: one call per step, plus one call to cache the reference.",
    }
    if value in known:
        raise Wrong(known[value])
    raise Wrong(f"not quite: count the cache pass (how many times is the reference run?) and the calls per "
                f"denoising step (the branches are batched) over {steps} steps.")


@exercise("00.guidance", "guided_eps", "function")
def check_guidance(answer) -> str:
    """00: a function (e_noref_neg, e_ref_prompt, e_ref_neg, s_txt, s_ref) -> guided noise prediction."""
    gen = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(2, 4, 3, 3, generator=gen) for _ in range(3))
    s_txt, s_ref = 5.0, 0.7
    expected = a + s_txt * (b - c) + s_ref * (c - a)
    got = call_learner(answer, a.clone(), b.clone(), c.clone(), s_txt, s_ref)
    if not isinstance(got, torch.Tensor):
        raise Wrong(f"return a tensor (the guided noise prediction), got {type(got).__name__}")
    if got.shape != expected.shape:
        raise Wrong(f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}: combine the three predictions "
                    "element-wise")
    if torch.allclose(got, expected, atol=1e-5):
        return ("eps = e(noref,neg) + s_txt (e(ref,p) - e(ref,neg)) + s_ref (e(ref,neg) - e(noref,neg)): the text "
                "term is measured *with* the reference on both sides, the reference term *without* the prompt.")
    if torch.allclose(got, a + s_ref * (b - c) + s_txt * (c - a), atol=1e-5):
        raise Wrong("the two scales are swapped: s_txt multiplies the prompt's effect (ref,prompt minus ref,neg).")
    if torch.allclose(got, a + s_txt * (b - a), atol=1e-5):
        raise Wrong("that is plain classifier-free guidance: the reference term (ref,neg minus noref,neg) is missing, "
                    "and the text difference should be taken with the reference on both sides.")
    if torch.allclose(got, c + s_txt * (b - c) + s_ref * (c - a), atol=1e-5):
        raise Wrong("start from the *unconditional* prediction e(noref, neg), not e(ref, neg).")
    if torch.allclose(got, a + s_txt * (c - b) + s_ref * (a - c), atol=1e-5):
        raise Wrong("both differences point the wrong way: guidance pushes *towards* the condition (cond - uncond).")
    raise Wrong("not the paper's compositional guidance: start at e(noref,neg); add s_txt times "
                "(e(ref,p) - e(ref,neg)) and s_ref times (e(ref,neg) - e(noref,neg)).")
