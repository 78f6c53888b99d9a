"""Self-check cells for the notebooks' exercises: they say what is wrong in plain words.

In a notebook an exercise is a placeholder the learner fills in, then one call:

    answer = ...  # your code
    check("01.cache_bytes", answer)

- a right answer prints a tick;
- a wrong one prints what is wrong (never raises, so the notebook keeps running);
- an unfilled placeholder (`...`, or a function that returns `...` or raises NotImplementedError)
  prints a friendly "not done yet" -- except in fast mode (CI), where the reference solution from
  `notebooks/solutions/` is checked instead, so CI tests every checker against its solution and
  fails loudly if they disagree.

`evaluate` returns the verdict and the message instead of printing (for tests).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


def fast_mode() -> bool:
    """True in CI and test runs: env DREAMCACHE_FAST=1, or CI set, or running under pytest (nbval).

    DREAMCACHE_FAST=0 forces the full mode everywhere.
    """
    flag = os.environ.get("DREAMCACHE_FAST", "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    if flag in ("1", "true", "yes", "on"):
        return True
    return bool(os.environ.get("CI") or os.environ.get("PYTEST_VERSION") or os.environ.get("PYTEST_CURRENT_TEST"))


class Wrong(Exception):
    """Raised by a checker with a plain-words explanation of what is wrong."""


class Unfilled(Exception):
    """The learner has not filled the placeholder in yet."""


@dataclass(frozen=True)
class Exercise:
    checker: Callable          # checker(answer, **context) -> success message, or raises Wrong
    solution_file: str         # in notebooks/solutions/
    solution_name: str
    kind: str = "value"        # "value": a solution that is callable gets called with the context


def _call(fn, *args, **kwargs):
    """Call the learner's function; `...` returned or NotImplementedError mean "not done yet"."""
    if not callable(fn):
        raise Wrong(f"this exercise wants a function, got {type(fn).__name__}")
    try:
        result = fn(*args, **kwargs)
    except NotImplementedError as err:
        raise Unfilled from err
    if result is Ellipsis:
        raise Unfilled
    return result


def _number(answer, what: str) -> float:
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, (bool, np.bool_)) or not isinstance(answer, (int, float, np.integer, np.floating)):
        raise Wrong(f"{what} should be a number, got {type(answer).__name__} {answer!r}")
    return float(answer)


def _letter(answer, choices: dict) -> str:
    """The lower-cased letter of a multiple-choice answer; Wrong (listing the choices) when it is none of them."""
    if not isinstance(answer, str) or answer.strip().lower() not in choices:
        raise Wrong(f"answer with one letter: {'; '.join(f'{k}) {v}' for k, v in choices.items())}")
    return answer.strip().lower()


# -- notebook 01 -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _report(arch: str, resolution: int) -> dict:
    from .report import architecture_report
    return architecture_report(arch, resolution)


def check_cache_bytes(answer) -> str:
    """01: the fp16 cache of SD 1.5 (paper preset) at 768 px, in bytes."""
    report, at512 = _report("sd15", 768), _report("sd15", 512)
    expected, value = report["cache_bytes_fp16"], _number(answer, "the cache size")
    if value == expected:
        return (f"{expected:,} bytes ({expected / 2**20:.1f} MiB): {report['cache_tokens_total']:,} tokens, 2.25x "
                "the 512 px cache, because tokens grow with the image *area*.")
    values, tokens = expected // 2, report["cache_tokens_total"]
    known = {
        values: "that is the number of cached *values*; fp16 stores each value in 2 bytes.",
        2 * expected: "that is the fp32 size (4 bytes per value); the cache is stored in fp16, 2 bytes.",
        tokens: "that is the number of *tokens*; each token holds C values (1280, 1280, 640, 640, 320).",
        2 * tokens: "that counts 2 bytes per token, but each token is a vector of C channels.",
        at512["cache_bytes_fp16"]: "that is the 512 px size; at 768 px the latent is 96x96, not 64x64.",
        at512["cache_bytes_fp16"] * 1.5: "you scaled the 512 px size by 768/512 = 1.5, but the token count "
                                         "grows with the area: (768/512)^2 = 2.25.",
    }
    for wrong_value, why in known.items():
        if abs(value - wrong_value) < 0.5:
            raise Wrong(why)
    if abs(value - expected) / expected < 0.02:
        raise Wrong("close, but give the exact number of bytes (an integer), not a rounded one.")
    raise Wrong(f"not quite ({value:,.0f} is {value / expected:.2f}x the right size). Recipe: latent side = "
                "768 / 8; each paper layer's grid is that side divided by 2 per UNet level below full "
                "resolution (mid 8, up_blocks.1 4, up_blocks.2 2, up_blocks.3 1); tokens = h*w; "
                "bytes = sum(tokens * channels) * 2.")


