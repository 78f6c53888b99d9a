"""The pair sources the command line and scripts name: the toy world, or a folder in the authors' layout.

Training itself takes any pair source (`training.train_adapters(cfg, pairs)`); naming one by a
string (`--dataset toyworld`) is the laboratory's convenience.
"""

from __future__ import annotations

import torch

from .. import encoders
from ..datasets import FolderPairs, pairs_batch
from . import toyworld


class ToyPairs:
    """Toy-world pairs; batch `step` is always the same, so resumed runs see the same data.

    The reference is never pixel-flipped here: the toy renderer draws glyphs unmirrored, so a
    mirrored glyph would teach the adapters a wrong identity. `describe_p`: the share of captions
    that name the colour and pattern (with fewer, the reference is the only source of identity).
    `aligned`: the control where each reference shows the subject at its place in the target
    (`toyworld.sample_training_pair`); same targets and captions as without it.
    """

    def __init__(self, seed: int = 0, n_identities: int | None = None, describe_p: float = 0.5,
                 aligned: bool = False):
        self.seed, self.n_identities, self.describe_p, self.aligned = seed, n_identities, describe_p, aligned

    def batch(self, step: int, size: int) -> dict:
        pairs = toyworld.render_batch(size, seed=self.seed * 1_000_003 + step, n_identities=self.n_identities,
                                      flip_p=0.0, describe_p=self.describe_p, aligned=self.aligned)
        batch = pairs_batch(pairs["target"], pairs["reference"], pairs["caption"], pairs["mask"])
        batch["correspondence"] = torch.from_numpy(pairs["correspondence"])  # for --correspondence-weight
        return batch


def make_dataset(source: str, resolution: int, seed: int = 0, on_error: str = "skip", n_identities=None,
                 describe_p: float = 0.5, aligned: bool = False):
    """`toyworld`, or a folder in the authors' layout."""
    if source == "toyworld":
        return ToyPairs(seed, n_identities, describe_p, aligned)
    if aligned:
        raise ValueError("aligned references are a toy-world control: the folder dataset has no scenes to align")
    return FolderPairs(source, resolution, seed, on_error)


def training_pairs(cfg, pipe):
    """The pairs a `TrainConfig` names (`dataset`, `seed`, `n_identities`, ...), at `pipe`'s resolution."""
    return make_dataset(cfg.dataset, encoders.resolution(pipe), cfg.seed, cfg.on_bad_sample, cfg.n_identities,
                        cfg.describe_p, cfg.aligned_references)
