"""The exercises of notebook 01 (feature caching): each checker says what a wrong answer got wrong."""

from __future__ import annotations

import functools

import torch

from .engine import Wrong, as_number, call_learner, register

exercise = register("01_feature_caching.py")


@functools.lru_cache(maxsize=None)
def _report(arch: str, resolution: int) -> dict:
    from ...report import architecture_report
    return architecture_report(arch, resolution)


@exercise("01.cache_bytes", "cache_bytes_768")
def check_cache_bytes(answer) -> str:
    """01: the fp16 cache of SD 1.5 (paper preset) at 768 px, in bytes."""
    report, at512 = _report("sd15", 768), _report("sd15", 512)
    expected, value = report["cache_bytes_fp16"], as_number(answer, "the cache size")
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


@exercise("01.token_counts", "sd15_token_counts", "function")
def check_token_counts(answer) -> str:
    """01: a function resolution -> {layer: tokens} for SD 1.5's paper layers."""
    for resolution in (512, 768, 256, 1024):
        report = _report("sd15", resolution)
        expected = dict(zip(report["layers"], report["cache_tokens"]))
        got = call_learner(answer, resolution)
        if not isinstance(got, dict):
            raise Wrong(f"return a dict {{layer name: number of tokens}}, got {type(got).__name__}")
        if set(got) != set(expected):
            raise Wrong(f"the keys should be the five paper layers {list(expected)}; missing "
                        f"{sorted(set(expected) - set(got))}, unexpected {sorted(set(got) - set(expected))}")
        for name, tokens in expected.items():
            value = got[name]
            if isinstance(value, (tuple, list)):
                raise Wrong(f"{name}: you returned the grid {tuple(value)}; the token count is h * w.")
            value = as_number(value, f"the token count of {name}")
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


@exercise("01.block_input", "block_input_tokens", "function")
def check_block_input(answer, unet, noisy, timestep, text, layer) -> str:
    """01: a function (unet, noisy, timestep, text, layer) -> that layer's input as tokens (B, H*W, C)."""
    from ...cache import capture_block_inputs

    before = set(_hooked_modules(unet))
    got = call_learner(answer, unet, noisy, timestep, text, layer)
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
    from ...layers import list_transformers
    return [(i.name, i) for i in list_transformers(unet)]
