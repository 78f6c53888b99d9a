"""Reference images in any form -> an RGB picture of the subject on white, at the model's size.

The paper caches the subject cut out and pasted on white; an RGBA image's alpha (or an explicit
mask) does the cutting here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


def to_pil(image) -> Image.Image:
    """A path, PIL image, uint8/float array (HWC or HW) or tensor (CHW/HWC, [0,1] or [-1,1]) -> PIL."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"reference image not found: {path}")
        try:
            with Image.open(path) as img:
                img.load()
                return img.copy()
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read reference image {path}: {err}") from err
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float()
        if image.ndim == 4:
            if image.shape[0] != 1:
                raise ValueError(f"expected one image, got a batch of {image.shape[0]}")
            image = image[0]
        if image.ndim == 3 and image.shape[0] in (1, 3, 4):
            image = image.permute(1, 2, 0)
        image = image.numpy()
        if image.min() < 0:
            image = (image + 1) / 2
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"cannot read an image of shape {array.shape}: expected HxW, HxWx3 or HxWx4")
    if array.dtype != np.uint8:
        if not np.isfinite(array).all():
            raise ValueError("reference image contains NaN or inf")
        array = (np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(array)


def subject_on_white(image, mask=None, size: int = 512) -> Image.Image:
    """RGB `size`x`size` picture with everything outside the mask (or alpha) made white."""
    img = to_pil(image)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if mask is None and has_alpha:
        img = img.convert("RGBA")
        mask = img.getchannel("A")
    rgb = img.convert("RGB")
    if mask is not None:
        alpha = to_pil(mask).convert("L").resize(rgb.size, Image.BILINEAR)
        rgb = Image.composite(rgb, Image.new("RGB", rgb.size, "white"), alpha)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BICUBIC)
    return rgb


def pil_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB PIL images -> (B, 3, H, W) float in [-1, 1], as the VAE expects."""
    return signed_tensor(np.stack([np.asarray(img.convert("RGB")) for img in images]))


def signed_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1], as the VAE expects (the oracle reads [0, 1])."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
