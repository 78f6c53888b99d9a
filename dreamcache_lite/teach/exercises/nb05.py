"""The exercises of notebook 05 (feature visualisation): each checker says what a wrong answer got wrong."""

from __future__ import annotations

import torch

from .engine import Wrong, as_number, call_learner, multiple_choice, register

exercise = register("05_feature_visualisation.py")


@exercise("05.top_token", "top_token", "function")
def check_top_token(answer, attention) -> str:
    """05: a function (attention (rows, queries, tokens), row, query) -> the most-attended cache token index."""
    toy = torch.zeros(2, 3, 5)
    toy[0, 1, 4], toy[0, 1, 2], toy[1, 1, 0], toy[0, 2, 1] = 0.7, 0.2, 0.9, 0.8
    got = call_learner(answer, toy.clone(), 0, 1)
    if isinstance(got, torch.Tensor) and got.numel() != 1:
        raise Wrong(f"return one token index (an int), got a tensor of shape {tuple(got.shape)}: pick row and "
                    "query first, then argmax over the cache tokens.")
    got = as_number(got, "the token index")
    if got == 0:
        raise Wrong("you read another batch row: index the row first (attention[row]).")
    if got == 1 and toy[0, 2].argmax() == 1:
        raise Wrong("that is the answer for another query: attention[row, query] is the query's row of weights.")
    if got != 4:
        raise Wrong(f"on a toy map where row 0, query 1 puts 0.7 on token 4, you return {got:g}: take the argmax "
                    "over the last axis (the cache tokens) of attention[row, query].")
    attention = torch.as_tensor(attention)
    rows, queries, _ = attention.shape
    for row, query in ((0, 0), (rows - 1, queries // 2), (0, queries - 1)):
        expected = int(attention[row, query].argmax())
        got = as_number(call_learner(answer, attention.clone(), row, query), "the token index")
        if got != expected:
            raise Wrong(f"right on the toy map but row {row}, query {query} of the notebook's map gives {got:g}, "
                        f"expected {expected}.")
    return "argmax over the cache tokens of attention[row, query]; divmod(index, grid width) gives its (y, x)."


GLYPH_CHOICES = {  # similar lengths: the answer is not the longest option
    "a": "their 4 px tokens split each 7.6 px glyph cell in two; one 4x4-grid token spans two cells",
    "b": "they hold the most channels of any layer, so each of their tokens can store more fine detail",
    "c": "they come last in the decoder, so they read the text prompt better than all the earlier layers",
}


@exercise("05.glyph_layer", "glyph_answer")
def check_glyph_layer(answer) -> str:
    """05: why the 16x16 layers carry the glyph (a/b/c)."""
    multiple_choice(answer, GLYPH_CHOICES, mistakes={
        "b": "look at the channels again: the 16x16 layers have the *fewest* (32 on the tiny backbone, "
             "320/640 on SD). What they have most of is tokens.",
        "c": "the cache is computed with the *empty* prompt; no text is involved. Think about what one "
             "token covers in pixels."})
    return ("resolution: the 64 px image becomes a 16x16 latent (4 px per token), and a glyph cell is 0.4 x 19 = "
            "7.6 px. Coarser layers summarise the subject (class, colour); fine layers keep where each cell is.")
