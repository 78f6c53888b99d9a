"""The embedded backbone: a tiny Stable-Diffusion-shaped pipeline for the toy world.

Same parts as Stable Diffusion — AutoencoderKL (64 px RGB <-> 16x16x4 latents), a word-level
tokenizer built from the toy world's vocabulary, a small CLIP text encoder, the `tiny`
UNet2DConditionModel of `backbones.py` and a DDIM scheduler — saved as an ordinary diffusers
folder, so `StableDiffusionPipeline.from_pretrained(path)` loads it offline.
"""

from __future__ import annotations

import numpy as np
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from ..backbones import ARCHITECTURES
from ..cache import SD_SCHEDULE
from .toyworld import VOCABULARY

SPECIAL = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """One token per toy-world word; BOS/EOS around the prompt, padded to the UNet's text length."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL + sorted(VOCABULARY))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]", model_max_length=ARCHITECTURES["tiny"].text_tokens)


def build_text_encoder(tokenizer) -> CLIPTextModel:
    spec = ARCHITECTURES["tiny"]
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=spec.text_dim, intermediate_size=4 * spec.text_dim,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=spec.text_tokens,
                            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id)
    return CLIPTextModel(config)


def build_vae() -> AutoencoderKL:
    """64 px RGB <-> 16x16x4: two downsamplings, like SD's VAE with one level fewer."""
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 3,
                         up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[32, 64, 64],
                         layers_per_block=1, latent_channels=4, norm_num_groups=16, sample_size=64)


def build_unet():
    return ARCHITECTURES["tiny"].build_unet("cpu")


def noise_schedule(snr_shift: float = 1.0) -> dict:
    """Stable Diffusion's schedule, or (snr_shift != 1) the same one with every timestep's
    signal-to-noise ratio multiplied by `snr_shift`, given to diffusers as `trained_betas`.

    Why shift: a noise level destroys more of a small image than of a large one, because a large
    image repeats each detail over more pixels (Hoogeboom et al. 2023, "simple diffusion"; SD3's
    resolution shift). The toy's 16x16 latent has 16x fewer pixels than SD's 64x64, so at SD's SNR
    1.44 (t = 300) a one-latent-pixel stripe is already gone; the shift gives the toy's timesteps
    what SD's timesteps leave of a subject."""
    if snr_shift == 1.0:
        return dict(SD_SCHEDULE)
    if snr_shift <= 0:
        raise ValueError(f"snr_shift must be positive, got {snr_shift}")
    t = SD_SCHEDULE["num_train_timesteps"]
    # SD's scaled_linear betas in float64 (diffusers computes them in float32, ~1e-4 apart after the
    # shift): the shipped backbone's config holds exactly these, so its reproduce commands stay exact
    betas = np.linspace(SD_SCHEDULE["beta_start"] ** 0.5, SD_SCHEDULE["beta_end"] ** 0.5, t) ** 2
    alpha_bar = np.cumprod(1 - betas)
    shifted = snr_shift * alpha_bar / (1 + (snr_shift - 1) * alpha_bar)  # SNR' = shift * SNR
    betas = 1 - shifted / np.concatenate([[1.0], shifted[:-1]])
    return dict(SD_SCHEDULE, trained_betas=[float(b) for b in betas])  # diffusers uses trained_betas when given


def training_scheduler(snr_shift: float = 1.0) -> DDPMScheduler:
    return DDPMScheduler(**noise_schedule(snr_shift))


def sampling_scheduler(snr_shift: float = 1.0) -> DDIMScheduler:
    return DDIMScheduler(**noise_schedule(snr_shift), clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def assemble_pipeline(vae, text_encoder, tokenizer, unet, snr_shift: float = 1.0) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=sampling_scheduler(snr_shift), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def random_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """The embedded backbone's architecture with random weights (tests; the notebooks before it ships)."""
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    vae = build_vae()
    vae.register_to_config(scaling_factor=1.0)
    pipe = assemble_pipeline(vae, build_text_encoder(tokenizer).eval(), tokenizer, build_unet().eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe
