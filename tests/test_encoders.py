"""The shared encoders: the pipeline, training and analysis encode a reference the same way."""

import numpy as np
import torch

from conftest import random_tiny_pipeline
from dreamcache_lite import encoders
from dreamcache_lite.images import pil_to_tensor, subject_on_white
from dreamcache_lite.pipeline import DreamCachePipeline


def test_pipeline_encodes_through_the_shared_encoders():
    pipe = random_tiny_pipeline()
    dc = DreamCachePipeline(pipe)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(dc.encode_text(["a ball", ""]), encoders.encode_text(pipe, ["a ball", ""]))
    assert torch.equal(dc.encode_images(images), encoders.encode_images(pipe, images))
    assert dc.resolution == encoders.resolution(pipe) == 64


def test_references_are_the_subject_on_white_in_any_batching():
    pipe = random_tiny_pipeline()
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    one_call = encoders.encode_references(pipe, pictures, batch_size=None)
    by_two = encoders.encode_references(pipe, pictures, batch_size=2)
    direct = encoders.encode_images(pipe, pil_to_tensor([subject_on_white(p, None, 64) for p in pictures]))
    assert torch.allclose(one_call, by_two, atol=1e-5) and torch.equal(one_call, direct)
