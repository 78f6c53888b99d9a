"""Held-out denoising loss of one or more backbones, per timestep band: how well each UNet predicts
the noise on toy-world scenes it never trained on (the same scenes, noise and timesteps for every
backbone, so the rows compare). Low-t bands are where identity detail is decided: a UNet that
lowers them keeps more of an SDEdit'd scene (scripts/identity_ceiling.py).

    python scripts/backbone_loss_probe.py tiny runs/backbone-wide/export --threads 2
"""

import argparse
import json

import torch
import torch.nn.functional as F

from dreamcache_lite.backbones import load_pipeline
from dreamcache_lite.encoders import encode_images, encode_text
from dreamcache_lite.images import signed_tensor
from dreamcache_lite.lab import toyworld

BANDS = ((0, 150), (150, 300), (300, 600), (600, 1000))
HELD_OUT_SEED = 987_654_321  # far from the training batches' seeds (seed * 1_000_003 + step)


@torch.no_grad()
def band_losses(pipe, batches: int, size: int) -> dict[str, float]:
    """Mean eps-MSE per band over `batches` x `size` held-out scenes with their captions."""
    totals = {f"{lo}-{hi}": 0.0 for lo, hi in BANDS}
    for b in range(batches):
        scenes = toyworld.render_batch(size, seed=HELD_OUT_SEED + b)
        latents = encode_images(pipe, signed_tensor(scenes["target"]))
        text = encode_text(pipe, list(scenes["caption"]))
        gen = torch.Generator().manual_seed(b)
        for lo, hi in BANDS:
            noise = torch.randn(latents.shape, generator=gen)
            t = torch.randint(lo, hi, (size,), generator=gen)
            noisy = pipe.scheduler.add_noise(latents, noise, t)
            pred = pipe.unet(noisy, t, encoder_hidden_states=text).sample
            totals[f"{lo}-{hi}"] += F.mse_loss(pred, noise).item() / batches
    return totals


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backbones", nargs="+", help="tiny (shipped) or pipeline folders")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for name in args.backbones:
        rows[name] = band_losses(load_pipeline(name), args.batches, args.size)
        print(name, " ".join(f"t {band}: {loss:.4f}" for band, loss in rows[name].items()))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
