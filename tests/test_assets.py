"""Issue 3: the shipped tiny backbone loads offline, matches its manifest, names damaged files."""

import shutil

import pytest
from diffusers import StableDiffusionPipeline
from PIL import Image

from dreamcache_lite.assets import TINY_BACKBONE
from dreamcache_lite.backbones import load_pipeline
from dreamcache_lite.manifest import verify_manifest

pytestmark = pytest.mark.skipif(not (TINY_BACKBONE / "manifest.json").is_file(),
                                reason="the tiny backbone is not shipped yet (train: scripts/train_tiny_backbone.py)")


def test_shipped_backbone_matches_its_manifest_and_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manifest = verify_manifest(TINY_BACKBONE)
    assert {"command", "config", "files", "wall_seconds"} <= set(manifest)
    size = sum((TINY_BACKBONE / name).stat().st_size for name in manifest["files"])
    assert size <= 40 * 2**20
    pipe = load_pipeline("tiny")
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 64


@pytest.mark.parametrize("damage", ["corrupt", "delete"])
def test_damaged_weight_file_is_named(tmp_path, damage):
    copy = tmp_path / "backbone"
    shutil.copytree(TINY_BACKBONE, copy)
    victim = next(copy.glob("unet/*.safetensors"))
    if damage == "corrupt":
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
        error = ValueError
    else:
        victim.unlink()
        error = FileNotFoundError
    with pytest.raises(error, match=victim.name):
        load_pipeline(str(copy))


def test_the_dreamcache_pipeline_takes_registry_names():
    from dreamcache_lite.pipeline import DreamCachePipeline

    dc = DreamCachePipeline.from_pretrained("tiny")
    assert dc.resolution == 64 and dc.adapters is None


def test_sdedit_keeps_the_start_image_at_low_strength():
    from dreamcache_lite.lab import toyworld as tw
    from dreamcache_lite.images import pil_to_tensor
    from dreamcache_lite.pipeline import DreamCachePipeline

    dc = DreamCachePipeline.from_pretrained("tiny")
    scene = tw.render(tw.benchmark_identities()[0], tw.benchmark_scene(tw.BENCHMARK_PROMPTS[0], 0))[0]
    start = pil_to_tensor([Image.fromarray(scene)])
    distance = {}
    for strength in (0.1, 1.0):
        out = dc(["a ball"], None, steps=10, seed=0, init_images=start, strength=strength, output_type="latent",
                 progress=False)
        distance[strength] = (out - dc.encode_images(start)).abs().mean().item()
    assert distance[0.1] < 0.25 * distance[1.0]


def test_shipped_backbone_was_trained_on_the_world_the_package_draws():
    from dreamcache_lite.lab.toyworld import WORLD_VERSION

    assert verify_manifest(TINY_BACKBONE).get("world_version", 1) == WORLD_VERSION