def check_token_counts(answer) -> str:
    """01: a function resolution -> {layer: tokens} for SD 1.5's paper layers."""
    for resolution in (512, 768, 256, 1024):
        report = _report("sd15", resolution)
        expected = dict(zip(report["layers"], report["cache_tokens"]))
        got = _call(answer, resolution)
        if not isinstance(got, dict):
            raise Wrong(f"return a dict {{layer name: number of tokens}}, got {type(got).__name__}")
        if set(got) != set(expected):
            raise Wrong(f"the keys should be the five paper layers {list(expected)}; missing "
                        f"{sorted(set(expected) - set(got))}, unexpected {sorted(set(got) - set(expected))}")
        for name, tokens in expected.items():
            value = got[name]
            if isinstance(value, (tuple, list)):
                raise Wrong(f"{name}: you returned the grid {tuple(value)}; the token count is h * w.")
            value = _number(value, f"the token count of {name}")
            if value == tokens:
                continue
            side = int(round(tokens ** 0.5))
            if value == side:
                raise Wrong(f"{name} at {resolution} px: {value:.0f} is the grid *side*; tokens = h * w.")
            if value == (resolution // 8) ** 2:
                raise Wrong(f"{name} at {resolution} px: that is the full latent grid; deeper UNet levels "
                            "are downsampled 2x per level (mid 8x, up_blocks.1 4x, up_blocks.2 2x).")
            if resolution != 512 and value == dict(zip(_report("sd15", 512)["layers"],
                                                       _report("sd15", 512)["cache_tokens"]))[name]:
                raise Wrong(f"right at 512 px but not at {resolution} px: derive the grids from `resolution` "
                            "instead of hard-coding the 512 px ones.")
            raise Wrong(f"{name} at {resolution} px: you say {value:.0f} tokens, the UNet makes "
                        f"{tokens} ({side}x{side}).")
    return "your formula matches the UNet at 256, 512, 768 and 1024 px."


def _hooked_modules(unet) -> list[str]:
    return [name for name, m in unet.named_modules() if m._forward_pre_hooks or m._forward_hooks]


def check_block_input(answer, unet, noisy, timestep, text, layer) -> str:
    """01: a function (unet, noisy, timestep, text, layer) -> that layer's input as tokens (B, H*W, C)."""
    from .cache import capture_block_inputs

    before = set(_hooked_modules(unet))
    got = _call(answer, unet, noisy, timestep, text, layer)
    left = sorted(set(_hooked_modules(unet)) - before)
    if left:
        for name in left:  # clean up for the learner, then explain
            module = dict(unet.named_modules())[name]
            module._forward_pre_hooks.clear()
            module._forward_hooks.clear()
        raise Wrong(f"your hook is still registered on {left} after the function returned (removed it for you "
                    "now): call handle.remove(), ideally in a `finally:` or use `with capture_block_inputs(...)`.")
    if not isinstance(got, torch.Tensor):
        raise Wrong(f"return a torch.Tensor of tokens, got {type(got).__name__}")
    modules = dict(unet.named_modules())
    outputs = {}
    handle = modules[layer].register_forward_hook(lambda m, a, out: outputs.__setitem__("out", out[0]))
    try:
        with torch.no_grad(), capture_block_inputs(unet, [i for i, _ in _transformer_names(unet)]) as inputs:
            unet(noisy, timestep, encoder_hidden_states=text)
    finally:
        handle.remove()
    raw = inputs[layer].float().cpu()
    expected = raw.flatten(2).transpose(1, 2)
    got = got.detach().to("cpu", torch.float32)

    def close(a, b):
        return a.shape == b.shape and torch.allclose(a, b, atol=1e-4, rtol=1e-4)

    if close(got, expected):
        return f"{layer}: {expected.shape[1]} tokens of {expected.shape[2]} channels, straight from a pre-hook."
    if close(got, raw):
        raise Wrong(f"right values, but still a feature map {tuple(raw.shape)}: flatten to tokens "
                    "(B, H*W, C) with .flatten(2).transpose(1, 2).")
    if close(got, raw.flatten(2)):
        raise Wrong("the axes are (B, C, H*W): tokens go (B, H*W, C) -- add .transpose(1, 2).")
    if got.shape != expected.shape:
        same = [n for n, t in inputs.items() if t.flatten(2).transpose(1, 2).shape == got.shape]
        hint = f" (that is the shape of {same[0]}'s input: did you hook another layer?)" if same else ""
        raise Wrong(f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}{hint}")
    if "out" in outputs and close(got, outputs["out"].flatten(2).transpose(1, 2).float().cpu()):
        raise Wrong("those are the block's *outputs*: a forward pre-hook (register_forward_pre_hook) sees the input.")
    for name, tensor in inputs.items():
        if name != layer and close(got, tensor.flatten(2).transpose(1, 2).float().cpu()):
            raise Wrong(f"those are the inputs of {name}, not of {layer}.")
    raise Wrong("right shape, wrong values: run the UNet on `noisy` at `timestep` with the `text` given, "
                "and keep args[0] of the hooked module.")


def _transformer_names(unet):
    from .layers import list_transformers
    return [(i.name, i) for i in list_transformers(unet)]


# -- notebook 02 -----------------------------------------------------------------------------------
def check_layer_guess(answer, scores: dict) -> str:
    """02: a prediction (a layer name) of which layer carries most identity; scores: layer -> accuracy."""
    if not isinstance(answer, str):
        raise Wrong(f"give a layer name (a string), one of {list(scores)}")
    if answer not in scores:
        raise Wrong(f"{answer!r} is not one of the sweep's layers: {list(scores)}")
    ranking = sorted(scores, key=scores.get, reverse=True)
    rank, best = ranking.index(answer) + 1, ranking[0]
    verdict = "spot on" if rank == 1 else ("close" if rank <= 3 else "a surprise, then")
    return (f"{answer} ranks {rank} of {len(ranking)} (accuracy {scores[answer]:.2f}; best {best} "
            f"{scores[best]:.2f}): {verdict}.")


def check_top1_retrieval(answer, dist, labels) -> str:
    """02: a function (dist, labels) -> top-1 retrieval accuracy from a distance matrix."""
    from .analysis import top1_from_distances

    def run(d, y):
        value = _call(answer, np.array(d, dtype=np.float64), np.array(y))
        return _number(value, "the retrieval accuracy")

    # four points on a line, labels [0, 0, 1, 1]; nearest others: 1, 1.8, 1, 1.8 -> two hits of four
    pos = np.array([0.0, 1.0, 1.8, 4.0])
    toy_dist, toy_labels = np.abs(pos[:, None] - pos[None]), np.array([0, 0, 1, 1])
    right = top1_from_distances(toy_dist, toy_labels)  # 0.5 (self-matches: 1.0, farthest: 0.25)
    got = run(toy_dist, toy_labels)
    if got == 1.0:
        raise Wrong("each sample found *itself* (distance 0 on the diagonal): exclude it, e.g. set the "
                    "diagonal to +inf before taking the nearest neighbour.")
    if got == 0.25:
        raise Wrong("you took the *farthest* neighbour: retrieval picks the smallest distance (argmin).")
    if got == right * len(toy_labels):
        raise Wrong("return a fraction between 0 and 1 (mean of hits), not the number of hits.")
    if not np.isclose(got, right):
        raise Wrong(f"on 4 points at 0, 1, 1.8, 4 with labels [0, 0, 1, 1] your function gives {got}; the "
                    f"nearest *other* points are 1, 1.8, 1, 1.8 (2 hits of 4), so the answer is {right}.")
    dist = np.asarray(dist, np.float64)
    expected = top1_from_distances(dist, labels)
    got = run(dist, labels)
    if not np.isclose(got, expected, atol=1e-9):
        raise Wrong(f"right on the toy case but {got:.4f} on the notebook's features, expected {expected:.4f}: "
                    "did you change `dist` in place, or break ties differently?")
    return f"top-1 retrieval {expected:.3f} (chance is about {_retrieval_chance(labels):.3f})."


def _retrieval_chance(labels) -> float:
    from .analysis import chance_level
    return chance_level(labels, "retrieval")


TREND_CHOICES = {
    "a": "identity *drops* as the caching timestep grows",
    "b": "identity *rises* as the caching timestep grows",
    "c": "the caching timestep barely matters (changes under 0.03)",
}


def measured_trend(scores: np.ndarray, timesteps) -> tuple[str, np.ndarray]:
    """Which TREND_CHOICES letter the sweep supports: mean over layers, last vs first timestep."""
    mean = np.asarray(scores).mean(0)
    change = mean[np.argmax(timesteps)] - mean[np.argmin(timesteps)]
    return ("a" if change < -0.03 else "b" if change > 0.03 else "c"), mean


def check_timestep_trend(answer, scores, timesteps) -> str:
    """02: which statement (a/b/c) matches *this* sweep (scores: layers x timesteps)."""
    answer = _letter(answer, TREND_CHOICES)
    letter, mean = measured_trend(scores, timesteps)
    row = ", ".join(f"t={t}: {m:.2f}" for t, m in zip(timesteps, mean))
    if answer != letter:
        raise Wrong(f"look at the heatmap's columns again: averaged over layers the sweep gives {row}, "
                    f"which says {letter}) {TREND_CHOICES[letter]}.")
    why = {"a": "noise at larger t hides exactly the fine detail (exact colour, pattern, glyph) that makes "
                "an identity; the UNet's features then describe a blurrier subject -- why the paper caches at t = 1.",
           "b": "unexpected for a trained backbone; the paper chose t = 1. Check the folds' spread before "
                "believing it.",
           "c": "over this range the noise is not yet strong enough to erase what the probe reads."}[letter]
    return f"averaged over layers: {row}. {why}"


EXERCISES = {
    "01.cache_bytes": Exercise(check_cache_bytes, "01_feature_caching.py", "cache_bytes_768"),
    "01.token_counts": Exercise(check_token_counts, "01_feature_caching.py", "sd15_token_counts", "function"),
    "01.block_input": Exercise(check_block_input, "01_feature_caching.py", "block_input_tokens", "function"),
    "02.layer_guess": Exercise(check_layer_guess, "02_layer_timestep_selection.py", "layer_guess"),
    "02.top1_retrieval": Exercise(check_top1_retrieval, "02_layer_timestep_selection.py", "top1_retrieval",
                                  "function"),
    "02.timestep_trend": Exercise(check_timestep_trend, "02_layer_timestep_selection.py", "timestep_trend"),
}


def solutions_dir() -> Path:
    """`notebooks/solutions/`: next to the running notebook, or in the repository of this package."""
    for candidate in (Path.cwd() / "solutions", Path.cwd() / "notebooks" / "solutions",
                      REPO / "notebooks" / "solutions"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("cannot find notebooks/solutions/ (run the notebook from the repository)")


def load_solution(exercise: str, **context):
    """The reference answer of `exercise` (a value, or the function for function exercises)."""
    spec = EXERCISES[exercise]
    path = solutions_dir() / spec.solution_file
    module_spec = importlib.util.spec_from_file_location(f"solutions_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    solution = getattr(module, spec.solution_name)
    if spec.kind == "value" and callable(solution):
        solution = solution(**context)
    return solution


def evaluate(exercise: str, answer, **context) -> tuple[bool | None, str]:
    """(verdict, message) for the learner's `answer`: True right, False wrong, None not done yet.

    An unfilled placeholder in fast mode is replaced by the reference solution; if that fails its
    own checker, AssertionError (CI must notice a checker and its solution disagreeing).
    """
    if exercise not in EXERCISES:
        raise KeyError(f"unknown exercise {exercise!r}; known: {', '.join(EXERCISES)}")
    spec = EXERCISES[exercise]
    try:
        if answer is Ellipsis:
            raise Unfilled
        return True, f"✓ Exercise {exercise}: {spec.checker(answer, **context)}"
    except Wrong as wrong:
        return False, f"✗ Exercise {exercise}: {wrong}"
    except Unfilled:
        pass
    if not fast_mode():
        return None, (f"✎ Exercise {exercise} is not done yet: replace the `...` with your answer and run this "
                      f"cell again. (Stuck? notebooks/solutions/{spec.solution_file} has a reference solution.)")
    solution = load_solution(exercise, **context)
    try:
        message = spec.checker(solution, **context)
    except (Wrong, Unfilled) as err:
        raise AssertionError(f"the reference solution of exercise {exercise} fails its own checker: "
                             f"{err or 'not filled in'}") from err
    return True, f"✓ Exercise {exercise} [fast mode: placeholder left empty, checked the reference solution]: {message}"


def check(exercise: str, answer, **context) -> None:
    """The notebooks' self-check: print whether `answer` is right, and if not, what is wrong."""
    print(evaluate(exercise, answer, **context)[1])


# -- notebook 00 -----------------------------------------------------------------------------------
def check_unet_calls(answer, steps: int) -> str:
    """00: how many UNet forward calls DreamCache makes to cache one reference and generate at `steps` steps."""
    value, expected = _number(answer, "the number of UNet calls"), 1 + steps
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


def check_guidance(answer) -> str:
    """00: a function (e_noref_neg, e_ref_prompt, e_ref_neg, s_txt, s_ref) -> guided noise prediction."""
    gen = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(2, 4, 3, 3, generator=gen) for _ in range(3))
    s_txt, s_ref = 5.0, 0.7
    expected = a + s_txt * (b - c) + s_ref * (c - a)
    got = _call(answer, a.clone(), b.clone(), c.clone(), s_txt, s_ref)
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


# -- notebook 03 -----------------------------------------------------------------------------------
def _adapter_block_params(d: int) -> int:
    from .adapters import DreamCacheProcessor, ReferenceContext
    with torch.device("meta"):
        proc = DreamCacheProcessor("x", "x", d, d, 1, ReferenceContext())
    return sum(p.numel() for p in proc.parameters())


def check_params_per_block(answer) -> str:
    """03: a function d -> the number of parameters of one adapter on a block of width d (cache width d)."""
    for d in (32, 64, 128, 320, 640, 1280):
        expected = _adapter_block_params(d)
        got = _number(_call(answer, d), f"the parameter count for d={d}")
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


def check_identity_noop(answer) -> str:
    """03: the largest change |linear_cat([s; m]) - s| an identity-initialised adapter can make (a number)."""
    value = _number(answer, "the largest change")
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


def check_reference_dropout(answer) -> str:
    """03: what reference dropout is for (a/b/c)."""
    letter = _letter(answer, DROPOUT_CHOICES)
    if letter == "a":
        raise Wrong("it does not regularise the adapters: a dropped row runs *without* them. Think about which "
                    "guidance term needs a prediction without the reference.")
    if letter == "c":
        raise Wrong("the cache is computed for the whole batch anyway, and the row still runs the UNet; think "
                    "about the guidance formula's e(noref, neg).")
    return ("like caption dropout for text guidance, reference dropout is classifier-free guidance's trick for the "
            "reference. In this package the no-reference branch is the frozen backbone itself (adapters are exact "
            "no-ops without a cache), so dropped rows give the adapters no gradient: the unconditional term "
            "is right by construction, and dropout matters where that branch runs through trained weights.")


# -- notebook 05 -----------------------------------------------------------------------------------
def check_top_token(answer, attention) -> str:
    """05: a function (attention (rows, queries, tokens), row, query) -> the most-attended cache token index."""
    toy = torch.zeros(2, 3, 5)
    toy[0, 1, 4], toy[0, 1, 2], toy[1, 1, 0], toy[0, 2, 1] = 0.7, 0.2, 0.9, 0.8
    got = _call(answer, toy.clone(), 0, 1)
    if isinstance(got, torch.Tensor) and got.numel() != 1:
        raise Wrong(f"return one token index (an int), got a tensor of shape {tuple(got.shape)}: pick row and "
                    "query first, then argmax over the cache tokens.")
    got = _number(got, "the token index")
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
        got = _number(_call(answer, attention.clone(), row, query), "the token index")
        if got != expected:
            raise Wrong(f"right on the toy map but row {row}, query {query} of the notebook's map gives {got:g}, "
                        f"expected {expected}.")
    return "argmax over the cache tokens of attention[row, query]; divmod(index, grid width) gives its (y, x)."


GLYPH_CHOICES = {  # similar lengths: the answer is not the longest option
    "a": "they hold the most channels of any layer, so they can store more detail per token",
    "b": "their 4 px tokens give two per 7.6 px glyph cell; a 4x4-grid token covers two whole cells",
    "c": "they come last in the decoder, so they read the text prompt better than earlier layers",
}


def check_glyph_layer(answer) -> str:
    """05: why the 16x16 layers carry the glyph (a/b/c)."""
    letter = _letter(answer, GLYPH_CHOICES)
    if letter == "a":
        raise Wrong("look at the channels again: the 16x16 layers have the *fewest* (32 on the tiny backbone, "
                    "320/640 on SD). What they have most of is tokens.")
    if letter == "c":
        raise Wrong("the cache is computed with the *empty* prompt; no text is involved. Think about what one "
                    "token covers in pixels.")
    return ("resolution: the 64 px image becomes a 16x16 latent (4 px per token), and a glyph cell is 0.4 x 19 = "
            "7.6 px. Coarser layers summarise the subject (class, colour); fine layers keep where each cell is.")


EXERCISES.update({
    "00.unet_calls": Exercise(check_unet_calls, "00_quick_tour.py", "unet_calls"),
    "00.guidance": Exercise(check_guidance, "00_quick_tour.py", "guided_eps", "function"),
    "03.params_per_block": Exercise(check_params_per_block, "03_adapter_training.py", "params_per_block", "function"),
    "03.identity_noop": Exercise(check_identity_noop, "03_adapter_training.py", "largest_change"),
    "03.reference_dropout": Exercise(check_reference_dropout, "03_adapter_training.py", "dropout_answer"),
    "05.top_token": Exercise(check_top_token, "05_feature_visualisation.py", "top_token", "function"),
    "05.glyph_layer": Exercise(check_glyph_layer, "05_feature_visualisation.py", "glyph_answer"),
})


# -- notebook 04 -----------------------------------------------------------------------------------
def check_unet_batch(answer) -> str:
    """04: a function (n_prompts, num_images, reference) -> rows of the one UNet call per step."""
    cases = [(1, 1, True), (4, 1, True), (4, 1, False), (3, 2, True), (2, 4, False)]
    for n, m, ref in cases:
        got = _call(answer, n, m, ref)
        expected = (3 if ref else 2) * n * m
        if got != expected:
            if ref and got == 2 * n * m:
                raise Wrong(f"{n} prompt(s) x {m} image(s) with a reference: {got} rows, but DreamCache's guidance "
                            "has three branches (no reference + negative, reference + prompt, reference + negative).")
            if not ref and got == 3 * n * m:
                raise Wrong("without a reference it is plain classifier-free guidance: two branches.")
            raise Wrong(f"({n} prompts, {m} images, reference={ref}): got {got}, expected {expected}. Every image "
                        "is one row per guidance branch.")
    return ("three rows per image with a reference, two without: DreamCache's per-step batch is 1.5x text-only's, "
            "which is the per-image cost ratio the timing cell measures (minus what the batch hides).")


def pareto_scales(points) -> list:
    """The scales of the (scale, subject, prompt) points that no other point beats on both scores."""
    return [s for s, a, b in points
            if not any(a2 >= a and b2 >= b and (a2 > a or b2 > b) for _, a2, b2 in points)]


def check_pareto(answer, points=None) -> str:
    """04: a function points -> the reference scales on the Pareto front (subject and prompt fidelity)."""
    synthetic = [(0.0, 0.2, 0.9), (0.5, 0.5, 0.9), (1.0, 0.8, 0.85), (2.0, 0.78, 0.8), (3.0, 0.9, 0.6)]
    for data in (synthetic, points or []):
        got = _call(answer, list(data))
        try:
            got = sorted(float(s) for s in got)
        except TypeError as err:
            raise Wrong(f"return a list of scales (numbers), got {type(got).__name__}") from err
        expected = sorted(pareto_scales(data))
        if got != expected:
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            raise Wrong(f"on {data}: expected the scales {expected}. "
                        + (f"{missing} are not beaten on both scores by any other point. " if missing else "")
                        + (f"{extra} are dominated: another scale is at least as good on both." if extra else ""))
    return ("the front is what the reference scale buys: more subject fidelity costs prompt fidelity; every scale "
            "off the front is worse on both and never worth using.")


# -- notebook 06 -----------------------------------------------------------------------------------
def check_storage(answer) -> str:
    """06: a function (method, n_subjects, unet_params, adapter_params, cache_bytes) -> extra fp16 bytes stored."""
    unet_params, adapter_params, cache_bytes = 860_000_000, 25_000_000, 6_062_080
    n = 30
    expected = {"finetune": n * unet_params * 2, "dreamcache": adapter_params * 2 + n * cache_bytes,
                "text": 0, "reference-only": 0}
    for method, value in expected.items():
        got = _call(answer, method, n, unet_params, adapter_params, cache_bytes)
        if got != value:
            hint = {"finetune": "DreamBooth keeps a fine-tuned copy of every UNet weight *per subject* (2 bytes "
                                "each in fp16).",
                    "dreamcache": "the adapters are shared by every subject (stored once, 2 bytes per parameter); "
                                  "each subject adds only its cache.",
                    }.get(method, "this method stores nothing per subject.")
            raise Wrong(f"{method}, {n} subjects: got {got}, expected {value}. {hint}")
    ratio = expected["finetune"] / expected["dreamcache"]
    return (f"for 30 SD-sized subjects, DreamBooth stores {expected['finetune'] / 1e9:.1f} GB and DreamCache "
            f"{expected['dreamcache'] / 1e6:.0f} MB: {ratio:.0f}x less.")


def break_even_images(setup_a, per_image_a, setup_b, per_image_b, limit: int = 10**6):
    """Smallest number of images per subject from which method a costs no more than method b."""
    for n in range(1, limit + 1):
        if setup_a + n * per_image_a <= setup_b + n * per_image_b:
            return n
    return None


def check_break_even(answer) -> str:
    """06: a function (setup_a, per_image_a, setup_b, per_image_b) -> images until a is no dearer than b."""
    cases = [(0.1, 1.0, 0.0, 2.0), (10.0, 1.0, 0.0, 2.0), (0.0, 1.0, 5.0, 1.0), (5.0, 2.0, 0.0, 1.0),
             (30.0, 0.3, 0.0, 0.6)]
    for case in cases:
        got, expected = _call(answer, *case), break_even_images(*case)
        if got != expected:
            raise Wrong(f"setup/per-image a = {case[:2]}, b = {case[2:]}: got {got}, expected {expected}. Total "
                        "cost is setup + n x per-image; find the first n where a's total <= b's (None if a "
                        "never catches up).")
    return ("a one-off set-up pays for itself after setup difference / per-image saving images: DreamCache's "
            "cache is so cheap that it beats reference-only from the first image.")


EXERCISES.update({
    "04.unet_batch": Exercise(check_unet_batch, "04_personalised_generation.py", "unet_batch", "function"),
    "04.pareto": Exercise(check_pareto, "04_personalised_generation.py", "pareto_front", "function"),
    "06.storage": Exercise(check_storage, "06_evaluation.py", "extra_bytes", "function"),
    "06.break_even": Exercise(check_break_even, "06_evaluation.py", "break_even", "function"),
})
