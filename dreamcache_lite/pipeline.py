"""Personalised generation: cache a reference once, then draw it in any context.

`DreamCachePipeline` wraps any `StableDiffusionPipeline` (the embedded tiny backbone or SD 1.5 /
2.1). Each denoising step is **one** batched UNet call over the paper's three guidance branches

    eps = e(noref, neg) + s_txt * (e(ref, prompt) - e(ref, neg)) + s_ref * (e(ref, neg) - e(noref, neg))

the per-row reference switch of the adapters telling which rows see the cache.
"""

from __future__ import annotations

import torch
from diffusers import StableDiffusionPipeline
from tqdm.auto import tqdm

from .adapters import DreamCacheAdapters
from .backbones import ARCHITECTURES, load_pipeline
from .cache import FeatureCache, cache_features
from .images import pil_to_tensor, subject_on_white


class DreamCachePipeline:
    def __init__(self, pipe: StableDiffusionPipeline, adapters: DreamCacheAdapters | None = None):
        self.pipe = pipe
        self.adapters = adapters

    @classmethod
    def from_pretrained(cls, backbone, adapters=None, **kwargs) -> "DreamCachePipeline":
        """`backbone`: a pipeline, a registry name (`tiny`, `sd15`, ...: `load_pipeline`, kwargs device/dtype),
        or a diffusers folder or hub id (kwargs go to `from_pretrained`); `adapters`: a file saved by
        `DreamCacheAdapters`."""
        if isinstance(backbone, StableDiffusionPipeline):
            pipe = backbone
        elif backbone == "tiny" or backbone in ARCHITECTURES:
            pipe = load_pipeline(backbone, **kwargs)
        else:
            pipe = StableDiffusionPipeline.from_pretrained(backbone, safety_checker=None, requires_safety_checker=False,
                                                           **kwargs)
        pipe.set_progress_bar_config(disable=True)
        loaded = DreamCacheAdapters.from_file(pipe.unet, adapters) if adapters else None
        return cls(pipe, loaded)

    # -- pieces ------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.pipe.unet.device

    @property
    def resolution(self) -> int:
        return self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        tok = self.pipe.tokenizer
        ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(self.device)
        return self.pipe.text_encoder(ids)[0].to(self.pipe.unet.dtype)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        latents = vae.encode(images.to(self.device, vae.dtype)).latent_dist.mean
        return latents * vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> list:
        vae = self.pipe.vae
        images = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
        return self.pipe.image_processor.postprocess(images, output_type="pil")

    # -- caching -----------------------------------------------------------------------------------
    def cache_reference(self, image, mask=None, *, timestep: int = 1, prompt: str = "", seed: int = 0) -> FeatureCache:
        """Cache one reference (path, PIL, array or tensor; RGBA alpha or `mask` cuts the subject out).

        A list of images gives a batch cache (one reference per row).
        """
        images = image if isinstance(image, list) else [image]
        masks = mask if isinstance(mask, list) else [mask] * len(images)
        pictures = [subject_on_white(img, m, self.resolution) for img, m in zip(images, masks)]
        latents = self.encode_images(pil_to_tensor(pictures))
        text = self.encode_text([prompt])
        layers = [i.name for i in self.adapters.layers] if self.adapters else "paper"
        return cache_features(self.pipe.unet, latents, text, layers=layers, timestep=timestep,
                              scheduler=self.pipe.scheduler, generator=torch.Generator().manual_seed(seed),
                              prompt=prompt)

    # -- generation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, prompt: str | list[str], cache: FeatureCache | list[FeatureCache] | None = None, *,
                 negative_prompt: str = "", num_images: int = 1, seed: int = 0, steps: int = 50,
                 text_scale: float = 7.5, ref_scale: float = 1.0, callback=None, progress: bool = True,
                 return_attention: bool = False, output_type: str = "pil", before_unet=None,
                 init_images: torch.Tensor | None = None, strength: float = 1.0):
        """Generate `num_images` per prompt (image i of every prompt uses seed `seed + i`).

        cache: a reference cache (a list is merged as multi-reference); None = text-only, plain CFG.
        callback(step, timestep, latents) is called after every step; before_unet(timestep) before every
        UNet call (the reference-only baseline runs its reference pass there).
        init_images ((1 or n, 3, H, W) in [-1, 1]) with `strength` < 1 starts from those images noised to
        that share of the schedule instead of from pure noise (SDEdit).
        Returns a list of images (and, with `return_attention`, the adapters' attention maps).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if isinstance(cache, list):
            cache = FeatureCache.concat(cache)
        if cache is not None and self.adapters is None:
            raise ValueError("this pipeline has no adapters: load them to generate from a reference cache")
        prompts = [p for p in prompts for _ in range(num_images)]
        seeds = [seed + i for _ in range(len(prompts) // num_images) for i in range(num_images)]
        n = len(prompts)
        text = self.encode_text(prompts)
        negative = self.encode_text([negative_prompt]).expand(n, -1, -1)
        latents = self._initial_latents(seeds)
        scheduler = self.pipe.scheduler
        scheduler.set_timesteps(steps, device=self.device)
        timesteps = scheduler.timesteps
        if init_images is not None:
            if not 0 < strength <= 1:
                raise ValueError(f"strength must be in (0, 1], got {strength}")
            timesteps = timesteps[steps - max(1, round(steps * strength)):]
            start = self.encode_images(init_images.to(self.device)).expand(n, -1, -1, -1)
            latents = scheduler.add_noise(start, latents, timesteps[:1])
        if cache is not None:
            # branch rows: [noref+neg | ref+prompt | ref+neg]
            conditioning = torch.cat([negative, text, negative])
            rows = [-1] * n + [0] * (2 * n)
            self.adapters.activate(cache.to(self.device), rows=rows, precompute=True)
            self.adapters.context.record_attention = return_attention
        else:
            conditioning = torch.cat([negative, text])
        try:
            for i, t in enumerate(tqdm(timesteps, disable=not progress, desc="denoising")):
                branches = len(conditioning) // n
                model_in = scheduler.scale_model_input(torch.cat([latents] * branches), t)
                if before_unet is not None:
                    before_unet(t)
                eps = self.pipe.unet(model_in, t, encoder_hidden_states=conditioning).sample.chunk(branches)
                if cache is None:
                    guided = eps[0] + text_scale * (eps[1] - eps[0])
                else:
                    guided = eps[0] + text_scale * (eps[1] - eps[2]) + ref_scale * (eps[2] - eps[0])
                latents = scheduler.step(guided, t, latents).prev_sample
                if callback is not None:
                    callback(i, t, latents)
            attention = dict(self.adapters.context.attention) if cache is not None and return_attention else None
        finally:
            if cache is not None:
                self.adapters.deactivate()
        images = latents if output_type == "latent" else self.decode(latents)
        return (images, attention) if return_attention else images

    def _initial_latents(self, seeds: list[int]) -> torch.Tensor:
        unet = self.pipe.unet
        shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
        noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
        return noise.to(self.device, unet.dtype) * self.pipe.scheduler.init_noise_sigma
