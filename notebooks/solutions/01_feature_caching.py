"""Reference solutions for notebook 01 (feature caching). Try the exercises first!"""

import torch

from dreamcache_lite.cache import capture_block_inputs

# Exercise 1: SD 1.5, paper preset, 768 px, fp16. Latent 96x96; the five paper layers sit at
# 1/8, 1/4, 1/2, 1/2 and 1/1 of it: grids 12, 24, 48, 48, 96; channels 1280, 1280, 640, 640, 320.
cache_bytes_768 = 2 * (12 * 12 * 1280 + 24 * 24 * 1280 + 48 * 48 * 640 + 48 * 48 * 640 + 96 * 96 * 320)


# Exercise 2: tokens per paper layer from the resolution.
def sd15_token_counts(resolution):
    latent = resolution // 8                      # the VAE downsamples 8x
    downsampling = {"mid_block.attentions.0": 8, "up_blocks.1.attentions.1": 4,
                    "up_blocks.2.attentions.0": 2, "up_blocks.2.attentions.2": 2,
                    "up_blocks.3.attentions.1": 1}
    return {name: (latent // d) ** 2 for name, d in downsampling.items()}


# Exercise 3: the input of another transformer, captured with a forward pre-hook.
@torch.no_grad()
def block_input_tokens(unet, noisy, timestep, text, layer):
    with capture_block_inputs(unet, [layer]) as captured:
        unet(noisy, timestep, encoder_hidden_states=text)
    return captured[layer].flatten(2).transpose(1, 2)     # (B, C, H, W) -> (B, H*W, C)
