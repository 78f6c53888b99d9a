"""The exercises of notebook 03 (adapter training): each checker says what a wrong answer got wrong."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .engine import Wrong, as_number, call_learner, known_mistake, multiple_choice, register

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


DROPOUT_CHOICES = {  # similar lengths, the answer neither the longest nor in 05's position
    "a": "regularisation, like dropout in a classifier: it keeps the adapters from overfitting the reference",
    "b": "speed: a dropped row skips the cache lookup, so training steps get cheaper on average",
    "c": "it trains the no-reference prediction e(noref, .) that reference guidance subtracts",
}


@exercise("03.reference_dropout", "dropout_answer")
def check_reference_dropout(answer) -> str:
    """03: what reference dropout is for (a/b/c)."""
    multiple_choice(answer, DROPOUT_CHOICES, mistakes={
        "a": "it does not regularise the adapters: a dropped row runs *without* them. Think about which "
             "guidance term needs a prediction without the reference.",
        "b": "the cache is computed for the whole batch anyway, and the row still runs the UNet; think "
             "about the guidance formula's e(noref, neg)."})
    return ("like caption dropout for text guidance, reference dropout is classifier-free guidance's trick for the "
            "reference. In this package the no-reference branch is the frozen backbone itself (adapters are exact "
            "no-ops without a cache), so dropped rows give the adapters no gradient: the unconditional term "
            "is right by construction, and dropout matters where that branch runs through trained weights.")


# --------------------------------------------------------------------------- implement the method
def _adapter(x, s, cache, w, heads, *, queries="norm_x", norm_cache=False, order="sm", scale="head",
             softmax_dim=-1, inject="concat", out=True):
    """The paper's adapter, and (through the keywords) the mistakes the checker recognises."""
    d = x.shape[-1]
    normed = F.layer_norm(x, (d,), w["norm_mem.weight"], w["norm_mem.bias"])
    source = {"norm_x": normed, "x": x, "s": s}[queries]
    memory = F.layer_norm(cache, (cache.shape[-1],)) if norm_cache else cache
    q = F.linear(source, w["attn_mem.to_q.weight"])
    k, v = F.linear(memory, w["attn_mem.to_k.weight"]), F.linear(memory, w["attn_mem.to_v.weight"])

    def split(t):
        return t.unflatten(-1, (heads, -1)).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    factor = {"head": q.shape[-1] ** -0.5, "width": d ** -0.5, "none": 1.0}[scale]
    m = ((q @ k.transpose(-1, -2)) * factor).softmax(softmax_dim) @ v
    m = m.transpose(1, 2).flatten(2)
    if out:
        m = F.linear(m, w["attn_mem.to_out.0.weight"], w["attn_mem.to_out.0.bias"])
    if inject == "m":
        return m
    if inject == "sum":
        return s + m
    pair = [s, m] if order == "sm" else [m, s]
    return F.linear(torch.cat(pair, -1), w["linear_cat.weight"], w["linear_cat.bias"])


ADAPTER_MISTAKES = (
    (dict(queries="x"), "the queries come from LayerNorm_mem(x), the normalised block input, not from x itself."),
    (dict(queries="s"), "the queries come from the block input x (after LayerNorm_mem), not from the "
                        "self-attention's output s."),
    (dict(norm_cache=True), "keys and values come from the raw cached tokens: the paper caches the transformer's "
                            "input as it is, with no LayerNorm on the cache side."),
    (dict(order="ms"), "concatenate [s ; m], s first: linear_cat's first half multiplies s, which is what makes "
                       "the identity init [I | 0] an exact no-op."),
    (dict(scale="none"), "the logits q k^T need the 1/sqrt(d_head) scale of scaled dot-product attention."),
    (dict(scale="width"), "scale by 1/sqrt(d_head), the width of one head (d / heads), not 1/sqrt(d)."),
    (dict(softmax_dim=-2), "the softmax runs over the cached tokens (the last axis of q k^T): each query's weights "
                           "over the cache sum to 1."),
    (dict(inject="sum"), "that is the paper's spatial-sum ablation, s + m; the adapter mixes [s ; m] through "
                         "linear_cat (2d -> d)."),
    (dict(inject="m"), "you returned m alone: the adapter returns linear_cat([s ; m]), which replaces s in x + s."),
    (dict(out=False), "m must go through to_out (attn_mem.to_out.0) before linear_cat."),
)


def _adapter_case(seed: int, d: int = 32, heads: int = 4):
    from ...adapters import DreamCacheProcessor
    from ...context import ReferenceContext

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    proc = DreamCacheProcessor("block", "layer", d, d, heads, ReferenceContext())
    proc.reset_parameters("paper")
    weights = {k: v.detach() + 0.1 * torch.randn(v.shape, generator=gen) for k, v in proc.state_dict().items()}
    x, s = torch.randn(2, 16, d, generator=gen), torch.randn(2, 16, d, generator=gen)
    cache = torch.randn(2, 24, d, generator=gen)  # another token count than x: catches swapped axes
    return x, s, cache, weights, heads


