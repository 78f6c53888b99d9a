"""Layer selection: presets and explicit names on any diffusers UNet."""

import pytest

from dreamcache_lite.layers import list_transformers, select_layers


def test_presets_and_errors(unet):
    names = [i.name for i in list_transformers(unet)]
    assert [i.name for i in select_layers(unet, "all")] == names
    assert all(i.part == "encoder" for i in select_layers(unet, "encoder"))
    assert [i.name for i in select_layers(unet, "mid")] == ["mid_block.attentions.0"]
    with pytest.raises(ValueError, match="paper, mid, decoder, encoder, all"):
        select_layers(unet, "middle")
    with pytest.raises(ValueError, match="mid_block.attentions.0"):
        select_layers(unet, ["up_blocks.9.attentions.0"])
