"""The `dreamcache-lite` command line. Sub-commands and JSON keys are contracts: keep them stable."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path

from .assets import TINY_ADAPTERS, TINY_BACKBONE
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
    """The main job: the embedded backbone end to end (or the core on random weights before it ships)."""
    if not (TINY_BACKBONE / "manifest.json").is_file():
        print("the trained tiny backbone is not in this checkout yet: running the core on random weights")
        return _demo_core(args)
    import time

    import numpy as np

    from .lab import toyworld as tw
    from .lab.evaluation import reference_image, score
    from .lab.oracle import DEFAULT_PATH, Oracle
    from .pipeline import GenerationConfig
    from .teach.figures import labelled_comparison

    args.backbone, args.adapters = "tiny", None
    dc = _pipeline(args)
    identity = tw.benchmark_identities()[args.seed % 30]
    reference = reference_image(identity)
    specs = [tw.BENCHMARK_PROMPTS[i] for i in (0, 2, 10, 13, 20)]
    prompts = [tw.prompt_text(spec, identity.class_name) for spec in specs]
    start = time.perf_counter()
    generation = GenerationConfig()
    rows = {"text-only": dc(prompts, None, generation, seed=args.seed, progress=False)}
    print(f"text-only, {len(prompts)} prompts: {time.perf_counter() - start:.2f} s")
    if dc.adapters is not None:
        start = time.perf_counter()
        cache = dc.cache_reference(reference)
        rows = {"DreamCache": dc(prompts, cache, generation, seed=args.seed, progress=False), **rows}
        print(f"DreamCache (caching + {len(prompts)} prompts): {time.perf_counter() - start:.2f} s")
    else:
        print("no trained adapters shipped yet: showing text-only generations")
    notes = None
    if DEFAULT_PATH.is_file():  # the oracle's identity score under each image
        oracle = Oracle.load()
        notes = {}
        for label, images in rows.items():
            scored = score(oracle, np.stack([np.asarray(i) for i in images]), identity, specs, prompts, args.seed,
                           reference)
            notes[label] = [f"identity {r['subject_fidelity']:.2f}" for r in scored]
            print(f"{label}: mean identity score {np.mean([r['subject_fidelity'] for r in scored]):.2f}")
    labelled_comparison(reference, rows, prompts, args.output, notes=notes,
                        title=f"held-out subject {identity.class_name} #{args.seed % 30}")
    print(f"reference | {' | '.join(rows)} x {len(prompts)} prompts -> {args.output}")
    return 0


def _demo_core(args) -> int:
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


def _pipeline(args):
    import torch

    from .backbones import load_pipeline
    from .pipeline import DreamCachePipeline

    adapters = getattr(args, "adapters", None)
    if adapters is None and args.backbone == "tiny" and TINY_ADAPTERS.is_file():
        adapters = TINY_ADAPTERS
    # dreambench places the pipeline itself (its --device defaults to the GPU, --fp16)
    dtype = getattr(torch, getattr(args, "dtype", "float32"))
    pipe = load_pipeline(args.backbone, device=getattr(args, "device", None) or "cpu", dtype=dtype)
    return DreamCachePipeline.from_pretrained(pipe, adapters)


def cmd_cache(args) -> int:
    dc = _pipeline(args)
    cache = dc.cache_reference(args.image, args.mask, timestep=args.timestep, prompt=args.prompt)
    cache.save(args.output)
    print(f"cached {args.image} -> {args.output}: {len(cache.layers)} layers, "
          f"{sum(cache.num_tokens().values())} tokens, {cache.nbytes:,} bytes")
    return 0


def _generation(args):
    """The `GenerationConfig` of the parsed flags (fields without a flag keep their defaults)."""
    from .pipeline import GenerationConfig

    return GenerationConfig().but(**{f.name: getattr(args, f.name, None) for f in dataclasses.fields(GenerationConfig)})


def cmd_generate(args) -> int:
    from .cache import FeatureCache
    from .teach.figures import image_grid

    dc = _pipeline(args)
    cache = FeatureCache.load(args.cache, device=dc.device) if args.cache else None
    images = dc(args.prompt, cache, _generation(args), num_images=args.n, seed=args.seed)
    image_grid(images, args.output)
    print(f"{len(images)} image(s) -> {args.output}")
    return 0


def cmd_evaluate(args) -> int:
    from .lab.evaluation import evaluate, protocol
    from .lab.oracle import Oracle

    dc = _pipeline(args)
    proto = protocol(fast=args.fast, seeds=args.seeds, identities=args.identities)
    summary, rows = evaluate(args.method, dc, proto, _generation(args), progress=not args.json,
                             oracle=Oracle.load(args.oracle), finetune_steps=args.finetune_steps, sdedit=args.sdedit)
    if args.csv:
        from .teach.figures import write_rows

        write_rows(rows, args.csv)
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=1))
    return 0


def cmd_train(args) -> int:
    import shutil
    import time

    from .backbones import load_pipeline
    from .diagnostics import diagnose, summary_lines
    from .lab.pairs import make_dataset, training_pairs
    from .manifest import write_manifest
    from .teach.figures import loss_curve
    from .training import TrainConfig, read_loss_log, session_seconds, train_adapters

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    cfg.layers = _layers_arg(cfg.layers) if isinstance(cfg.layers, str) else cfg.layers
    start = time.time()
    pipe = load_pipeline(cfg.backbone)
    adapters = train_adapters(cfg, training_pairs(cfg, pipe), pipe=pipe, resume=not args.restart)
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under `accelerate launch`: one process reports
        return 0
    steps, losses = read_loss_log(cfg.out)
    loss_curve(steps, losses, f"{cfg.out}/loss.png", title="adapter training loss")
    print(f"trained {adapters.num_parameters():,} adapter parameters to step {cfg.steps} "
          f"in {(time.time() - start) / 60:.1f} min this run -> {cfg.out}/adapters.safetensors")
    if cfg.diagnostics_size:
        resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
        held_out = make_dataset(cfg.dataset, resolution, cfg.seed + 1, describe_p=cfg.describe_p,  # not trained on
                                aligned=cfg.aligned_references)
        report = diagnose(pipe, adapters, held_out, size=cfg.diagnostics_size)
        Path(cfg.out, "diagnostics.json").write_text(json.dumps(report, indent=1))
        print("\n".join(summary_lines(report)))
    if args.export:
        folder = Path(args.export)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(f"{cfg.out}/adapters.safetensors", folder / "adapters.safetensors")
        write_manifest(folder, command="dreamcache-lite " + " ".join(sys.argv[1:]), config=dataclasses.asdict(cfg),
                       steps=cfg.steps, train_seconds=round(sum(session_seconds(cfg.out)), 1),
                       final_loss_mean_100=round(sum(losses[-100:]) / len(losses[-100:]), 5))
    return 0


def cmd_convert_official(args) -> int:
    from .official import convert_official

    meta = convert_official(args.src, args.dst, arch=args.arch)
    print(f"converted {args.src} -> {args.dst}: {len(meta['blocks'])} adapter blocks for {args.arch}")
    return 0


def cmd_bench(args) -> int:
    from .lab.bench import run

    report = run(args.sections.split(","), device=args.device, repeats=args.repeats)
    print(json.dumps(report) if args.json else json.dumps(report, indent=1))
    return 0


def cmd_dreambench(args) -> int:
    """DreamBench on real backbones: `generate` its images with DreamCache, `score` any method's images."""
    import torch

    from .lab import dreambench

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.action == "score":
        dreambench.load_dreambench(args.root)  # a wrong path fails now, not after loading the models
        scorer = dreambench.DreamBenchScorer(args.dino, args.clip, device=device)
        report = scorer.score(args.root, args.generated, progress=not args.json)
        if not args.per_subject:
            del report["per_subject"]
        print(json.dumps(report) if args.json else json.dumps(report, indent=1))
        return 0
    dc = _pipeline(args)
    dc.pipe.to(device, torch.float16 if args.fp16 else torch.float32)
    settings = dreambench.PAPER_SETTINGS.but(steps=args.steps, text_scale=args.text_scale, ref_scale=args.ref_scale)
    generate = dreambench.DreamCacheGenerator(dc, settings)
    counts = dreambench.generate_dreambench(generate, args.root, args.out, images_per_prompt=args.images_per_prompt,
                                            subjects=args.subjects.split(",") if args.subjects else None,
                                            prompt_limit=args.prompt_limit, seed=args.seed, token=args.token)
    print(f"{counts['generated']} image(s) generated, {counts['existing']} already there -> {args.out}")
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

    def backbone_options(p, placement=True):
        p.add_argument("--backbone", default="tiny", help="tiny (shipped), sd15, sd21, or a pipeline folder")
        p.add_argument("--adapters", default=None, help="adapter safetensors (default: the shipped ones for tiny)")
        if not placement:  # the command has its own --device
            return
        p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, ...")
        p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                       help="weights and activations; caches and adapters are cast to it once")

    def generation_options(p, names=("steps", "text_scale", "ref_scale")):
        from .pipeline import GenerationConfig

        _config_options(p, GenerationConfig, names, defaults=True)

    p = sub.add_parser("cache", help="cache a reference image's features (once per subject)")
    p.add_argument("image")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--mask", default=None, help="subject mask (default: the image's alpha, if any)")
    p.add_argument("--timestep", type=int, default=1)
    p.add_argument("--prompt", default="", help="prompt while caching (the paper: empty)")
    backbone_options(p)
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("generate", help="generate from a prompt (and a cached reference)")
    p.add_argument("--cache", default=None, help="reference cache file; omit for text-only")
    p.add_argument("--prompt", required=True)
    p.add_argument("-n", type=int, default=4, help="images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="grid.png")
    backbone_options(p)
    generation_options(p, ("negative_prompt", "steps", "text_scale", "ref_scale"))
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("evaluate", help="the toy bench, judged by the oracle")
    p.add_argument("--method", choices=["text", "text-described", "reference-only", "finetune", "dreamcache"],
                   default="dreamcache")
    p.add_argument("--finetune-steps", type=int, default=100, help="DreamBooth steps per subject (finetune)")
    p.add_argument("--fast", action="store_true", help="3 identities x 25 prompts x 1 seed")
    p.add_argument("--sdedit", type=float, default=None, metavar="STRENGTH",
                   help="start from the true scene re-noised to this share of the schedule (text or dreamcache)")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--identities", type=int, default=None)
    p.add_argument("--csv", default=None, help="write one row per image here")
    p.add_argument("--oracle", default=None, help="oracle weights (default: the shipped ones)")
    p.add_argument("--json", action="store_true")
    backbone_options(p)
    generation_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="train DreamCache adapters (resumes from the newest checkpoint)")
    from .training import TrainConfig

    _config_options(p, TrainConfig, [f.name for f in dataclasses.fields(TrainConfig) if f.name != "extra"])
    p.add_argument("--restart", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--export", default=None, help="copy the adapters here with a manifest")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("convert-official", help="import the authors' released SD 2.1 adapter checkpoint")
    p.add_argument("src", help="the released torch state dict (.pt / .ckpt), read with weights_only")
    p.add_argument("dst", help="output adapter .safetensors")
    p.add_argument("--arch", default="sd21", choices=["sd21", "sd15"])
    p.set_defaults(func=cmd_convert_official)

    p = sub.add_parser("bench", help="speed figures (ratios measured in one run)")
    p.add_argument("--sections", default="toyworld,tiny",
                   help="comma list of: toyworld, tiny, sd15 (SD 1.5 at 512 px: minutes on a CPU), sdxl (1024 px)")
    p.add_argument("--device", default="cpu", help="device of the sd15/sdxl sections (random weights), e.g. cuda")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per figure in the sd15/sdxl sections")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("dreambench", help="DreamBench on real backbones: generate, then DINO / CLIP-I / CLIP-T")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("generate", help="25 prompts x N images per subject from its first photo (resumable)")
    q.add_argument("--root", required=True, help="DreamBench's dataset/ folder (github.com/google/dreambooth)")
    q.add_argument("--out", required=True, help="writes <subject>/<prompt>_<k>.png here")
    q.add_argument("--images-per-prompt", type=int, default=4)
    q.add_argument("--subjects", default=None, help="comma list (default: all 30)")
    q.add_argument("--prompt-limit", type=int, default=None, help="first N prompts per subject (default: all 25)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--token", default="", help="word before the class noun, for fine-tuned methods (e.g. sks)")
    q.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    q.add_argument("--fp16", action="store_true", help="half precision (GPU)")
    backbone_options(q, placement=False)
    generation_options(q)
    from .lab.dreambench import PAPER_SETTINGS as paper  # the paper's benchmark settings (DDIM)

    q.set_defaults(func=cmd_dreambench, steps=paper.steps, text_scale=paper.text_scale, ref_scale=paper.ref_scale)
    q = actions.add_parser("score", help="DINO, CLIP-I, CLIP-T of generated images (one JSON object)")
    q.add_argument("--root", required=True, help="DreamBench's dataset/ folder (the real photos and prompts)")
    q.add_argument("--generated", required=True, help="the folder `dreambench generate` wrote (any method's)")
    q.add_argument("--dino", default="facebook/dino-vits16", help="hub id or folder")
    q.add_argument("--clip", default="openai/clip-vit-base-patch32", help="hub id or folder")
    q.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    q.add_argument("--per-subject", action="store_true", help="add each subject's three metrics")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_dreambench)

    p = sub.add_parser("demo", help="run the core (cache, adapters, mixed-row UNet call) end to end")
    p.add_argument("--layers", default="paper")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="runs/demo.png")
    p.set_defaults(func=cmd_demo)
    return parser


