"""The reference feature cache: one frozen-UNet pass over the reference, block inputs kept.

DreamCache runs the UNet once on the reference latents noised to an almost-clean timestep
(t = 1) with the empty prompt, and keeps the *input* of each selected spatial transformer,
flattened to tokens (B, H*W, C). Generation then never runs the reference again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from diffusers import DDPMScheduler

from .backbones import backbone_fingerprint
from .context import references_suspended
from .files import load_tensors, save_tensors
from .layers import select_layers

CACHE_KIND = "dreamcache-lite/feature-cache"


# Stable Diffusion's training noise schedule (alpha_bar(1) ~ 0.998); the tiny backbone's is built from it
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def sd_noise_schedule() -> DDPMScheduler:
    """Stable Diffusion's noise schedule, used when none is given."""
    return DDPMScheduler(**SD_SCHEDULE)


@dataclass
class FeatureCache:
    """Per-layer reference tokens plus what they are only valid for.

    tokens: layer name -> (B, N, C); B references (a batch), N tokens per reference
        (several references concatenated along N for multi-reference).
    grids: layer name -> (h, w) spatial grid of *one* reference's tokens.
    """

    tokens: dict[str, torch.Tensor]
    fingerprint: str
    timestep: int
    latent_size: tuple[int, int]
    grids: dict[str, tuple[int, int]]
    references: int = 1
    prompt: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return list(self.tokens)

    @property
    def channels(self) -> dict[str, int]:
        return {name: t.shape[-1] for name, t in self.tokens.items()}

    @property
    def batch_size(self) -> int:
        return next(iter(self.tokens.values())).shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.tokens.values())).dtype

    @property
    def nbytes(self) -> int:
        """Size in memory (and, give or take a header, on disk)."""
        return sum(t.numel() * t.element_size() for t in self.tokens.values())

    def num_tokens(self) -> dict[str, int]:
        return {name: t.shape[1] for name, t in self.tokens.items()}

    def to(self, *args, **kwargs) -> "FeatureCache":
        """Move or cast every tensor (like `Tensor.to`)."""
        return self._replace(tokens={n: t.to(*args, **kwargs) for n, t in self.tokens.items()})

    def row(self, index: int) -> "FeatureCache":
        """The cache of one reference of a batch."""
        return self._replace(tokens={n: t[index:index + 1] for n, t in self.tokens.items()})

    def _replace(self, **changes) -> "FeatureCache":
        return FeatureCache(**{**self.__dict__, **changes})

    @staticmethod
    def concat(caches: list["FeatureCache"]) -> "FeatureCache":
        """Multi-reference: one cache whose tokens are the references' tokens side by side."""
        first = caches[0]
        for other in caches[1:]:
            other.check(fingerprint=first.fingerprint, layers=first.layers, latent_size=first.latent_size,
                        what="the first reference")
            if other.batch_size != first.batch_size:
                raise ValueError("caches to concatenate must have the same batch size")
        tokens = {n: torch.cat([c.tokens[n] for c in caches], dim=1) for n in first.layers}
        return first._replace(tokens=tokens, references=sum(c.references for c in caches))

    def check(self, *, fingerprint=None, layers=None, channels=None, latent_size=None,
              what="these adapters") -> None:
        """Refuse a cache made for another backbone, layer set, channel count or resolution."""
        if fingerprint is not None and self.fingerprint != fingerprint:
            raise ValueError(f"cache was made on backbone {self.fingerprint}, but {what} belong to backbone "
                             f"{fingerprint}: recompute the cache with this UNet")
        if layers is not None and list(layers) != self.layers:
            missing = [n for n in layers if n not in self.tokens]
            extra = [n for n in self.layers if n not in layers]
            raise ValueError(f"cache layers do not match {what}: missing {missing}, unexpected {extra}")
        if channels is not None:
            wrong = {n: (self.channels.get(n), c) for n, c in channels.items() if self.channels.get(n) != c}
            if wrong:
                raise ValueError(f"cache channels (cache, expected) differ for {what}: {wrong}")
        if latent_size is not None and tuple(latent_size) != tuple(self.latent_size):
            raise ValueError(f"cache was made at latent size {tuple(self.latent_size)}, but {what} run at "
                             f"{tuple(latent_size)}: recompute the cache at this resolution")

    def save(self, path) -> None:
        meta = {"fingerprint": self.fingerprint, "layers": self.layers, "channels": self.channels,
                "timestep": self.timestep, "latent_size": list(self.latent_size),
                "grids": {n: list(g) for n, g in self.grids.items()}, "references": self.references,
                "prompt": self.prompt, "dtype": str(self.dtype).removeprefix("torch."), "extra": self.extra}
        save_tensors(path, self.tokens, CACHE_KIND, meta)

    @classmethod
    def load(cls, path, device="cpu") -> "FeatureCache":
        tensors, meta = load_tensors(path, CACHE_KIND)
        if set(tensors) != set(meta["layers"]):
            raise ValueError(f"{path}: tensors {sorted(tensors)} do not match the layers in its header {meta['layers']}")
        for name in meta["layers"]:
            shape = tuple(tensors[name].shape)
            if len(shape) != 3 or shape[2] != meta["channels"][name]:
                raise ValueError(f"{path}: layer {name} has shape {shape}, header says {meta['channels'][name]} channels")
        return cls(tokens={n: tensors[n].to(device) for n in meta["layers"]}, fingerprint=meta["fingerprint"],
                   timestep=meta["timestep"], latent_size=tuple(meta["latent_size"]),
                   grids={n: tuple(g) for n, g in meta["grids"].items()}, references=meta["references"],
                   prompt=meta["prompt"], extra=meta.get("extra", {}))


