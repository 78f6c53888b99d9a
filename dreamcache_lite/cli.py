"""The `dreamcache-lite` command line. Sub-commands and JSON keys are contracts: keep them stable."""

from __future__ import annotations

import argparse
import json
import sys

from .backbones import ARCHITECTURES


def _layers_arg(text: str):
    """A preset name, or a comma-separated list of transformer names."""
    return text.split(",") if "," in text or "." in text else text


def cmd_inspect(args) -> int:
    from .report import architecture_report

    report = architecture_report(args.arch, args.resolution, _layers_arg(args.layers))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['arch']} at {report['resolution']} px  (fingerprint {report['fingerprint']})")
        print(f"{'layer':34s} {'channels':>8s} {'tokens':>7s}")
        for name, ch, tok in zip(report["layers"], report["channels"], report["cache_tokens"]):
            print(f"{name:34s} {ch:8d} {tok:7d}")
        print(f"cache: {report['cache_tokens_total']} tokens, {report['cache_bytes_fp16']:,} bytes in fp16")
        print(f"adapters: {report['adapter_params']:,} parameters "
              f"({100 * report['adapter_params'] / report['unet_params']:.2f}% of the UNet)")
    return 0


def cmd_demo(args) -> int:
    """The core end to end on a randomly initialised UNet of the embedded backbone's architecture."""
    import time

    import torch

    from .adapters import DreamCacheAdapters
    from .cache import cache_features

    spec = ARCHITECTURES["tiny"]
    torch.manual_seed(args.seed)
    unet = spec.build_unet("cpu").eval().requires_grad_(False)
    side = spec.unet_config["sample_size"]
    reference = torch.randn(1, 4, side, side)
    empty = torch.zeros(1, spec.text_tokens, spec.text_dim)
    start = time.perf_counter()
    cache = cache_features(unet, reference, empty, layers=args.layers)
    print(f"cached {len(cache.layers)} layers in {time.perf_counter() - start:.3f} s: "
          f"{sum(cache.num_tokens().values())} tokens, {cache.nbytes:,} bytes")
    adapters = DreamCacheAdapters(unet, args.layers, init="paper")
    latents, text = torch.randn(2, 4, side, side), torch.randn(2, spec.text_tokens, spec.text_dim)
    with torch.no_grad():
        plain = unet(latents, 500, encoder_hidden_states=text).sample
        with adapters.reference(cache, rows=[0, -1], precompute=True):
            mixed = unet(latents, 500, encoder_hidden_states=text).sample
    print(f"adapters: {adapters.num_parameters():,} parameters on {[i.name for i in adapters.layers]}")
    print(f"row with the reference moved by {(mixed[0] - plain[0]).abs().mean():.4f}; "
          f"row without it is unchanged: {torch.equal(mixed[1], plain[1])}")
    adapters.uninstall()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreamcache-lite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="layers, cache size and adapter parameters of an architecture")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default="sd15")
    p.add_argument("--resolution", type=int, default=None, help="image side in pixels (default: the native one)")
    p.add_argument("--layers", default="paper", help="preset (paper, mid, decoder, encoder, all) or comma list")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("demo", help="run the core (cache, adapters, mixed-row UNet call) end to end")
    p.add_argument("--layers", default="paper")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"dreamcache-lite {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
