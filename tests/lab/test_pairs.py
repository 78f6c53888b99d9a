"""The pair sources the command line names: `toyworld` or a folder in the authors' layout."""

import pytest
import torch

from conftest import random_tiny_pipeline
from dreamcache_lite.lab.pairs import ToyPairs, make_dataset, training_pairs
from dreamcache_lite.training import TrainConfig


def test_toy_pairs_give_the_same_batch_every_time():
    a, b = ToyPairs(seed=3).batch(5, 2), ToyPairs(seed=3).batch(5, 2)
    assert all(torch.equal(a[k], b[k]) for k in ("target", "reference", "mask")) and a["caption"] == b["caption"]
    assert a["target"].shape == (2, 3, 64, 64) and a["target"].min() >= -1 and a["target"].max() <= 1


def test_a_config_names_its_pairs(tmp_path):
    cfg = TrainConfig(seed=4, n_identities=2, describe_p=0.0)
    pairs = training_pairs(cfg, random_tiny_pipeline())
    assert isinstance(pairs, ToyPairs) and (pairs.seed, pairs.n_identities, pairs.describe_p) == (4, 2, 0.0)
    with pytest.raises(FileNotFoundError, match="_generation.png"):
        make_dataset(str(tmp_path), 64)


def test_aligned_references_show_the_subject_where_the_target_has_it():
    """The control: same targets and captions; the reference is the target's subject in place on white."""
    from dreamcache_lite.lab import toyworld

    moved = toyworld.render_batch(6, seed=11, flip_p=0.0)
    aligned = toyworld.render_batch(6, seed=11, flip_p=0.0, aligned=True)
    assert (moved["target"] == aligned["target"]).all() and moved["caption"] == aligned["caption"]
    plain = [i for i, s in enumerate(aligned["scene"]) if s.accessory == "none" and not s.recolour and s.size == "normal"]
    assert plain
    for i in plain:  # nothing changed between target and reference scene: the subject's pixels are copied
        mask = aligned["mask"][i]
        assert (aligned["reference"][i][mask] == aligned["target"][i][mask]).all()
        assert (aligned["reference"][i][~mask] == 255).all()
    cfg = TrainConfig(aligned_references=True)
    assert training_pairs(cfg, random_tiny_pipeline()).aligned
    with pytest.raises(ValueError, match="toy-world control"):
        make_dataset("some/folder", 64, aligned=True)


def test_pairs_know_where_each_target_pixel_lies_in_the_reference():
    """`correspondence`: NaN off the subject; on plain scenes it points at the same colour in the
    moved reference; for copies (reference = target) every pixel is its own answer."""
    import numpy as np

    from dreamcache_lite.datasets import CopyPairs
    from dreamcache_lite.lab import toyworld

    pairs = toyworld.render_batch(8, seed=3, flip_p=0.0)
    for target, mask, reference, where, scene in zip(pairs["target"], pairs["mask"], pairs["reference"],
                                                     pairs["correspondence"], pairs["scene"]):
        assert where.shape == (2, 64, 64) and (np.isfinite(where[0]) == mask).all()
        if scene.accessory == "none" and not scene.recolour and scene.size == "normal":
            ys, xs = np.nonzero(mask)
            ry, rx = (np.round(c[mask]).astype(int).clip(0, 63) for c in where)
            same = np.abs(reference[ry, rx].astype(int) - target[ys, xs]).mean(-1) < 30
            assert same.mean() > 0.6  # the rest: resampling blur at pattern edges, erased patches
    batch = CopyPairs(ToyPairs(seed=3)).batch(0, 2)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    on = batch["mask"][:, 0].bool()
    assert torch.equal(batch["correspondence"][:, 0][on], ys.expand(2, 64, 64)[on])
    assert torch.equal(batch["correspondence"][:, 1][on], xs.expand(2, 64, 64)[on])
    assert batch["correspondence"][:, 0][~on].isnan().all()
