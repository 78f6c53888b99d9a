"""The embedded backbone: a tiny Stable-Diffusion-shaped pipeline for the toy world.

Same parts as Stable Diffusion — AutoencoderKL (64 px RGB <-> 16x16x4 latents), a word-level
tokenizer built from the toy world's vocabulary, a small CLIP text encoder, the `tiny`
UNet2DConditionModel of `backbones.py` and a DDIM scheduler — saved as an ordinary diffusers
folder, so `StableDiffusionPipeline.from_pretrained(path)` loads it offline.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from ..backbones import ARCHITECTURES
from .toyworld import VOCABULARY

SPECIAL = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


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


def training_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SD_SCHEDULE)


def sampling_scheduler() -> DDIMScheduler:
    return DDIMScheduler(**SD_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def assemble_pipeline(vae, text_encoder, tokenizer, unet) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=sampling_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


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
