"""Retrain the embedded tiny backbone from scratch (resumes from runs/ checkpoints if present).

    python scripts/train_tiny_backbone.py            # the defaults: v2's UNet width on SD's schedule (no shift)
    python scripts/train_tiny_backbone.py --device cuda --workers 12   # a GPU: the UNet at ~12 steps/s (H200)
    python scripts/train_tiny_backbone.py --export dreamcache_lite/assets/tiny-backbone
    python scripts/train_tiny_backbone.py --init-from OLD_BACKBONE --vae-steps 0 --decoder-steps 0 ...
        # continue from another backbone (keeping its VAE): how v2 was made from v1, see its manifest

The exported folder is a plain diffusers pipeline plus `manifest.json` (command, config, steps,
training time, sha256 of every file). Each stage's checkpoints keep its training seconds, so the
time adds up over interruptions and resumes (`wall_seconds`: the sum). Per step on 2 CPU threads,
measured: the VAE on 32-pixel crops 0.34 s, a 64/128/128 UNet with EMA 1.17-1.19 s (batch 32 both),
the decoder at batch 16 0.45 s. A from-scratch run sized for 3 h at these costs (2.84 h) came out
short of the shipped v2, mainly on the VAE and on text following: figures/README.md, section 1.
"""

import argparse
import dataclasses
import sys

from dreamcache_lite.lab.toyworld import WORLD_VERSION
from dreamcache_lite.lab.train_backbone import BackboneConfig, reconstruction_psnr, train_backbone
from dreamcache_lite.manifest import write_manifest


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for field in dataclasses.fields(BackboneConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    parser.add_argument("--export", default=None, help="save the trained pipeline folder here")
    args = vars(parser.parse_args())
    export = args.pop("export")
    cfg = BackboneConfig(**args)
    pipe, seconds = train_backbone(cfg, export_to=export)
    psnr = round(reconstruction_psnr(pipe.vae), 2)
    if export:
        write_manifest(export, command="python " + " ".join(sys.argv), config=dataclasses.asdict(cfg),
                       wall_seconds=round(seconds, 1), vae_psnr_db=psnr, world_version=WORLD_VERSION)
    print(f"done: {seconds / 60:.1f} min of training in all (over resumes); VAE reconstruction PSNR {psnr} dB")


if __name__ == "__main__":
    main()
