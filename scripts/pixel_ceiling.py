"""Oracle-free identity ceiling: how far the backbone's SDEdit of the true scene moves the subject's pixels.

The true benchmark scenes (normal size, no recolour) are VAE round-tripped, or re-noised to a share
of the schedule and denoised text-only; over the subject's pixels (the renderer's mask, eroded
twice so outlines do not count) it prints the mean per-pixel CIELAB difference to the true scene
(detail: pattern, glyph) and the difference of the subject's mean colour, per strength and text
scale. It needs no oracle, so it separates what the backbone loses from what a judge misreads.

    python scripts/pixel_ceiling.py                        # shipped backbone, current world
    git show 83bc052:dreamcache_lite/toyworld.py > /tmp/toyworld_v1.py
    python scripts/pixel_ceiling.py --world-file /tmp/toyworld_v1.py   # the world the backbone was trained on
"""

import argparse
import importlib.util
import json
import sys

import numpy as np
import torch

from dreamcache_lite.backbones import load_pipeline
from dreamcache_lite.images import signed_tensor
from dreamcache_lite.lab.oracle import lab
from dreamcache_lite.lab.toyworld import erode
from dreamcache_lite.pipeline import DreamCachePipeline


def load_world(path):
    if path is None:
        from dreamcache_lite.lab import toyworld

        return toyworld
    spec = importlib.util.spec_from_file_location("world_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def differences(images, truth, masks) -> tuple[float, float]:
    """(mean per-pixel CIELAB difference, CIELAB difference of the mean colour) over the masks."""
    got, want = lab(np.stack([np.asarray(i) for i in images]) / 255.0), lab(truth / 255.0)
    pixel = [np.linalg.norm(g[m] - w[m], axis=-1).mean() for g, w, m in zip(got, want, masks)]
    mean = [np.linalg.norm(g[m].mean(0) - w[m].mean(0)) for g, w, m in zip(got, want, masks)]
    return float(np.mean(pixel)), float(np.mean(mean))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--world-file", default=None, help="a toyworld.py to draw the scenes with (default: the package's)")
    parser.add_argument("--identities", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.15, 0.3])
    parser.add_argument("--text-scales", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tw = load_world(args.world_file)
    dc = DreamCachePipeline(load_pipeline(args.backbone))
    specs = [s for s in tw.BENCHMARK_PROMPTS if s.size == "normal" and s.recolour is None][:args.prompts]
    rows = {}
    for idn in tw.benchmark_identities()[:args.identities]:
        drawn = [tw.render(idn, tw.benchmark_scene(spec, 0)) for spec in specs]
        truth = np.stack([image for image, _ in drawn])
        masks = [erode(erode(mask)) for _, mask in drawn]
        start = signed_tensor(truth)
        rows.setdefault("vae", []).append(differences(dc.decode(dc.encode_images(start)), truth, masks))
        for strength in args.strengths:
            for scale in args.text_scales:
                images = [dc(tw.prompt_text(spec, idn.class_name), steps=args.steps, text_scale=scale, seed=k,
                             init_images=start[k:k + 1], strength=strength, progress=False)[0]
                          for k, spec in enumerate(specs)]
                rows.setdefault(f"sdedit {strength} text scale {scale}", []).append(differences(images, truth, masks))
    result = {k: {"pixel_delta_e": round(float(np.mean([r[0] for r in v])), 2),
                  "mean_colour_delta_e": round(float(np.mean([r[1] for r in v])), 2)} for k, v in rows.items()}
    print(json.dumps({"command": "python " + " ".join(sys.argv), "results": result}, indent=1))


if __name__ == "__main__":
    main()
