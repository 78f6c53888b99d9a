"""Issue 5: the reference-only baseline — two UNet passes per step, the reference matters, clean uninstall."""

import numpy as np
import torch

from conftest import random_tiny_pipeline
from dreamcache_lite.lab.baselines import IDENTIFIER, dreambooth, generate_reference_only
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


def test_dreambooth_changes_the_unet_inside_and_restores_it_exactly():
    dc = DreamCachePipeline(random_tiny_pipeline())
    before = {k: v.clone() for k, v in dc.pipe.unet.state_dict().items()}
    reference = np.full((64, 64, 3), 240, np.uint8)
    reference[20:44, 20:44] = (200, 30, 30)
    plain = dc(["a ball"], None, steps=2, progress=False, output_type="latent")
    with dreambooth(dc, reference, "ball", steps=3, batch_size=2, prior_images=2, lr=1e-3) as word:
        assert word == IDENTIFIER
        tuned = dc(["a ball"], None, steps=2, progress=False, output_type="latent")
        assert not dc.pipe.unet.training
    assert not torch.allclose(plain, tuned)
    after = dc.pipe.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for p in dc.pipe.unet.parameters())
