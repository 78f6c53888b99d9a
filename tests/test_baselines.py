"""Issue 5: the reference-only baseline — two UNet passes per step, the reference matters, clean uninstall."""

import numpy as np
import torch

from conftest import random_tiny_pipeline
from dreamcache_lite.baselines import generate_reference_only
from dreamcache_lite.pipeline import DreamCachePipeline


def test_reference_only_runs_the_reference_every_step_and_uninstalls():
    dc = DreamCachePipeline(random_tiny_pipeline())
    before = dict(dc.pipe.unet.attn_processors)
    calls = []
    handle = dc.pipe.unet.register_forward_pre_hook(lambda m, a, k: calls.append(a[0].shape[0]), with_kwargs=True)
    try:
        dark = generate_reference_only(dc, ["a ball", "a box"], np.full((64, 64, 3), 20, np.uint8), steps=3,
                                       output_type="latent")
    finally:
        handle.remove()
    assert calls == [1, 4] * 3  # reference pass, then the CFG batch, at every step
    light = generate_reference_only(dc, ["a ball", "a box"], np.full((64, 64, 3), 235, np.uint8), steps=3,
                                    output_type="latent")
    plain = dc(["a ball", "a box"], None, steps=3, progress=False, output_type="latent")
    assert not torch.allclose(dark, light) and not torch.allclose(dark, plain)
    assert all(dc.pipe.unet.attn_processors[k] is v for k, v in before.items())
