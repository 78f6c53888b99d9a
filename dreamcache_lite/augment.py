"""The paper's reference augmentation: the subject cut out of its target, moved, flipped, erased.

Training pairs are (target, reference made from the target). Without augmentation the adapters
would learn to copy the reference pixel for pixel to the same place; the random scale, position,
flip and erasing make them carry the subject's identity instead. Pure numpy on uint8 images of
any square size (the toy world's 64 px and real 512 px datasets alike).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def random_erase(img, rng, p=0.4):
    """Random erasing (p 0.4, as in the paper): a white or gray box over part of the image."""
    if rng.random() >= p:
        return img
    size = img.shape[0]
    area, aspect = rng.uniform(0.02, 0.2) * size * size, np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
    h, w = (min(size - 1, max(2, int(round(x)))) for x in (np.sqrt(area * aspect), np.sqrt(area / aspect)))
    y0, x0 = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    img[y0:y0 + h, x0:x0 + w] = 255 if rng.random() < 0.5 else 128
    return img


def reference_from_target(image, mask, rng, flip_p=0.5, erase_p=0.4, return_placement=False):
    """The paper's training reference: cut the masked subject out of a target, paste it on
    white at a random scale/position, h-flip the pixels (this mirrors glyph and pattern too;
    pass flip_p=0 to keep them readable) and randomly erase. uint8 (64,64,3).
    `return_placement`: also return where each target pixel went (`map_to_reference`'s argument),
    the ground truth a correspondence probe needs."""
    rng = np.random.default_rng(rng)
    size = image.shape[0]  # any square size: the same recipe serves real 512 px datasets
    out = np.full((size, size, 3), 255, np.uint8)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return (out, None) if return_placement else out
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.where(mask[y0:y1, x0:x1, None], image[y0:y1, x0:x1], 255).astype(np.uint8)
    f = rng.uniform(0.45, 0.85) * size / max(y1 - y0, x1 - x0)
    h, w = (min(size, max(1, int(round(d * f)))) for d in (y1 - y0, x1 - x0))
    crop = np.asarray(Image.fromarray(crop).resize((w, h), Image.BILINEAR))
    py, px = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    out[py:py + h, px:px + w] = crop
    flip = rng.random() < flip_p
    if flip:
        out = out[:, ::-1].copy()
    placement = dict(size=size, crop=(int(y0), int(x0), int(y1), int(x1)), paste=(int(py), int(px), h, w),
                     flip=bool(flip))
    out = random_erase(out, rng, erase_p)
    return (out, placement) if return_placement else out


def map_to_reference(placement: dict, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target pixel coordinates (row, column; pixel i at i, fractions allowed) -> the same point of
    the subject in the reference made by `reference_from_target(..., return_placement=True)`."""
    y0, x0, y1, x1 = placement["crop"]
    py, px, h, w = placement["paste"]
    ry, rx = py + (y - y0) * h / (y1 - y0), px + (x - x0) * w / (x1 - x0)
    return ry, (placement["size"] - 1 - rx if placement["flip"] else rx)