@contextlib.contextmanager
def capture_block_inputs(unet, names: list[str]):
    """Record the input hidden states of the named modules during the forwards run inside.

    The forward pre-hooks always come off, even when the forward raises.
    """
    captured: dict[str, torch.Tensor] = {}
    modules = dict(unet.named_modules())

    def hook_for(name):
        def hook(module, args, kwargs):
            captured[name] = args[0] if args else kwargs["hidden_states"]
        return hook

    handles = [modules[name].register_forward_pre_hook(hook_for(name), with_kwargs=True) for name in names]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def cache_features(unet, latents: torch.Tensor, encoder_hidden_states: torch.Tensor, layers="paper", *,
                   timestep: int = 1, scheduler=None, generator: torch.Generator | None = None,
                   added_cond_kwargs: dict | None = None, prompt: str = "",
                   noise: torch.Tensor | None = None) -> FeatureCache:
    """Run the frozen UNet once on `latents` noised to `timestep`; return the selected block inputs.

    latents: (B, C, h, w) VAE latents of B references (already scaled by the VAE factor).
    encoder_hidden_states: the text embedding used while caching, (1 or B, L, D) — the
        paper uses the empty prompt; `prompt` records which one it was.
    noise: the noise to add (drawn from `generator` when None); training passes noise drawn for the
        whole global batch so that a shard of it sees what one process would.
    """
    if latents.ndim != 4:
        raise ValueError(f"reference latents must be (B, C, h, w), got shape {tuple(latents.shape)}")
    if latents.device.type != "meta" and not torch.isfinite(latents).all():
        raise ValueError("reference latents contain NaN or inf: check the reference image and the VAE")
    infos = select_layers(unet, layers)
    scheduler = scheduler or sd_noise_schedule()
    batch = latents.shape[0]
    t = torch.full((batch,), int(timestep), dtype=torch.long, device=latents.device)
    if noise is None:
        noise_device = generator.device if generator is not None else latents.device
        noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype, device=noise_device)
    noise = noise.to(latents.device, latents.dtype)
    noisy = scheduler.add_noise(latents, noise, t) if latents.device.type != "meta" else latents
    if encoder_hidden_states.shape[0] != batch:
        encoder_hidden_states = encoder_hidden_states.expand(batch, *encoder_hidden_states.shape[1:])
    names = [info.name for info in infos]
    with references_suspended(unet), capture_block_inputs(unet, names) as captured:
        unet(noisy, t, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs)
    tokens = {n: captured[n].flatten(2).transpose(1, 2).contiguous() for n in names}
    grids = {n: tuple(captured[n].shape[-2:]) for n in names}
    return FeatureCache(tokens=tokens, fingerprint=backbone_fingerprint(unet), timestep=int(timestep),
                        latent_size=tuple(latents.shape[-2:]), grids=grids, prompt=prompt)
