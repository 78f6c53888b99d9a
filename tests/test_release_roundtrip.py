"""The authors' SD 2.1 release, end to end on an SD 2.1-shaped UNet with real (random) weights.

A checkpoint in the release's layout -> `convert-official` -> `cache` -> `generate` through the
CLI on a local pipeline folder; and the converted adapters reproduce the authors' block, written
here from the paper as an ldm BasicTransformerBlock would compute it, for the same weights.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
from PIL import Image
from test_official import release_like_state_dict
from transformers import CLIPTextConfig, CLIPTextModel

from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.backbones import ARCHITECTURES
from dreamcache_lite.cache import CACHE_KIND, SD_SCHEDULE, cache_features
from dreamcache_lite.cli import main
from dreamcache_lite.files import load_tensors
from dreamcache_lite.official import PREFIX, convert_official
from dreamcache_lite.lab.tiny_backbone import build_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore:.*meta parameter")  # the converter checks shapes on `meta`


@pytest.fixture(scope="module")
def sd21_unet():
    torch.manual_seed(0)
    return ARCHITECTURES["sd21"].build_unet("cpu").eval().requires_grad_(False)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    state = release_like_state_dict()
    state = {k: v * 0.02 if k.endswith(".weight") and "norm" not in k else v for k, v in state.items()}
    torch.save(state, folder / "release.pt")  # scaled like trained weights, so activations stay finite
    convert_official(folder / "release.pt", folder / "adapters.safetensors")
    return state, folder / "adapters.safetensors"


def _authors_block(block, x, text, cache_tokens, weights):
    """One ldm BasicTransformerBlock with the release's adapter, as the paper states it:
    x += linear_cat([attn1(norm1(x)) ; attn_mem(norm2_mem(x), cache)]); then attn2 and ff as usual."""
    d, heads = x.shape[-1], block.attn1.heads

    def split(t):
        return t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

    q = split(F.linear(F.layer_norm(x, (d,), weights["norm2_mem.weight"], weights["norm2_mem.bias"]),
                       weights["attn_mem.to_q.weight"]))
    k, v = (split(F.linear(cache_tokens, weights[f"attn_mem.to_{n}.weight"])) for n in "kv")
    sim = torch.einsum("bhid,bhjd->bhij", q, k) * q.shape[-1] ** -0.5
    m = torch.einsum("bhij,bhjd->bhid", sim.softmax(-1), v).transpose(1, 2).reshape(x.shape)
    m = F.linear(m, weights["attn_mem.to_out.0.weight"], weights["attn_mem.to_out.0.bias"])
    s = block.attn1(block.norm1(x))
    x = F.linear(torch.cat([s, m], -1), weights["linear_cat.weight"], weights["linear_cat.bias"]) + x
    x = block.attn2(block.norm2(x), encoder_hidden_states=text) + x
    return block.ff(block.norm3(x)) + x


def test_converted_adapters_reproduce_the_authors_blocks(sd21_unet, release):
    state, converted = release
    adapters = DreamCacheAdapters.from_file(sd21_unet, converted)
    gen = torch.Generator().manual_seed(0)
    latents, text = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 77, 1024, generator=gen)
    cache = cache_features(sd21_unet, torch.randn(1, 4, 8, 8, generator=gen), torch.zeros(1, 77, 1024),
                           layers=[i.name for i in adapters.layers], generator=gen)
    seen = {}
    ldm = {"mid_block.attentions.0": "middle_block.1", "up_blocks.3.attentions.1": "output_blocks.10.1"}
    for layer in ldm:
        block = sd21_unet.get_submodule(f"{layer}.transformer_blocks.0")
        block.register_forward_hook(lambda mod, args, kwargs, out, layer=layer: seen.__setitem__(
            layer, (args[0] if args else kwargs["hidden_states"], out)), with_kwargs=True)
    try:
        with adapters.reference(cache):
            sd21_unet(latents, 500, encoder_hidden_states=text)
    finally:
        for layer in ldm:
            sd21_unet.get_submodule(f"{layer}.transformer_blocks.0")._forward_hooks.clear()
    worst = 0.0
    for layer, name in ldm.items():
        x, ours = seen[layer]
        prefix = f"{PREFIX}{name}.transformer_blocks.0."
        weights = {k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix)}
        with torch.no_grad():  # the reference is off again: attn1 computes the frozen `s` only
            theirs = _authors_block(sd21_unet.get_submodule(f"{layer}.transformer_blocks.0"), x, text,
                                    cache.tokens[layer], weights)
        worst = max(worst, (ours - theirs).abs().max().item() / theirs.abs().max().item())
    adapters.uninstall()
    print(f"max relative difference to the authors' block: {worst:.2e}")
    assert worst < 1e-5  # measured 1.0e-7 (SDPA against an explicit softmax)


def _sd21_shaped_folder(unet, folder):
    """SD 2.1's UNet (real random weights, fp16 on disk) with a small VAE (factor 8) and text encoder."""
    tokenizer = build_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=1024, intermediate_size=256,
                                                num_hidden_layers=1, num_attention_heads=16,
                                                max_position_embeddings=tokenizer.model_max_length,
                                                pad_token_id=tokenizer.pad_token_id,
                                                bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id))
    vae = AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        block_out_channels=[8, 8, 8, 8], layers_per_block=1, norm_num_groups=4, latent_channels=4)
    scheduler = DDIMScheduler(**SD_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet.half(),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    unet.float()
    return folder


@pytest.mark.slow
def test_release_to_an_image_through_the_cli(sd21_unet, release, tmp_path, capsys):
    _, converted = release
    folder = _sd21_shaped_folder(sd21_unet, tmp_path / "sd21-shaped")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(tmp_path / "ref.png")
    backbone = ["--backbone", str(folder), "--adapters", str(converted)]
    assert main(["cache", str(tmp_path / "ref.png"), "-o", str(tmp_path / "ref.safetensors"), *backbone]) == 0
    assert main(["generate", "--cache", str(tmp_path / "ref.safetensors"), "--prompt", "a red ball", "-n", "1",
                 "--steps", "2", "-o", str(tmp_path / "out.png"), *backbone]) == 0
    image = np.asarray(Image.open(tmp_path / "out.png"))
    assert image.shape == (512, 512, 3) and image.std() > 0
    _, meta = load_tensors(tmp_path / "ref.safetensors", CACHE_KIND)
    assert sorted(meta["layers"]) == ["mid_block.attentions.0", "up_blocks.1.attentions.1",
                                      "up_blocks.2.attentions.0", "up_blocks.2.attentions.2",
                                      "up_blocks.3.attentions.1"]