@exercise("03.adapter_forward", "adapter_forward", "function")
def check_adapter_forward(answer) -> str:
    """03: a function (x, s, cache, weights, heads) -> linear_cat([s ; RefAttn(LayerNorm_mem(x), cache)])."""
    for seed in (0, 1):
        x, s, cache, weights, heads = _adapter_case(seed)
        with torch.no_grad():
            got = call_learner(answer, x, s, cache, dict(weights), heads)
            expected = _adapter(x, s, cache, weights, heads)
            if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
                shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                raise Wrong(f"return a tensor of the block's shape {tuple(expected.shape)} (B, N, d); got {shape}")
            if torch.allclose(got, expected, atol=1e-5, rtol=1e-4):
                continue
            known_mistake(ADAPTER_MISTAKES, lambda mistake: torch.allclose(
                got, _adapter(x, s, cache, weights, heads, **mistake), atol=1e-5, rtol=1e-4))
            raise Wrong(f"largest difference to the adapter {float((got - expected).abs().max()):.3g}: check the "
                        "order LayerNorm_mem(x) -> to_q; cache -> to_k, to_v; softmax(q k^T / sqrt(d_head)) v per "
                        "head; to_out; linear_cat([s ; m]).")
    return ("that is DreamCacheProcessor's computation: queries from the normalised block, keys and values from "
            "the cache, one learnt 2d -> d mix with the frozen path. The package's processor adds only the "
            "bookkeeping (which rows use which reference, keys/values computed once per reference).")


def _loss(predict_noise, latents, noise, t, scheduler, drop, *, target="noise", noised="schedule",
          use_reference="kept", reduce="mean"):
    noisy = {"schedule": scheduler.add_noise(latents, noise, t), "sum": latents + noise, "none": latents}[noised]
    rows = {"kept": ~drop, "dropped": drop, "all": torch.ones_like(drop)}[use_reference]
    pred = predict_noise(noisy, t, rows)
    goal = {"noise": noise, "latents": latents, "noisy": noisy}[target]
    return F.mse_loss(pred, goal, reduction=reduce)


LOSS_MISTAKES = (
    (dict(target="latents"), "the UNet predicts the *noise* (eps-prediction): compare its output with `noise`, "
                             "not with the clean latents."),
    (dict(target="noisy"), "the target is the noise that was added, not the noisy latents."),
    (dict(noised="sum"), "noise the latents with the schedule, scheduler.add_noise(latents, noise, t) = "
                         "sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, not latents + noise."),
    (dict(noised="none"), "the UNet must see the *noisy* latents: scheduler.add_noise(latents, noise, t)."),
    (dict(use_reference="dropped"), "inverted: rows whose reference is dropped (drop_reference True) must run "
                                    "*without* it, so use_reference = ~drop_reference."),
    (dict(use_reference="all"), "reference dropout is ignored: rows with drop_reference True must run without "
                                "their reference (use_reference = ~drop_reference)."),
    (dict(reduce="sum"), "average the squared error (mean), as F.mse_loss does by default: a sum grows with "
                         "the batch and the latent size."),
)


def _loss_case(seed: int):
    from diffusers import DDPMScheduler

    gen = torch.Generator().manual_seed(seed)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear")
    latents, noise = torch.randn(4, 4, 8, 8, generator=gen), torch.randn(4, 4, 8, 8, generator=gen)
    t = torch.tensor([10, 300, 650, 990])
    drop = torch.tensor([False, True, False, True])
    bias = torch.randn(1, 4, 8, 8, generator=gen)

    def predict_noise(noisy, timesteps, use_reference):  # a fixed stand-in for the UNet with adapters
        reference = torch.as_tensor(use_reference, dtype=noisy.dtype).view(-1, 1, 1, 1)
        return 0.6 * noisy + 1e-3 * timesteps.view(-1, 1, 1, 1) + 0.4 * reference * bias

    return predict_noise, latents, noise, t, scheduler, drop


@exercise("03.training_loss", "denoising_loss", "function")
def check_training_loss(answer) -> str:
    """03: a function (predict_noise, latents, noise, t, scheduler, drop_reference) -> the training loss."""
    for seed in (0, 1):
        case = _loss_case(seed)
        got = as_number(call_learner(answer, *case), "the loss")
        expected = float(_loss(*case))
        if abs(got - expected) <= 1e-5 * max(1.0, abs(expected)):
            continue
        known_mistake(LOSS_MISTAKES,
                      lambda mistake: abs(got - float(_loss(*case, **mistake))) <= 1e-5 * max(1.0, abs(got)))
        raise Wrong(f"you get {got:.5f}, the loss is {expected:.5f}: noise the latents with the schedule, predict "
                    "with the reference on the rows that keep it, and take the mean squared error to the noise.")
    return ("the eps-prediction loss of training.training_loss, minus its bookkeeping (caching the references, "
            "caption dropout, the optional subject weight and min-SNR weighting).")
