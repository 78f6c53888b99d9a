"""Issue 6 (notebooks 01-02): the analysis helpers behave as promised."""

import numpy as np
import pytest
import torch

from conftest import clusters, random_tiny_pipeline
from dreamcache_lite.cache import capture_block_inputs
from dreamcache_lite.encoders import encode_references
from dreamcache_lite.lab import toyworld as tw
from dreamcache_lite.layers import list_transformers
from dreamcache_lite.teach import analysis as an


# -- probes and retrieval ----------------------------------------------------------------------------
def test_probe_reads_separable_features_and_not_noise():
    x, y = clusters()
    assert an.identity_probe(x, y) > 0.95
    rng = np.random.default_rng(1)
    noise, random_labels = rng.normal(size=(200, 16)), rng.integers(0, 4, 200)
    assert abs(an.identity_probe(noise, random_labels) - 0.25) < 0.12
    # held-out groups: an attribute shared by whole groups is still readable on unseen groups
    groups = np.arange(50) // 5                       # 10 subjects x 5 samples
    attribute = groups % 2                            # an attribute of each subject
    x_attr = np.random.default_rng(2).normal(size=(50, 8)) + 4 * attribute[:, None]
    assert an.identity_probe(x_attr, attribute, groups=groups) > 0.95
    with pytest.raises(ValueError, match="at least 2"):
        an.identity_probe(x[:6], np.arange(6))


def test_retrieval_excludes_self_and_matches_chance():
    x, y = clusters()
    assert an.retrieval_accuracy(x, y) == 1.0
    assert an.retrieval_accuracy(np.eye(4), [0, 1, 2, 3]) == 0.0   # only itself would match
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 400)
    assert abs(an.retrieval_accuracy(rng.normal(size=(400, 8)), labels)
               - an.chance_level(labels, "retrieval")) < 0.08
    pos = np.array([0.0, 1.0, 1.8, 4.0])
    dist = np.abs(pos[:, None] - pos[None])
    kept = dist.copy()
    assert an.top1_from_distances(dist, [0, 0, 1, 1]) == 0.5
    assert np.array_equal(dist, kept)                  # the caller's matrix is untouched


def test_chance_levels():
    assert an.chance_level([0, 0, 1, 1]) == 0.5
    assert an.chance_level([0, 0, 1, 1], "retrieval") == pytest.approx(1 / 3)
    assert an.chance_level([0, 0, 0, 1]) == 0.75
    with pytest.raises(ValueError):
        an.chance_level([0, 1], "nearest")


def test_distance_matrix_is_centred_cosine():
    x = np.array([[10.0, 1.0], [10.0, -1.0], [10.0, 1.1]])  # a big shared component
    d = an.distance_matrix(x)
    assert np.allclose(np.diag(d), 0) and np.allclose(d, d.T)
    assert d[0, 2] < 1e-6 and d[0, 1] > 1.9             # after centring: same vs opposite direction


# -- pooling and pictures ----------------------------------------------------------------------------
def test_pool_tokens():
    tokens = torch.arange(2 * 16 * 3, dtype=torch.float32).reshape(2, 16, 3)
    assert torch.equal(an.pool_tokens(tokens, (4, 4), "mean"), tokens.mean(1))
    pooled = an.pool_tokens(tokens, (4, 4), 2)
    assert pooled.shape == (2, 4 * 3)
    maps = tokens.transpose(1, 2).reshape(2, 3, 4, 4)
    assert torch.allclose(pooled.reshape(2, 3, 2, 2)[:, :, 0, 0], maps[:, :, :2, :2].mean((2, 3)))
    assert an.pool_tokens(tokens, (4, 4), None) is tokens
    with pytest.raises(ValueError, match="pool"):
        an.pool_tokens(tokens, (4, 4), "max")


def test_pca_rgb_paints_regions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8), rng.normal(size=8)
    tokens = np.stack([a if col < 2 else b for row in range(4) for col in range(4)])
    tokens = tokens + 0.01 * rng.normal(size=tokens.shape)
    image = an.pca_rgb(tokens, (4, 4))
    assert image.shape == (4, 4, 3) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1
    left, right = image[:, :2].reshape(-1, 3), image[:, 2:].reshape(-1, 3)
    assert np.abs(left - left.mean(0)).max() < 0.1 and np.abs(right - right.mean(0)).max() < 0.1
    assert np.abs(left.mean(0) - right.mean(0)).max() > 0.8           # the first component separates them
    assert image.std(axis=(0, 1))[1:].max() < 0.1                     # noise components stay near gray
    batch = an.pca_rgb(torch.from_numpy(np.stack([tokens, tokens[::-1]])).float(), (4, 4))
    assert batch.shape == (2, 4, 4, 3)
    assert np.allclose(batch[0], an.pca_rgb(np.stack([tokens, tokens[::-1]]), (4, 4))[0])
    assert an.pca_rgb(rng.normal(size=(16, 2)), (4, 4)).shape == (4, 4, 3)   # fewer than 3 channels
    with pytest.raises(ValueError, match="grid"):
        an.pca_rgb(tokens, (3, 3))


# -- on a (random) tiny pipeline -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipe():
    return random_tiny_pipeline()


def test_list_transformers_follows_the_forward_pass(pipe):
    names = [i.name for i in list_transformers(pipe.unet)]
    order = []
    with capture_block_inputs(pipe.unet, names) as seen:  # the dict fills in call order
        pipe.unet(torch.randn(1, 4, 16, 16), 1, encoder_hidden_states=torch.zeros(1, 16, 64))
        order = list(seen)
    assert order == names


def test_reference_features_shapes_and_determinism(pipe):
    images = [tw.make_reference(tw.benchmark_identities()[i], i) for i in range(3)]
    feats = an.reference_features(pipe, images, layers="all", timestep=1)
    infos = {i.name: i for i in list_transformers(pipe.unet)}
    assert set(feats) == set(infos)
    assert all(feats[n].shape == (3, infos[n].channels) for n in feats)
    latents = encode_references(pipe, images)
    again = an.reference_features(pipe, layers="all", timestep=1, latents=latents)
    assert all(np.array_equal(feats[n], again[n]) for n in feats)
    later = an.reference_features(pipe, layers="all", timestep=600, latents=latents)
    assert not np.allclose(feats["mid_block.attentions.0"], later["mid_block.attentions.0"])
    tokens = an.reference_features(pipe, layers=["mid_block.attentions.0"], latents=latents, pool=None)
    assert tokens["mid_block.attentions.0"].shape == (3, 16, 128)
    assert np.allclose(tokens["mid_block.attentions.0"].mean(1), feats["mid_block.attentions.0"], atol=1e-5)
    grid = an.reference_features(pipe, layers=["up_blocks.2.attentions.0"], latents=latents, pool=2)
    assert grid["up_blocks.2.attentions.0"].shape == (3, 4 * infos["up_blocks.2.attentions.0"].channels)


def test_layer_timestep_sweep(pipe):
    ids = tw.benchmark_identities()[:3]
    images = [tw.make_reference(idn, (j, k)) for j, idn in enumerate(ids) for k in range(3)]
    labels = np.repeat(np.arange(3), 3)
    layers = ["down_blocks.0.attentions.0", "mid_block.attentions.0"]
    out = an.layer_timestep_sweep(pipe, images, labels, layers, (1, 600), verbose=False)
    assert out["layers"] == layers and out["timesteps"] == [1, 600]
    for key in ("probe", "retrieval"):
        assert out[key].shape == (2, 2) and ((0 <= out[key]) & (out[key] <= 1)).all()
