"""Retrain the embedded tiny backbone from scratch (resumes from runs/ checkpoints if present).

    python scripts/train_tiny_backbone.py            # ~3 h on 2 CPU cores
    python scripts/train_tiny_backbone.py --device cuda --workers 12   # a GPU: the UNet at ~12 steps/s (H200)
    python scripts/train_tiny_backbone.py --export dreamcache_lite/assets/tiny-backbone
    python scripts/train_tiny_backbone.py --init-from OLD_BACKBONE --vae-steps 0 --decoder-steps 0 ...
        # continue from another backbone (keeping its VAE): how v2 was made from v1, see its manifest

The exported folder is a plain diffusers pipeline plus `manifest.json` (command, config, steps,
wall time, sha256 of every file).
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
    print(f"done in {seconds / 60:.1f} min; VAE reconstruction PSNR {psnr} dB")


if __name__ == "__main__":
    main()
