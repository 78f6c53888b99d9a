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
