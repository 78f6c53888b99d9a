"""Issue 7: importing the authors' released adapter checkpoint (ldm names, SD 2.1-base)."""

import pytest
import torch

from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.backbones import ARCHITECTURES
from dreamcache_lite.files import load_tensors
from dreamcache_lite.official import convert_official, ldm_block_to_diffusers

BLOCKS = {"middle_block.1": 1280, "output_blocks.4.1": 1280, "output_blocks.6.1": 640,
          "output_blocks.8.1": 640, "output_blocks.10.1": 320}


def release_like_state_dict() -> dict:
    """Exactly the release's layout and shapes, random values (fp16 to keep the file small)."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for block, d in BLOCKS.items():
        base = f"diffusion_model.{block}.transformer_blocks.0."
        shapes = {"attn_mem.to_q.weight": (d, d), "attn_mem.to_k.weight": (d, d), "attn_mem.to_v.weight": (d, d),
                  "attn_mem.to_out.0.weight": (d, d), "attn_mem.to_out.0.bias": (d,), "norm2_mem.weight": (d,),
                  "norm2_mem.bias": (d,), "linear_cat.weight": (d, 2 * d), "linear_cat.bias": (d,)}
        state.update({base + k: torch.randn(s, generator=gen).half() for k, s in shapes.items()})
    return state


def test_ldm_names_map_to_the_paper_preset():
    assert [ldm_block_to_diffusers(b) for b in BLOCKS] == [
        "mid_block.attentions.0", "up_blocks.1.attentions.1", "up_blocks.2.attentions.0",
        "up_blocks.2.attentions.2", "up_blocks.3.attentions.1"]


@pytest.mark.filterwarnings("ignore:.*meta parameter")  # the SD 2.1 UNet is built shape-only, on `meta`
def test_release_round_trips_into_sd21_adapters(tmp_path):
    state = release_like_state_dict()
    assert sum(t.numel() for t in state.values()) == 25_207_040
    torch.save(state, tmp_path / "release.pt")
    convert_official(tmp_path / "release.pt", tmp_path / "adapters.safetensors")
    tensors, meta = load_tensors(tmp_path / "adapters.safetensors", "dreamcache-lite/adapters")
    block = "up_blocks.2.attentions.0.transformer_blocks.0"
    assert torch.equal(tensors[f"{block}.norm_mem.weight"],
                       state["diffusion_model.output_blocks.6.1.transformer_blocks.0.norm2_mem.weight"])
    assert torch.equal(tensors[f"{block}.linear_cat.weight"],
                       state["diffusion_model.output_blocks.6.1.transformer_blocks.0.linear_cat.weight"])
    unet = ARCHITECTURES["sd21"].build_unet("meta")
    adapters = DreamCacheAdapters.from_file(unet, tmp_path / "adapters.safetensors")  # layers, channels, backbone
    assert adapters.num_parameters() == 25_207_040


def test_wrong_layout_lists_missing_and_unexpected_keys(tmp_path):
    state = release_like_state_dict()
    del state["diffusion_model.middle_block.1.transformer_blocks.0.linear_cat.bias"]
    state["diffusion_model.output_blocks.5.1.transformer_blocks.0.linear_cat.bias"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"missing keys \['diffusion_model.middle_block.1.*unexpected keys"):
        convert_official(tmp_path / "bad.pt", tmp_path / "out.safetensors")


def test_converted_release_loads_on_a_unet_with_real_weights(tmp_path):
    """The converter records init 'official'; loading must not try to re-initialise with it
    (the meta-device test above skips initialisation, which once hid this)."""
    from conftest import make_unet
    from dreamcache_lite.adapters import DreamCacheAdapters as Adapters

    unet = make_unet()
    source = Adapters(unet, "paper", init="paper")
    tensors = source.state_dict()
    meta = {**source.metadata(), "init": "official", "extra": {}}
    source.uninstall()
    from dreamcache_lite.files import save_tensors
    save_tensors(tmp_path / "converted.safetensors", tensors, "dreamcache-lite/adapters", meta)
    loaded = Adapters.from_file(unet, tmp_path / "converted.safetensors")
    assert loaded.init == "official"
    assert all(torch.equal(tensors[k], v) for k, v in loaded.state_dict().items())


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    (tmp_path / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n not a checkpoint")
    with pytest.raises(ValueError, match="picture.png: not a PyTorch checkpoint"):
        convert_official(tmp_path / "picture.png", tmp_path / "out.safetensors")
