"""Backbone architectures known by name, and the fingerprint that ties caches and adapters to one.

The SD 1.5 / SD 2.1 / SDXL UNet configs below are the public `unet/config.json` values, so their
architectures can be built with random weights (or on the meta device, for free) without a
download. `tiny` is the embedded backbone this project trains itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from .assets import TINY_BACKBONE

_SD_COMMON = dict(
    act_fn="silu", center_input_sample=False, downsample_padding=1, flip_sin_to_cos=True, freq_shift=0,
    in_channels=4, out_channels=4, layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5,
    norm_num_groups=32, sample_size=64,
    block_out_channels=[320, 640, 1280, 1280],
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
)


@dataclass(frozen=True)
class Architecture:
    """What is needed to build a backbone's UNet and feed it: config, latent scale, text shape."""

    name: str
    hub_id: str | None
    unet_config: dict
    vae_scale_factor: int
    text_tokens: int = 77
    added_cond: dict = field(default_factory=dict)  # SDXL's extra inputs: name -> per-sample shape

    @property
    def text_dim(self) -> int:
        return self.unet_config["cross_attention_dim"]

    def build_unet(self, device: str | torch.device = "meta", dtype=torch.float32) -> UNet2DConditionModel:
        """The UNet with random weights; on the `meta` device it costs no memory (shapes only)."""
        with torch.device(device):
            unet = UNet2DConditionModel.from_config(self.unet_config)
        return unet if dtype == torch.float32 else unet.to(dtype)

    def dummy_inputs(self, batch: int, latent_size: tuple[int, int], device="meta", dtype=torch.float32) -> dict:
        """Zero conditioning inputs of the right shapes (text embedding and SDXL's added inputs)."""
        def zeros(*shape):
            return torch.zeros(*shape, device=device, dtype=dtype)
        kwargs = {"encoder_hidden_states": zeros(batch, self.text_tokens, self.text_dim)}
        if self.added_cond:
            kwargs["added_cond_kwargs"] = {k: zeros(batch, *shape) for k, shape in self.added_cond.items()}
        return kwargs


ARCHITECTURES = {
    "sd15": Architecture("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5",
                         dict(_SD_COMMON, attention_head_dim=8, cross_attention_dim=768), 8),
    "sd21": Architecture("sd21", "stabilityai/stable-diffusion-2-1-base",
                         dict(_SD_COMMON, attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024,
                              use_linear_projection=True), 8),
    "sdxl": Architecture("sdxl", "stabilityai/stable-diffusion-xl-base-1.0",
                         dict(_SD_COMMON, sample_size=128, block_out_channels=[320, 640, 1280],
                              down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                              up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                              attention_head_dim=[5, 10, 20], transformer_layers_per_block=[1, 2, 10],
                              cross_attention_dim=2048, use_linear_projection=True,
                              addition_embed_type="text_time", addition_time_embed_dim=256,
                              projection_class_embeddings_input_dim=2816),
                         8, added_cond={"text_embeds": (1280,), "time_ids": (6,)}),
    # The embedded backbone: SD-shaped (mid-block transformer, three transformers per decoder level)
    # but small enough to train and run on a laptop CPU; 64 px images, 16x16 latents. Backbone v2 is
    # 64/128/128 wide (v1: 32/64/128, whose UNet regressed the toy's identity detail to its mean).
    "tiny": Architecture("tiny", None,
                         dict(_SD_COMMON, sample_size=16, block_out_channels=[64, 128, 128], norm_num_groups=8,
                              down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                              up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                              attention_head_dim=4, cross_attention_dim=64), 4, text_tokens=16),
}


def backbone_fingerprint(unet) -> str:
    """A short hash of the UNet's architecture config: caches and adapters carry it.

    Private keys (`_name_or_path`, `_diffusers_version`, ...) are left out so the same
    architecture loaded from another folder or diffusers release keeps its fingerprint.
    """
    config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    blob = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_pipeline(backbone: str = "tiny", device="cpu", dtype=torch.float32):
    """A `StableDiffusionPipeline` for `tiny` (shipped, offline), `sd15`/`sd21` (hub ids) or a folder.

    The shipped backbone is checked against its manifest first, so a missing or corrupted weight
    file is named instead of failing somewhere deep inside `from_pretrained`.
    """
    from diffusers import StableDiffusionPipeline

    from .manifest import verify_manifest

    if backbone == "tiny":
        if not (TINY_BACKBONE / "manifest.json").is_file():
            raise FileNotFoundError(f"the tiny backbone is not in {TINY_BACKBONE}: "
                                    "train it with scripts/train_tiny_backbone.py --export " + str(TINY_BACKBONE))
        source = str(TINY_BACKBONE)
    elif backbone in ARCHITECTURES:
        source = ARCHITECTURES[backbone].hub_id
    else:
        source = backbone
    if (Path(source) / "manifest.json").is_file():
        verify_manifest(source)
    try:
        # dtype is cast afterwards: the keyword's name changed across diffusers versions
        pipe = StableDiffusionPipeline.from_pretrained(source, safety_checker=None, requires_safety_checker=False)
    except OSError as err:
        raise OSError(f"cannot load backbone {source!r} ({err}); SD weights need the network or a local "
                      "copy: pass a folder path") from err
    pipe.set_progress_bar_config(disable=True)
    if dtype is not None and dtype != pipe.unet.dtype:  # weights load in float32: cast only when asked
        pipe = pipe.to(dtype=dtype)
    return pipe.to(device)
