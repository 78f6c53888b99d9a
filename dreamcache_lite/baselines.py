"""Baselines the paper compares against, runnable on the same pipeline and protocol.

Reference-only attention (the training-free trick of diffusers' community "reference" pipeline):
at *every* denoising step the reference, noised to that step, runs through the UNet too, and each
self-attention of the main pass also attends to the reference pass's tokens. No training, but two
UNet passes per step — the cost DreamCache's one-off cache avoids.
"""

from __future__ import annotations

import contextlib

import torch

from .images import pil_to_tensor, subject_on_white


class _ReferenceOnlyProcessor:
    """Wraps a block's `attn1` processor: stores its input (write) or attends to it as well (read)."""

    def __init__(self, base, name: str, state: dict):
        self.base, self.name, self.state = base, name, state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        mode = self.state["mode"]
        if mode == "write":
            self.state["bank"][self.name] = hidden_states
        elif mode == "read":
            ref = self.state["bank"][self.name]
            ref = ref.expand(hidden_states.shape[0], -1, -1) if ref.shape[0] == 1 else ref
            encoder_hidden_states = torch.cat([hidden_states, ref.to(hidden_states.dtype)], dim=1)
        return self.base(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


@contextlib.contextmanager
def reference_only_attention(unet):
    """Install the wrappers on every self-attention; yields the shared state; always uninstalls."""
    originals = dict(unet.attn_processors)
    state = {"mode": None, "bank": {}}
    wrapped = {name: _ReferenceOnlyProcessor(proc, name, state) if name.endswith("attn1.processor") else proc
               for name, proc in originals.items()}
    unet.set_attn_processor(wrapped)
    try:
        yield state
    finally:
        unet.set_attn_processor(originals)


@torch.no_grad()
def generate_reference_only(dc, prompts, reference, *, seed: int = 0, steps: int = 25, text_scale: float = 5.0,
                            progress: bool = False, **kwargs):
    """Text-guided generation where every step also runs the noised reference (2 UNet passes per step)."""
    picture = subject_on_white(reference, size=dc.resolution)
    ref_latents = dc.encode_images(pil_to_tensor([picture]))
    noise = torch.randn(ref_latents.shape, generator=torch.Generator().manual_seed(seed)).to(ref_latents)
    empty = dc.encode_text([""])
    unet, scheduler = dc.pipe.unet, dc.pipe.scheduler
    with reference_only_attention(unet) as state:
        def reference_pass(t):
            state["mode"] = "write"
            unet(scheduler.add_noise(ref_latents, noise, t.reshape(1)), t, encoder_hidden_states=empty)
            state["mode"] = "read"

        return dc(prompts, None, seed=seed, steps=steps, text_scale=text_scale, progress=progress,
                  before_unet=reference_pass, **kwargs)
