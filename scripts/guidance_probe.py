"""Guidance variants for trained adapters, on a subset of the toy bench, without changing the pipeline.

    python scripts/guidance_probe.py --adapters A.safetensors --out runs/guidance_probe \
        base "sref5:ref_scale=5" "rescale:ref_scale=5,rescale=0.7" "txt3:text_scale=3"

Each variant is NAME[:key=value,...] with keys
  ref_scale, text_scale   s_ref and s_txt (default 3 and 5, the bench's)
  low_t, low_ref_scale    s_ref below timestep low_t (reference guidance eased at low noise; default: ref_scale)
  high_t, high_ref_scale  s_ref from timestep high_t up (reference guidance raised at high noise; default: ref_scale)
  rescale                 phi of guidance rescale (Lin et al. 2023): the guided eps's std matched to
                          the conditional branch's, mixed by phi
  coarse_to_fine          the adapters' S at generation (default: the file's)
  negative_class          1: the negative prompt is "a <class>", so text guidance pushes only the context
The guided eps is recomputed from the pipeline's three branches (its own formula when no key that
changes it is given) by wrapping the sampler's `step`; the protocol is 6 held-out identities x every
third benchmark prompt x 2 seeds (108 images, about 2.7 min per variant on 2 threads). One JSON per
variant under --out, one line per variant printed.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from dreamcache_lite.adapters import DreamCacheAdapters
from dreamcache_lite.backbones import load_pipeline
from dreamcache_lite.lab import evaluation
from dreamcache_lite.lab import toyworld as tw
from dreamcache_lite.lab.oracle import Oracle
from dreamcache_lite.pipeline import DreamCachePipeline, GenerationConfig, three_branch_guidance

DEFAULTS = dict(ref_scale=3.0, text_scale=5.0, low_t=0.0, low_ref_scale=None, high_t=1e9, high_ref_scale=None,
                rescale=0.0, coarse_to_fine=None, negative_class=0.0)


def parse(variant: str) -> tuple[str, dict]:
    name, _, spec = variant.partition(":")
    settings = dict(DEFAULTS)
    for item in filter(None, spec.split(",")):
        key, value = item.split("=")
        if key not in DEFAULTS:
            raise SystemExit(f"unknown key {key!r} in {variant!r}; valid: {', '.join(DEFAULTS)}")
        settings[key] = float(value)
    for key in ("low_ref_scale", "high_ref_scale"):
        settings[key] = settings["ref_scale"] if settings[key] is None else settings[key]
    return name, settings


def guided(eps: torch.Tensor, t, v: dict) -> torch.Tensor:
    """The pipeline's `three_branch_guidance` with s_ref(t), then (optionally) guidance rescale."""
    ref_scale = v["low_ref_scale"] if t < v["low_t"] else v["high_ref_scale"] if t >= v["high_t"] else v["ref_scale"]
    branches = eps.chunk(3)
    out = three_branch_guidance(branches, v["text_scale"], ref_scale)
    if v["rescale"]:
        prompt = branches[1]  # the fully conditional branch
        dims = list(range(1, out.ndim))
        rescaled = out * prompt.std(dim=dims, keepdim=True) / out.std(dim=dims, keepdim=True)
        out = v["rescale"] * rescaled + (1 - v["rescale"]) * out
    return out


def probe(adapters: str, name: str, v: dict, oracle, proto) -> dict:
    pipe = load_pipeline("tiny")
    dc = DreamCachePipeline(pipe, DreamCacheAdapters.from_file(pipe.unet, adapters, coarse_to_fine=v["coarse_to_fine"]))
    last = {}
    pipe.unet.register_forward_hook(lambda module, args, output: last.__setitem__("eps", output.sample))
    step = pipe.scheduler.step

    def step_with_variant(model_output, t, sample, *args, **kwargs):
        return step(guided(last["eps"], t, v), t, sample, *args, **kwargs)

    pipe.scheduler.step = step_with_variant
    generate = evaluation._generate

    def generate_with_negative(method, dc, prompts, reference, cache, seed, generation, **init):
        if v["negative_class"]:
            noun = next(c for c in tw.CLASSES if c in prompts[0].split())
            generation = generation.but(negative_prompt=f"a {noun}")
        return generate(method, dc, prompts, reference, cache, seed, generation, **init)

    evaluation._generate = generate_with_negative
    try:
        began = time.time()
        generation = GenerationConfig(steps=25, text_scale=v["text_scale"], ref_scale=v["ref_scale"])
        summary, _ = evaluation.evaluate("dreamcache", dc, proto, generation, oracle=oracle, progress=False,
                                         yardsticks=False)
    finally:
        evaluation._generate = generate
    return dict(summary, name=name, variant=v, adapters=adapters, seconds=round(time.time() - began, 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--adapters", required=True)
    parser.add_argument("--out", default="runs/guidance_probe")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = [parse(v) for v in args.variants]
    oracle = Oracle.load()
    proto = evaluation.protocol(seeds=2, identities=6)
    proto.prompts = list(tw.BENCHMARK_PROMPTS)[::3]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, v in variants:
        s = probe(args.adapters, name, v, oracle, proto)
        (out / f"{name}.json").write_text(json.dumps(s, indent=1))
        parts = " / ".join(f"{s['subject_by_attribute'][k]:.2f}" for k in ("pattern", "glyph", "body_colour",
                                                                            "pattern_colour"))
        print(f"{name}: subject {s['subject_fidelity']:.3f} prompt {s['prompt_fidelity']:.3f} "
              f"(pattern / glyph / body colour / pattern colour {parts}) {s['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
