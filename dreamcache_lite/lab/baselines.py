"""Baselines the paper compares against, runnable on the same pipeline and protocol.

Reference-only attention (the training-free trick of diffusers' community "reference" pipeline):
at *every* denoising step the reference, noised to that step, runs through the UNet too, and each
self-attention of the main pass also attends to the reference pass's tokens. No training, but two
UNet passes per step — the cost DreamCache's one-off cache avoids.

Fine-tuning (DreamBooth): the whole UNet is fine-tuned on the single reference, captioned with a
rare identifier ("a sks dog"), with prior preservation on images the frozen model makes of the
class — a per-subject copy of every UNet weight and minutes of set-up, the cost DreamCache's
zero-shot adapters avoid.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..encoders import encode_references
from ..pipeline import GenerationConfig

IDENTIFIER = "sks"  # DreamBooth's rare token; out of the tiny tokenizer's vocabulary, so [UNK]
PRIOR_GENERATION = GenerationConfig(text_scale=7.5)  # DreamBooth's class-prior images (as first measured)


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
def generate_reference_only(dc, prompts, reference, generation: GenerationConfig | None = None, *, seed: int = 0,
                            progress: bool = False, **kwargs):
    """Text-guided generation where every step also runs the noised reference (2 UNet passes per step).

    `kwargs` go to the pipeline call (`steps=`, `num_images=`, ... override `generation`)."""
    ref_latents = encode_references(dc.pipe, [reference])
    noise = torch.randn(ref_latents.shape, generator=torch.Generator().manual_seed(seed)).to(ref_latents)
    empty = dc.encode_text([""])
    unet, scheduler = dc.pipe.unet, dc.pipe.scheduler
    with reference_only_attention(unet) as state:
        def reference_pass(t):
            state["mode"] = "write"
            unet(scheduler.add_noise(ref_latents, noise, t.reshape(1)), t, encoder_hidden_states=empty)
            state["mode"] = "read"

        return dc(prompts, None, generation, seed=seed, progress=progress, before_unet=reference_pass, **kwargs)


def _shifted(latents: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """A random shift of the reference latents (edges replicated: it is on white): many views of one picture."""
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator))
    padded = F.pad(latents, (max_shift,) * 4, mode="replicate")
    h, w = latents.shape[-2:]
    return padded[..., max_shift + dy: max_shift + dy + h, max_shift + dx: max_shift + dx + w]


@contextlib.contextmanager
def dreambooth(dc, reference, class_name: str, *, steps: int = 100, batch_size: int = 4, lr: float = 1e-4,
               prior_images: int = 8, prior_weight: float = 1.0, seed: int = 0):
    """Fine-tune `dc`'s UNet on one reference (DreamBooth with prior preservation); restore it on exit.

    Yields the word to put before the class noun in prompts ("sks").
    """
    unet, scheduler = dc.pipe.unet, dc.pipe.scheduler
    original = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        subject = encode_references(dc.pipe, [reference])
        prior = dc([f"a {class_name}"] * prior_images, None, PRIOR_GENERATION, seed=seed, progress=False,
                   output_type="latent")  # what the frozen model makes of the bare class word
        text = dc.encode_text([f"a {IDENTIFIER} {class_name}", f"a {class_name}"])
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-2)
    unet.train().requires_grad_(True)
    try:
        for _ in range(steps):
            views = torch.cat([_shifted(subject, generator) for _ in range(batch_size)])
            priors = prior[torch.randint(len(prior), (batch_size,), generator=generator)]
            latents = torch.cat([views, priors])
            noise = torch.randn(latents.shape, generator=generator).to(latents)  # CPU draws: same on any device
            t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
            t = t.to(latents.device)
            cond = text.repeat_interleave(batch_size, dim=0)
            pred = unet(scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=cond).sample
            loss = F.mse_loss(pred[:batch_size], noise[:batch_size]) \
                + prior_weight * F.mse_loss(pred[batch_size:], noise[batch_size:])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        unet.eval().requires_grad_(False)
        yield IDENTIFIER
    finally:
        unet.load_state_dict(original)
        unet.eval().requires_grad_(False)
