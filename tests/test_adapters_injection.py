"""Adapter variants: the spatial-sum injection (the paper's ablation) and the cosine reference attention
(this package's option) beside the defaults; both round-trip through files."""

import pytest
import torch

from conftest import reference_cache, run
from dreamcache_lite.adapters import DreamCacheAdapters


def test_sum_injection_drops_linear_cat_and_starts_as_an_exact_no_op(unet, inputs):
    plain = run(unet, inputs)
    concat = DreamCacheAdapters(unet, "paper")
    concat_params = concat.num_parameters()
    concat.uninstall()
    adapters = DreamCacheAdapters(unet, "paper", injection="sum")
    linear_cat = sum(2 * d * d + d for d in (p.norm_mem.normalized_shape[0] for p in adapters.processors.values()))
    assert adapters.num_parameters() == concat_params - linear_cat
    assert not any("linear_cat" in k for k in adapters.state_dict())
    with adapters.reference(reference_cache(unet, batch=2)):
        assert torch.equal(run(unet, inputs), plain)  # identity init: to_out = 0


def test_sum_injection_uses_the_reference_once_trained(unet, inputs):
    adapters = DreamCacheAdapters(unet, "paper", injection="sum", init="paper")
    plain = run(unet, inputs)
    with adapters.reference(reference_cache(unet, batch=2)):
        assert not torch.allclose(run(unet, inputs), plain)
        first = run(unet, inputs)
    with adapters.reference(reference_cache(unet, batch=2), precompute=True):
        assert torch.allclose(run(unet, inputs), first, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("option, value, named, bad", [("injection", "sum", "'sum' injection", "product"),
                                                     ("attention", "cosine", "'cosine' reference attention", "dot"),
                                                     ("attention", "positional", "'positional' reference attention",
                                                      "dot")])
def test_options_round_trip_and_a_mismatch_is_named(unet, tmp_path, option, value, named, bad):
    adapters = DreamCacheAdapters(unet, "paper", init="paper", **{option: value})
    adapters.save(tmp_path / "adapters.safetensors")
    adapters.uninstall()
    loaded = DreamCacheAdapters.from_file(unet, tmp_path / "adapters.safetensors")
    assert getattr(loaded, option) == value
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), adapters.state_dict().values()))
    loaded.uninstall()
    default = DreamCacheAdapters(unet, "paper")
    with pytest.raises(ValueError, match=named):
        default.load_weights(tmp_path / "adapters.safetensors")
    default.uninstall()
    with pytest.raises(ValueError, match=f"unknown {'injection' if option == 'injection' else 'reference attention'}"):
        DreamCacheAdapters(unet, "paper", **{option: bad})
