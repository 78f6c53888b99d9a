"""The frozen encoders of a Stable Diffusion pipeline: prompts -> text embeddings, images <-> latents.

Generation, training and analysis all encode through these functions, so a reference is encoded
the same way whether it is cached for generation, for a training step or for a probe.
"""

from __future__ import annotations

import torch

from .images import pil_to_tensor, subject_on_white


@torch.no_grad()
def encode_text(pipe, prompts: list[str]) -> torch.Tensor:
    """Prompts -> the text encoder's last hidden states (N, L, D), in the UNet's dtype."""
    tok = pipe.tokenizer
    ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids.to(pipe.unet.device)
    return pipe.text_encoder(ids)[0].to(pipe.unet.dtype)


@torch.no_grad()
def encode_images(pipe, images: torch.Tensor) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] -> scaled VAE latents (the posterior mean, no sampling)."""
    vae = pipe.vae
    latents = vae.encode(images.to(pipe.unet.device, vae.dtype)).latent_dist.mean
    return latents * vae.config.scaling_factor


@torch.no_grad()
def decode_tensors(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> images (N, 3, H, W), about [-1, 1] (not clamped)."""
    vae = pipe.vae
    return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample


def decode(pipe, latents: torch.Tensor) -> list:
    """Scaled latents -> PIL images."""
    return pipe.image_processor.postprocess(decode_tensors(pipe, latents), output_type="pil")


def resolution(pipe) -> int:
    """The image side the UNet was made for, in pixels."""
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


@torch.no_grad()
def encode_references(pipe, images, masks=None, batch_size: int | None = 64) -> torch.Tensor:
    """Reference pictures (paths, PIL, arrays, ...; a mask or alpha cuts the subject out) -> latents
    of the subject on white at the model's resolution, `batch_size` pictures per VAE call."""
    masks = masks if masks is not None else [None] * len(images)
    batch_size = batch_size or len(images)
    out = []
    for start in range(0, len(images), batch_size):
        pictures = [subject_on_white(img, m, resolution(pipe))
                    for img, m in zip(images[start:start + batch_size], masks[start:start + batch_size])]
        out.append(encode_images(pipe, pil_to_tensor(pictures)))
    return torch.cat(out)
