"""The exercises of notebook 03 (adapter training): each checker says what a wrong answer got wrong."""

from __future__ import annotations

import torch

from .engine import Wrong, as_number, call_learner, multiple_choice, register

exercise = register("03_adapter_training.py")


def _adapter_block_params(d: int) -> int:
    from ...adapters import DreamCacheProcessor
    from ...context import ReferenceContext
    with torch.device("meta"):
        proc = DreamCacheProcessor("x", "x", d, d, 1, ReferenceContext())
    return sum(p.numel() for p in proc.parameters())


@exercise("03.params_per_block", "params_per_block", "function")
def check_params_per_block(answer) -> str:
    """03: a function d -> the number of parameters of one adapter on a block of width d (cache width d)."""
    for d in (32, 64, 128, 320, 640, 1280):
        expected = _adapter_block_params(d)
        got = as_number(call_learner(answer, d), f"the parameter count for d={d}")
        if got == expected:
            continue
        known = {
            6 * d * d: "only the weight matrices: add the biases of to_out (d) and linear_cat (d) and the "
                       "LayerNorm's weight and bias (2d).",
            6 * d * d + 2 * d: "almost: two bias/scale vectors of size d are missing (to_out and linear_cat have a "
                               "bias, the LayerNorm has a weight *and* a bias).",
            5 * d * d + 4 * d: "linear_cat maps the concatenation [s; m] of width 2d to d: its weight is "
                               "2d x d = 2d^2.",
            7 * d * d + 5 * d: "to_q, to_k and to_v have no bias in diffusers' Attention (only to_out.0 has one).",
            4 * d * d + 2 * d: "you counted RefAttn (q, k, v, out) only: add linear_cat (2d^2 + d) and the "
                               "LayerNorm (2d).",
        }
        for value, why in known.items():
            if got == value:
                raise Wrong(f"d={d}: {got:,.0f} -- {why}")
        raise Wrong(f"d={d}: you say {got:,.0f}, the module has {expected:,}. Count: LayerNorm (weight, bias), "
                    "to_q/to_k/to_v (d x d, no bias), to_out (d x d + bias), linear_cat (2d -> d, + bias).")
    total = sum(_adapter_block_params(d) for d in (1280, 1280, 640, 640, 320))
    return (f"6d^2 + 4d: on SD 1.5/2.1's five paper blocks (d = 1280, 1280, 640, 640, 320) that is {total:,}, "
            "the paper's 25M.")


@exercise("03.identity_noop", "largest_change")
def check_identity_noop(answer) -> str:
    """03: the largest change |linear_cat([s; m]) - s| an identity-initialised adapter can make (a number)."""
    value = as_number(answer, "the largest change")
    if value == 0:
        return ("exactly 0: with W = [I | 0] and b = 0, linear_cat([s; m]) = I s + 0 m + 0 = s for *any* m, so the "
                "block computes x + s, the frozen model, bit for bit. Training can still start: the gradient "
                "of the zero block is d(loss)/d(out) times m^T, not zero.")
    if value == 1:
        raise Wrong("1 would mean the output changes by the size of m; but the m half of W is all zeros.")
    raise Wrong(f"{value:g}? Write linear_cat([s; m]) = W_s s + W_m m + b with W = [W_s | W_m] = [I | 0], b = 0: "
                "what is left of m, and what is W_s s?")


DROPOUT_CHOICES = {
    "a": "regularisation, like dropout in a classifier: it stops the adapters from overfitting to the reference",
    "b": "it gives reference guidance its 'without reference' term e(noref, .): the model is also asked to "
         "denoise with no reference, the unconditional side of the s_ref difference",
    "c": "it makes training faster: dropped rows skip the cache",
}


@exercise("03.reference_dropout", "dropout_answer")
def check_reference_dropout(answer) -> str:
    """03: what reference dropout is for (a/b/c)."""
    multiple_choice(answer, DROPOUT_CHOICES, mistakes={
        "a": "it does not regularise the adapters: a dropped row runs *without* them. Think about which "
             "guidance term needs a prediction without the reference.",
        "c": "the cache is computed for the whole batch anyway, and the row still runs the UNet; think "
             "about the guidance formula's e(noref, neg)."})
    return ("like caption dropout for text guidance, reference dropout is classifier-free guidance's trick for the "
            "reference. In this package the no-reference branch is the frozen backbone itself (adapters are exact "
            "no-ops without a cache), so dropped rows give the adapters no gradient: the unconditional term "
            "is right by construction, and dropout matters where that branch runs through trained weights.")