def _config_options(p, config, names, defaults: bool = False) -> None:
    """One flag per field of a config dataclass, typed from its annotation (`int | None` -> int).

    `defaults`: the flag's default is the field's; otherwise None (unset flags keep the config's)."""
    hints = typing.get_type_hints(config)
    fields = {f.name: f for f in dataclasses.fields(config)}
    for name in names:
        kind, default = _flag_type(hints[name]), fields[name].default
        flag = f"--{name.replace('_', '-')}"
        if kind is bool:
            p.add_argument(flag, action="store_true", default=None)
        else:
            p.add_argument(flag, type=kind, default=default if defaults else None,
                           help="default: %(default)s" if defaults else f"default: {default}")


def _flag_type(hint):
    """The type a flag parses: the annotation, or the first non-None member of a union."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()  # hub notices would precede our one-line errors
    for library in (diffusers_logging, transformers_logging):  # loading 5 small files needs no bars
        library.disable_progress_bar()
    try:
        return args.func(args)
    except (ValueError, OSError) as err:  # OSError: missing files, an offline hub, unreadable weights
        return _error(args.command, err)
    except RuntimeError as err:
        if "out of memory" not in str(err).lower():
            raise
        return _error(args.command, f"{err} -- out of accelerator memory: lower the batch (-n, --batch-size) "
                                    "or run on the CPU")


def _error(command: str, err) -> int:
    """One line naming the problem (library messages can span lines), exit code 2, no traceback."""
    print(f"dreamcache-lite {command}: error: {' '.join(str(err).split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
