"""Training pairs for the adapters: (target image, caption, reference made from the target).

A *pair source* is any object with `batch(step, size) -> dict` (target, reference, caption,
mask); batch `step` must always be the same, so resumed runs see the same data. Here: a folder in
the authors' layout (`<name>_generation.png`, `<name>_caption.txt`, `<name>_mask.png`) for real
backbones, whose references are the paper's (`augment.reference_from_target`); the copy task over
any source; and the batching that lets DataLoader workers render ahead. The toy world's source
lives in the laboratory (`lab/pairs.py`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .augment import reference_from_target
from .images import signed_tensor


def pairs_batch(targets: np.ndarray, references: np.ndarray, captions: list[str], masks: np.ndarray) -> dict:
    """Images in [-1, 1]; `mask` (N, 1, H, W) is 1 on the target's subject (for a subject-weighted loss)."""
    return {"target": signed_tensor(np.asarray(targets, np.uint8)),
            "reference": signed_tensor(np.asarray(references, np.uint8)), "caption": list(captions),
            "mask": torch.from_numpy(np.asarray(masks, np.float32))[:, None]}


class StepBatches(torch.utils.data.Dataset):
    """Item i is batch `start + i` of a pair source: lets DataLoader workers render batches ahead."""

    def __init__(self, source, size: int, start: int, stop: int):
        self.source, self.size, self.indices = source, size, range(start, stop)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.source.batch(self.indices[i], self.size)


class CopyPairs:
    """Any pair source with every reference replaced by its own target: the copy task, where the
    cache holds the clean answer (the test that the adapters can use a reference at all)."""

    def __init__(self, source):
        self.source = source

    def batch(self, step: int, size: int) -> dict:
        batch = dict(self.source.batch(step, size))
        batch["reference"] = batch["target"]
        if "correspondence" in batch:  # every subject pixel is its own answer
            mask = batch["mask"].bool()
            ys, xs = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in mask.shape[-2:]), indexing="ij")
            batch["correspondence"] = torch.where(mask, torch.stack([ys, xs]), float("nan"))
        return batch


class FolderPairs:
    """The authors' dataset layout. Unreadable or mismatched samples are reported with their path,
    then skipped (`on_error="skip"`) or fatal (`on_error="raise"`)."""

    def __init__(self, root, resolution: int = 512, seed: int = 0, on_error: str = "skip"):
        if on_error not in ("skip", "raise"):
            raise ValueError("on_error must be 'skip' or 'raise'")
        self.root, self.resolution, self.seed, self.on_error = Path(root), resolution, seed, on_error
        names = sorted(p.name[: -len("_generation.png")] for p in self.root.glob("*_generation.png"))
        if not names:
            raise FileNotFoundError(f"no '<name>_generation.png' files in {self.root}")
        self.names = names
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def load(self, name: str):
        """(image uint8 HxWx3, mask bool HxW, caption) of one sample, or an error naming the file."""
        base = self.root / name
        try:
            image = Image.open(f"{base}_generation.png").convert("RGB")
            mask = Image.open(f"{base}_mask.png").convert("L")
            caption = Path(f"{base}_caption.txt").read_text().strip()
        except (OSError, UnidentifiedImageError) as err:
            raise ValueError(f"unreadable sample {base}_*: {err}") from err
        if image.size != mask.size:
            raise ValueError(f"{base}_mask.png is {mask.size}, but {base}_generation.png is {image.size}")
        size = (self.resolution, self.resolution)
        return (np.asarray(image.resize(size, Image.BICUBIC)),
                np.asarray(mask.resize(size, Image.NEAREST)) > 127, caption)

    def batch(self, step: int, size: int) -> dict:
        rng = np.random.default_rng((self.seed, step))
        targets, references, captions, masks = [], [], [], []
        while len(targets) < size:
            name = self.names[int(rng.integers(len(self.names)))]
            try:
                image, mask, caption = self.load(name)
            except ValueError as err:
                if self.on_error == "raise":
                    raise
                # The list of names never changes: whether a draw is skipped depends on the file
                # alone, so batch `step` is the same in every worker and after any resume.
                if name not in self.skipped:
                    warnings.warn(f"skipping {err}")
                    self.skipped.append(name)
                if len(self.skipped) == len(self.names):
                    raise ValueError(f"no readable samples left in {self.root}") from err
                continue
            targets.append(image)
            references.append(reference_from_target(image, mask, rng, flip_p=0.5))
            captions.append(caption)
            masks.append(mask)
        return pairs_batch(np.stack(targets), np.stack(references), captions, np.stack(masks))
