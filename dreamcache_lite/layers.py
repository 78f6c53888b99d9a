"""Which spatial transformers of a UNet get a cache and an adapter.

DreamCache caches the *input* of a few `Transformer2DModel`s of the frozen UNet and puts one
conditioning adapter inside each of their transformer blocks. This module finds those
transformers by name in any `UNet2DConditionModel` and resolves the presets the paper ablates.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers.models.transformers.transformer_2d import Transformer2DModel

PRESETS = ("paper", "mid", "decoder", "encoder", "all")
PARTS = ("encoder", "mid", "decoder")


@dataclass(frozen=True)
class LayerInfo:
    """One spatial transformer: its module name, input channels, number of transformer blocks."""

    name: str
    channels: int
    depth: int

    @property
    def part(self) -> str:
        """'encoder', 'mid' or 'decoder', from where the transformer sits in the UNet."""
        if self.name.startswith("down_blocks."):
            return "encoder"
        if self.name.startswith("mid_block."):
            return "mid"
        return "decoder"


def list_transformers(unet) -> list[LayerInfo]:
    """All spatial transformers of `unet` in forward order (encoder, mid, decoder)."""
    found = [
        LayerInfo(name, module.config.in_channels, len(module.transformer_blocks))
        for name, module in unet.named_modules()
        if isinstance(module, Transformer2DModel)
    ]
    # diffusers registers `mid_block` after `up_blocks`; sort (stably) into the order of the forward
    return sorted(found, key=lambda info: PARTS.index(info.part))


def select_layers(unet, layers: str | list[str] | tuple[str, ...] = "paper") -> list[LayerInfo]:
    """Resolve a preset name or an explicit list of transformer names to `LayerInfo`s.

    `paper` is the paper's choice: the mid-block transformer plus every second decoder
    transformer (on SD 1.5/2.1: mid_block.attentions.0, up_blocks.1.attentions.1,
    up_blocks.2.attentions.0, up_blocks.2.attentions.2, up_blocks.3.attentions.1).
    """
    available = list_transformers(unet)
    by_part = {part: [info for info in available if info.part == part] for part in PARTS}
    if isinstance(layers, str):
        presets = {
            "paper": by_part["mid"] + by_part["decoder"][1::2],
            "mid": by_part["mid"],
            "decoder": by_part["decoder"],
            "encoder": by_part["encoder"],
            "all": available,
        }
        if layers not in presets:
            raise ValueError(f"unknown layer preset {layers!r}; valid presets: {', '.join(PRESETS)} "
                             "(or pass an explicit list of transformer names)")
        chosen = presets[layers]
    else:
        by_name = {info.name: info for info in available}
        unknown = [name for name in layers if name not in by_name]
        if unknown:
            raise ValueError(f"unknown transformer name(s) {unknown}; this UNet has: "
                             f"{', '.join(by_name)}")
        chosen = [by_name[name] for name in dict.fromkeys(layers)]
    if not chosen:
        raise ValueError(f"layer selection {layers!r} is empty for this UNet")
    return chosen
