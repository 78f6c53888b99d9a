"""Pair sources: the authors' folder layout with bad samples, and the copy task."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dreamcache_lite.datasets import CopyPairs, FolderPairs
from dreamcache_lite.lab.pairs import ToyPairs


def authors_folder(root, n: int = 6, bad=(1, 4)):
    """`n` samples in the release layout (<name>_generation.png / _mask.png / _caption.txt); the
    samples in `bad` have an unreadable image."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        name = root / f"s{i:02d}"
        image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        mask = np.zeros((32, 32), np.uint8)
        mask[8:24, 8:24] = 255
        if i in bad:
            (root / f"s{i:02d}_generation.png").write_bytes(b"not a png")
        else:
            Image.fromarray(image).save(f"{name}_generation.png")
        Image.fromarray(mask).save(f"{name}_mask.png")
        (root / f"s{i:02d}_caption.txt").write_text(f"a photo of thing {i}")
    return root


def test_bad_samples_are_skipped_the_same_way_in_every_process_and_after_a_resume(tmp_path):
    root = authors_folder(tmp_path / "data")
    walked = FolderPairs(root, resolution=32)
    with pytest.warns(UserWarning, match="skipping unreadable sample"):
        history = [walked.batch(step, 4) for step in range(6)]
    fresh = FolderPairs(root, resolution=32)  # a resumed run or another DataLoader worker
    for step in (5, 3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fresh reader names the bad files once more
            batch = fresh.batch(step, 4)
        assert torch.equal(batch["target"], history[step]["target"])
        assert batch["caption"] == history[step]["caption"]
    assert len(walked.names) == 6 and sorted(walked.skipped) == ["s01", "s04"]


def test_a_folder_without_readable_samples_is_named(tmp_path):
    root = authors_folder(tmp_path / "data", n=2, bad=(0, 1))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable samples left"):
        FolderPairs(root, resolution=32).batch(0, 2)
    with pytest.raises(ValueError, match="unreadable sample"):
        FolderPairs(root, resolution=32, on_error="raise").batch(0, 2)


def test_copy_pairs_hand_the_target_as_reference():
    batch = CopyPairs(ToyPairs()).batch(3, 2)
    assert torch.equal(batch["reference"], batch["target"])
    assert torch.equal(batch["target"], ToyPairs().batch(3, 2)["target"])


def test_training_on_a_folder_with_bad_samples_resumes_exactly(tmp_path):
    from conftest import random_tiny_pipeline
    from dreamcache_lite.training import TrainConfig, train_adapters

    root = authors_folder(tmp_path / "data", n=8, bad=(2, 5))

    def run(out, steps):
        cfg = TrainConfig(dataset=str(root), out=str(out), steps=steps, batch_size=3, checkpoint_every=2,
                          warmup_steps=1, init="paper")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # each run names the bad files once
            return train_adapters(cfg, FolderPairs(root, resolution=64), pipe=random_tiny_pipeline(),
                                  progress=False).state_dict()

    straight = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 4)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
