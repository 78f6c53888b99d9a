"""Personalised generation: cache a reference once, then draw it in any context.

`DreamCachePipeline` wraps any `StableDiffusionPipeline` (the embedded tiny backbone or SD 1.5 /
2.1). Each denoising step is **one** batched UNet call over the paper's three guidance branches

    eps = e(noref, neg) + s_txt * (e(ref, prompt) - e(ref, neg)) + s_ref * (e(ref, neg) - e(noref, neg))

the per-row reference switch of the adapters telling which rows see the cache. The settings of a
generation (steps, sampler, guidance scales, negative prompt) are one `GenerationConfig`, whose
defaults are the ones of the command line, the toy bench and the baselines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from tqdm.auto import tqdm

from . import encoders
from .adapters import DreamCacheAdapters
from .backbones import ARCHITECTURES, load_pipeline
from .cache import FeatureCache, cache_features

SCHEDULERS = {"ddim": DDIMScheduler}  # by name; None keeps the pipeline's own


@dataclass(frozen=True)
class GenerationConfig:
    """How to sample: one set of defaults for the pipeline, the CLI, the toy bench and the baselines."""

    steps: int = 25                     # denoising steps
    scheduler: str | None = None        # None: the backbone's own sampler; "ddim": DDIM (the paper's)
    text_scale: float = 5.0             # s_txt, classifier-free text guidance
    ref_scale: float = 1.0              # s_ref, reference guidance (DreamCache only)
    negative_prompt: str = ""

    def but(self, **changes) -> "GenerationConfig":
        """A copy with the given fields changed (None leaves a field as it is)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def three_branch_guidance(eps, text_scale: float, ref_scale: float) -> torch.Tensor:
    """The paper's guidance from the three branches `eps` = (noref+neg, ref+prompt, ref+neg):
    e(noref, neg) + s_txt (e(ref, prompt) - e(ref, neg)) + s_ref (e(ref, neg) - e(noref, neg))."""
    plain, prompt, negative = eps
    return plain + text_scale * (prompt - negative) + ref_scale * (negative - plain)


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
        return encoders.resolution(self.pipe)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        return encoders.encode_text(self.pipe, prompts)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return encoders.encode_images(self.pipe, images)

    def decode(self, latents: torch.Tensor) -> list:
        return encoders.decode(self.pipe, latents)

    def sampler(self, name: str | None = None):
        """The sampler for `GenerationConfig.scheduler`: the pipeline's own, or one built from its config."""
        if name is None:
            return self.pipe.scheduler
        if name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {name!r}; valid: {', '.join(SCHEDULERS)} (or None)")
        return SCHEDULERS[name].from_config(self.pipe.scheduler.config)

    # -- caching -----------------------------------------------------------------------------------
    def cache_reference(self, image, mask=None, *, timestep: int = 1, prompt: str = "", seed: int = 0) -> FeatureCache:
        """Cache one reference (path, PIL, array or tensor; RGBA alpha or `mask` cuts the subject out).

        A list of images gives a batch cache (one reference per row).
        """
        images = image if isinstance(image, list) else [image]
        masks = mask if isinstance(mask, list) else [mask] * len(images)
        latents = encoders.encode_references(self.pipe, images, masks, batch_size=None)
        text = self.encode_text([prompt])
        layers = [i.name for i in self.adapters.layers] if self.adapters else "paper"
        return cache_features(self.pipe.unet, latents, text, layers=layers, timestep=timestep,
                              scheduler=self.pipe.scheduler, generator=torch.Generator().manual_seed(seed),
                              prompt=prompt)

    # -- generation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, prompt: str | list[str], cache: FeatureCache | list[FeatureCache] | None = None,
                 config: GenerationConfig | None = None, *, num_images: int = 1, seed: int = 0,
                 steps: int | None = None, scheduler: str | None = None, text_scale: float | None = None,
                 ref_scale: float | None = None, negative_prompt: str | None = None, callback=None,
                 progress: bool = True, return_attention: bool = False, output_type: str = "pil",
                 before_unet=None, init_images: torch.Tensor | None = None, strength: float = 1.0):
        """Generate `num_images` per prompt (image i of every prompt uses seed `seed + i`).

        cache: a reference cache (a list is merged as multi-reference); None = text-only, plain CFG.
        config: the sampling settings (default `GenerationConfig()`); `steps`, `scheduler`, `text_scale`,
        `ref_scale` and `negative_prompt`, when given, override its fields.
        callback(step, timestep, latents) is called after every step; before_unet(timestep) before every
        UNet call (the reference-only baseline runs its reference pass there).
        init_images ((1 or n, 3, H, W) in [-1, 1]) with `strength` < 1 starts from those images noised to
        that share of the schedule instead of from pure noise (SDEdit).
        Returns a list of images (and, with `return_attention`, the adapters' attention maps).
        """
        config = (config or GenerationConfig()).but(steps=steps, scheduler=scheduler, text_scale=text_scale,
                                                    ref_scale=ref_scale, negative_prompt=negative_prompt)
        steps, text_scale, ref_scale = config.steps, config.text_scale, config.ref_scale
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if isinstance(cache, list):
            cache = FeatureCache.concat(cache)
        if cache is not None and self.adapters is None:
            raise ValueError("this pipeline has no adapters: load them to generate from a reference cache")
        prompts = [p for p in prompts for _ in range(num_images)]
        seeds = [seed + i for _ in range(len(prompts) // num_images) for i in range(num_images)]
        n = len(prompts)
        text = self.encode_text(prompts)
        negative = self.encode_text([config.negative_prompt]).expand(n, -1, -1)
        scheduler = self.sampler(config.scheduler)
        latents = self._initial_latents(seeds, scheduler.init_noise_sigma)
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
                    guided = three_branch_guidance(eps, text_scale, ref_scale)
                latents = scheduler.step(guided, t, latents).prev_sample
                if callback is not None:
                    callback(i, t, latents)
            attention = dict(self.adapters.context.attention) if cache is not None and return_attention else None
        finally:
            if cache is not None:
                self.adapters.deactivate()
        images = latents if output_type == "latent" else self.decode(latents)
        return (images, attention) if return_attention else images

    def _initial_latents(self, seeds: list[int], sigma: float) -> torch.Tensor:
        unet = self.pipe.unet
        shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
        noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
        return noise.to(self.device, unet.dtype) * sigma
